"""`make bench-train`'s table and target verdicts, on made-up runs (no training here)."""
from __future__ import annotations

from bench.train import dataset_folders, markdown, table, verdicts


def _run(dataset: str, mode: str, seed: int, stage1: float, stage2: float | None, exported: str) -> dict:
    accuracy = {"stage1": stage1, **({"stage2": stage2} if stage2 is not None else {})}
    return {"dataset": dataset, "mode": mode, "seed": seed, "wall_seconds": 10.0 * seed,
            "measured_at": f"2026-12-02T08:0{seed}:00Z", "test_accuracy": accuracy,
            "exported_stage": exported, "exported_accuracy": accuracy[exported],
            "data": {"classes": 3, "train": 30, "val": 9, "test": 9},
            "config": {"image_size": 96, "epochs": 10, "ft_epochs": 20, "ft_learning_rate": 3e-4,
                       "ft_schedule": "cosine", "ft_warmup_epochs": 1, "patience": 5}}


GRID = {f"{r['dataset']}/{r['mode']}/{r['seed']}": r for r in [
    _run("a", "short", 1, 0.60, 0.13, "stage1"), _run("a", "short", 2, 0.60, 0.70, "stage2"),
    _run("a", "defaults", 1, 0.80, 0.85, "stage2"), _run("a", "scratch", 1, 0.70, None, "stage1"),
    _run("b", "defaults", 1, 0.90, 0.93, "stage2"), _run("b", "scratch", 1, 0.95, None, "stage1"),
]}


def test_table_has_one_row_per_dataset_and_mode_with_means_and_ranges():
    rows = table(GRID)
    assert len(rows) == 2 + 3
    short = next(r for r in rows if r.startswith("| a | short"))
    assert "| 1,2 | 60.0 (60.0–60.0) | 41.5 (13.0–70.0) | 65.0 (60.0–70.0) | 1/2 | +0.0 |" in short
    assert "| 70.0, seeds 1 |" in next(r for r in rows if r.startswith("| a | defaults"))


def test_verdicts_say_met_or_not_met_with_the_figures():
    text = "\n".join(verdicts(GRID))
    assert "worst +0.0" in text and "**met**, worst" in text
    assert "**NOT met** (mean gain in points: a +5.0, b +3.0)" not in text  # both gain >= 2: met
    assert "**met** (mean gain in points: a +5.0, b +3.0)" in text
    assert "baseline: **NOT met** (exported vs scratch, means: a 85.0% vs 70.0%, b 93.0% vs 95.0%)" in text
    assert markdown({"grid": GRID, "machine": {"cpus": 2}}).startswith("## Training\n")


def test_user_folders_with_or_without_splits(tmp_path):
    for role in ("train", "val", "test"):
        (tmp_path / "split" / role).mkdir(parents=True)
    assert dataset_folders(f"mine={tmp_path / 'split'}")[1]["test"] == tmp_path / "split" / "test"
    assert dataset_folders(f"flat={tmp_path}")[1] == {"train": tmp_path, "val": None, "test": None}


def test_a_verdict_names_the_datasets_it_did_not_see():
    grid = {k: r for k, r in GRID.items() if k != "b/scratch/1"}
    assert "a 85.0% vs 70.0%); not measured on b." in "\n".join(verdicts(grid))
