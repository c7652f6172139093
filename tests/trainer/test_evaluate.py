"""Evaluation figures from a hand-checked confusion matrix, and the comparison table."""
from __future__ import annotations

import pytest

from trainer.evaluate import comparison_table, report


def test_report_matches_hand_computed_figures():
    # true:      a a a b b c ; predicted: a a b b c c
    result = report([0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 2, 2], ["a", "b", "c"])
    assert result["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert result["accuracy"] == pytest.approx(4 / 6)
    assert result["per_class"]["a"] == pytest.approx({"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3})
    assert result["per_class"]["b"]["precision"] == pytest.approx(0.5)
    assert result["per_class"]["c"]["f1"] == pytest.approx(2 / 3)


def test_table_says_whether_fine_tuning_helped():
    names = ["a", "b"]
    worse = report([0, 1, 1, 0], [0, 1, 0, 1], names)
    better = report([0, 1, 1, 0], [0, 1, 1, 0], names)
    table = comparison_table({"stage1": worse, "stage2": better}, names)
    assert "accuracy" in table and "+50.0p" in table
    assert "fine-tuning beats feature extraction here (+50.0 points)" in table
