"""Random forest (scikit-learn) and its tensor form for the model store.

The store loads tensors only (no pickle), so a fitted forest is kept as its trees' arrays and
predicted by walking them: the same comparisons as scikit-learn, so the same probabilities.
"""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import NDArray
from sklearn.ensemble import RandomForestClassifier


def forest_to_tensors(rf: RandomForestClassifier) -> dict[str, torch.Tensor]:
    trees = [e.tree_ for e in rf.estimators_]
    sizes = np.array([t.node_count for t in trees])
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    left, right, feature, threshold, proba = [], [], [], [], []
    illicit_col = int(np.flatnonzero(rf.classes_ == 1)[0]) if 1 in rf.classes_ else None
    for t, off in zip(trees, offsets, strict=True):
        leaf = t.children_left < 0
        left.append(np.where(leaf, -1, t.children_left + off))
        right.append(np.where(leaf, -1, t.children_right + off))
        feature.append(np.where(leaf, 0, t.feature))
        threshold.append(t.threshold)
        v = t.value[:, 0, :]
        p = v / np.maximum(v.sum(axis=1, keepdims=True), 1e-300)
        proba.append(p[:, illicit_col] if illicit_col is not None else np.zeros(len(v)))
    cat = np.concatenate
    return {
        "roots": torch.from_numpy(offsets.astype(np.int64)),
        "left": torch.from_numpy(cat(left).astype(np.int64)),
        "right": torch.from_numpy(cat(right).astype(np.int64)),
        "feature": torch.from_numpy(cat(feature).astype(np.int64)),
        "threshold": torch.from_numpy(cat(threshold).astype(np.float64)),
        "proba": torch.from_numpy(cat(proba).astype(np.float64)),
    }


def forest_predict(state: dict[str, torch.Tensor], x: NDArray[np.float32]) -> NDArray[np.float64]:
    """Illicit probability, averaged over trees, as RandomForestClassifier.predict_proba."""
    left, right = state["left"].numpy(), state["right"].numpy()
    feature, threshold = state["feature"].numpy(), state["threshold"].numpy()
    proba = state["proba"].numpy()
    x = np.asarray(x, dtype=np.float32)  # scikit-learn compares float32 inputs
    rows = np.arange(len(x))
    total = np.zeros(len(x))
    for root in state["roots"].numpy():
        node = np.full(len(x), root)
        active = left[node] >= 0
        while active.any():
            idx = node[active]
            go_left = x[rows[active], feature[idx]] <= threshold[idx]
            node[active] = np.where(go_left, left[idx], right[idx])
            active = left[node] >= 0
        total += proba[node]
    return total / len(state["roots"])
