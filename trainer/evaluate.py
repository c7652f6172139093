"""Test-split evaluation: accuracy, per-class precision/recall/F1, confusion matrix, comparison table.

Computed with NumPy from the model's predictions so the figures stored in metadata.json are plain
JSON numbers anyone can recompute from the confusion matrix.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np


def confusion_matrix(true: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """Rows: true class, columns: predicted class."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (true, predicted), 1)
    return matrix


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator else 0.0


def report(true: Sequence[int], predicted: Sequence[int], class_names: Sequence[str]) -> dict[str, Any]:
    """Evaluation dict as stored under metadata["evaluation"][stage]."""
    true, predicted = np.asarray(true), np.asarray(predicted)
    matrix = confusion_matrix(true, predicted, len(class_names))
    per_class = {}
    for index, name in enumerate(class_names):
        hits = matrix[index, index]
        precision = _ratio(hits, matrix[:, index].sum())
        recall = _ratio(hits, matrix[index, :].sum())
        per_class[name] = {"precision": precision, "recall": recall,
                           "f1": _ratio(2 * precision * recall, precision + recall),
                           "support": int(matrix[index, :].sum())}
    return {"accuracy": _ratio(np.trace(matrix), matrix.sum()),
            "macro_f1": float(np.mean([c["f1"] for c in per_class.values()])),
            "examples": int(matrix.sum()), "per_class": per_class,
            "confusion_matrix": matrix.tolist()}


def evaluate(model, dataset, class_names: Sequence[str]) -> dict[str, Any]:
    """Run `model` over a (pixels, label) dataset and report on its top-1 predictions."""
    from trainer.model import inference_function

    return evaluate_forward(inference_function(model), dataset, class_names)


def evaluate_forward(forward: Callable[[Any], Any], dataset, class_names: Sequence[str]) -> dict[str, Any]:
    """`evaluate` for any pixels -> probabilities callable (a Keras model's, a fast form's)."""
    true, predicted = [], []
    for pixels, labels in dataset:
        probabilities = forward(pixels)
        predicted.append(np.argmax(np.asarray(probabilities), axis=-1))
        true.append(np.asarray(labels))
    return report(np.concatenate(true), np.concatenate(predicted), class_names)


def comparison_table(evaluations: dict[str, dict[str, Any]], class_names: Sequence[str]) -> str:
    """Stage-by-stage table: accuracy, macro F1 and per-class F1, with the stage 2 - stage 1 delta."""
    stages = list(evaluations)
    width = max([12] + [len(n) for n in class_names]) + 2
    rows = [f"{'':<{width}}" + "".join(f"{s:>10}" for s in stages)
            + ("     delta" if len(stages) == 2 else "")]

    def row(name: str, values: list[float]) -> str:
        delta = f"{100 * (values[1] - values[0]):+9.1f}p" if len(values) == 2 else ""
        return f"{name:<{width}}" + "".join(f"{100 * v:9.1f}%" for v in values) + delta

    rows.append(row("accuracy", [evaluations[s]["accuracy"] for s in stages]))
    rows.append(row("macro F1", [evaluations[s]["macro_f1"] for s in stages]))
    for name in class_names:
        rows.append(row(f"  F1 {name}"[:width], [evaluations[s]["per_class"][name]["f1"] for s in stages]))
    if len(stages) == 2:
        gain = evaluations[stages[1]]["accuracy"] - evaluations[stages[0]]["accuracy"]
        verdict = "beats" if gain > 0 else "does not beat"
        rows.append(f"fine-tuning {verdict} feature extraction here ({100 * gain:+.1f} points)")
    return "\n".join(rows)
