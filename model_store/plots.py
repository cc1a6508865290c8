"""Training curves, confusion matrices and F1 per step as PNG (matplotlib, no display)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay  # noqa: E402

from txmon.core.elliptic_format import SHUTDOWN_STEP  # noqa: E402


def training_curves(curves: dict[str, list[float]], title: str, path: Path) -> Path:
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    if "loss" in curves:
        epochs = np.arange(1, len(curves["loss"]) + 1)
        ax1.plot(epochs, curves["loss"], color="tab:blue")
        ax1.set(xlabel="epoch", ylabel="training loss (class-weighted CE)", title="loss")
        ax2.plot(epochs, curves["train_f1"], label="train F1 (threshold 0.5)")
        ax2.plot(epochs, curves["val_f1"], label="validation F1 (best threshold)")
        best = int(np.argmax(curves["val_f1"])) + 1
        ax2.axvline(best, color="grey", ls=":", label=f"kept: epoch {best}")
        ax2.set(xlabel="epoch", ylabel="illicit F1", title="F1", ylim=(0, 1))
    else:  # label propagation: validation F1 by number of steps k
        ks = np.arange(1, len(curves["val_f1_by_k"]) + 1)
        ax1.axis("off")
        ax2.plot(ks, curves["val_f1_by_k"], marker="o", label="validation F1 (best threshold)")
        ax2.set(xlabel="propagation steps k", ylabel="validation F1", title="choice of k", ylim=(0, 1))
    ax2.legend(loc="lower right", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def confusion(conf: dict[str, int], title: str, path: Path) -> Path:
    matrix = np.array([[conf["tn"], conf["fp"]], [conf["fn"], conf["tp"]]])
    fig, ax = plt.subplots(figsize=(4, 3.6))
    ConfusionMatrixDisplay(matrix, display_labels=["licit", "illicit"]).plot(ax=ax, colorbar=False, values_format="d")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def f1_per_step(per_model: dict[str, dict[int, float]], title: str, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(8, 3.8))
    for name, per_step in per_model.items():
        steps = sorted(per_step)
        ax.plot(steps, [per_step[s] for s in steps], marker="o", ms=3, label=name)
    ax.axvline(SHUTDOWN_STEP, color="grey", ls="--", label=f"dark market shutdown (step {SHUTDOWN_STEP})")
    ax.set(xlabel="time step", ylabel="illicit F1", title=title, ylim=(0, 1.02))
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def arrival_pr(scores: dict[str, np.ndarray], y: np.ndarray, thresholds: dict[str, float], title: str,
               path: Path) -> Path:
    """Precision-recall curves of arrival and step-close scores on the same transactions, each model's operating
    point (its threshold) marked."""
    from sklearn.metrics import PrecisionRecallDisplay, precision_score, recall_score

    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    for name, s in scores.items():
        PrecisionRecallDisplay.from_predictions(y, s, ax=ax, name=name)
        pred = s >= thresholds[name]
        ax.plot(recall_score(y, pred, zero_division=0), precision_score(y, pred, zero_division=0), "o", color="black",
                ms=5)
        ax.annotate(f"{name} @ {thresholds[name]:.2f}", (recall_score(y, pred, zero_division=0),
                                                         precision_score(y, pred, zero_division=0)),
                    fontsize=7, xytext=(4, 4), textcoords="offset points")
    ax.set(title=title, xlim=(0, 1.01), ylim=(0, 1.02))
    ax.title.set_fontsize(9)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
