"""Metrics for the illicit class, threshold choice on validation (scikit-learn underneath)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    confusion_matrix,
    f1_score,
    precision_recall_curve,
    precision_score,
    recall_score,
    roc_auc_score,
)


def choose_threshold(y_true: NDArray[np.bool_], score: NDArray[np.float64]) -> float:
    """The score threshold with the best F1 on (validation) data; 0.5 when F1 is undefined."""
    if y_true.sum() == 0 or y_true.all():
        return 0.5
    precision, recall, thresholds = precision_recall_curve(y_true, score)
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    best = int(np.argmax(f1[:-1]))  # the last point has no threshold
    return float(thresholds[best])


def f1_at(y_true: NDArray[np.bool_], score: NDArray[np.float64], threshold: float) -> float:
    """F1 of the illicit class at ``threshold`` (NaN without labels): the one figure training needs per epoch,
    without the AUCs and confusion matrix of :func:`illicit_metrics`."""
    y_true = np.asarray(y_true, dtype=bool)
    if len(y_true) == 0:
        return float("nan")
    return float(f1_score(y_true, np.asarray(score) >= threshold, zero_division=0))


def illicit_metrics(y_true: NDArray[np.bool_], score: NDArray[np.float64], threshold: float) -> dict:
    """Precision/recall/F1 of the illicit class at ``threshold``, plus threshold-free AUCs."""
    y_true = np.asarray(y_true, dtype=bool)
    pred = np.asarray(score) >= threshold
    if len(y_true) == 0:  # e.g. a temporal split of a data set with fewer than 35 steps
        nan = float("nan")
        return {"precision": nan, "recall": nan, "f1": nan, "accuracy": nan, "roc_auc": nan, "pr_auc": nan,
                "confusion": {"tn": 0, "fp": 0, "fn": 0, "tp": 0}, "threshold": float(threshold), "n": 0,
                "n_illicit": 0}
    both = 0 < y_true.sum() < len(y_true)
    tn, fp, fn, tp = confusion_matrix(y_true, pred, labels=[False, True]).ravel()
    return {
        "precision": float(precision_score(y_true, pred, zero_division=0)),
        "recall": float(recall_score(y_true, pred, zero_division=0)),
        "f1": f1_at(y_true, score, threshold),
        "accuracy": float(accuracy_score(y_true, pred)),
        "roc_auc": float(roc_auc_score(y_true, score)) if both else float("nan"),
        "pr_auc": float(average_precision_score(y_true, score)) if both else float("nan"),
        "confusion": {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)},
        "threshold": float(threshold),
        "n": int(len(y_true)),
        "n_illicit": int(y_true.sum()),
    }


def f1_per_step(y_true: NDArray[np.bool_], score: NDArray[np.float64], steps: NDArray[np.int16],
                threshold: float) -> dict[int, float]:
    pred = np.asarray(score) >= threshold
    return {int(t): float(f1_score(y_true[steps == t], pred[steps == t], zero_division=0))
            for t in np.unique(steps)}
