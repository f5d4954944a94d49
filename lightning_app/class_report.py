"""Per-class accuracy and the confusion matrix of the test split, logged to the run.

Overall accuracy hides which breeds the model confuses (near-identical spaniels, say); the table says
how each class fares and the image shows where its mistakes go. The counts come from the module's
``test_confusion`` metric (rows: true class, columns: predicted), synchronised across DDP ranks.
"""

from __future__ import annotations

import csv
import tempfile
from pathlib import Path

import numpy as np

REPORT_ARTIFACT_DIR = "test_report"


def per_class_rows(confusion: np.ndarray, class_names: list[str]) -> list[dict]:
    """One row per class: test images, correctly classified, accuracy (empty when it has no test images)."""
    rows = []
    for index, name in enumerate(class_names):
        support, correct = int(confusion[index].sum()), int(confusion[index, index])
        accuracy = round(correct / support, 6) if support else ""
        rows.append({"class": name, "support": support, "correct": correct, "accuracy": accuracy})
    return rows


def write_csv(rows: list[dict], path: Path) -> Path:
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def plot_confusion(confusion: np.ndarray, class_names: list[str], path: Path) -> Path:
    """PNG of the matrix, row-normalised (each true class sums to 1), class names on both axes."""
    import matplotlib

    matplotlib.use("Agg")  # headless: training runs on servers and in jobs
    import matplotlib.pyplot as plt

    rates = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    side = max(4.0, 0.25 * len(class_names) + 2)
    fig, ax = plt.subplots(figsize=(side + 1, side))
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ticks = range(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=90, fontsize=6 if len(class_names) > 30 else 8)
    ax.set_yticks(ticks, class_names, fontsize=6 if len(class_names) > 30 else 8)
    ax.set_xlabel("predicted breed")
    ax.set_ylabel("true breed")
    ax.set_title("test confusion matrix (row-normalised)")
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def log_class_report(client, run_id: str, confusion: np.ndarray, class_names: list[str]) -> None:
    """``test_report/per_class_accuracy.csv`` and ``test_report/confusion_matrix.png`` on the run."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_csv(per_class_rows(confusion, class_names), folder / "per_class_accuracy.csv")
        plot_confusion(confusion, class_names, folder / "confusion_matrix.png")
        client.log_artifacts(run_id, str(folder), REPORT_ARTIFACT_DIR)
