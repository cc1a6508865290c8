"""What the neural models' training shares: the full-batch loop, class weights, and GCN row plans."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from numpy.typing import NDArray
from scipy import sparse
from torch.nn import functional as F

from model_store.graph import hop_rows, row_block
from model_store.metrics import choose_threshold, f1_at
from model_store.models.gcn import RowBlock

Progress = Callable[[int, int, str], None]  # (done, total, message)


def class_weights(y: NDArray[np.bool_]) -> torch.Tensor:
    pos = max(int(y.sum()), 1)
    neg = max(len(y) - pos, 1)
    return torch.tensor([len(y) / (2 * neg), len(y) / (2 * pos)], dtype=torch.float32)


def best_f1(y: NDArray[np.bool_], score: NDArray[np.float64]) -> float:
    return f1_at(y, score, choose_threshold(y, score))


def train_loop(model: torch.nn.Module, epochs: int, lr: float, weight_decay: float,
               forward_train: Callable[[], torch.Tensor], y_train: NDArray[np.bool_],
               score_val: Callable[[], NDArray[np.float64]], y_val: NDArray[np.bool_],
               progress: Progress | None, labelled: NDArray[np.bool_] | None = None,
               soft: NDArray[np.float64] | None = None) -> dict[str, list[float]]:
    """Full-batch Adam with a class-weighted loss; keeps the epoch with the best validation F1.

    ``labelled``: which training rows' labels count (default: all); ``soft``: P(illicit) a teacher gives every
    training row, learnt with a second cross-entropy (distillation: unlabelled rows teach too)."""
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    lab = None if labelled is None else torch.from_numpy(labelled)
    y_lab = y_train if labelled is None else y_train[labelled]
    target = torch.from_numpy(y_lab.astype(np.int64))
    weights = class_weights(y_lab)
    teacher = None if soft is None else torch.from_numpy(np.stack([1 - soft, soft], axis=1).astype(np.float32))
    curves: dict[str, list[float]] = {"loss": [], "train_f1": [], "val_f1": []}
    best, best_state = -1.0, None
    for epoch in range(1, epochs + 1):
        model.train()
        opt.zero_grad()
        logits = forward_train()
        loss = F.cross_entropy(logits if lab is None else logits[lab], target, weight=weights)
        if teacher is not None:
            loss = loss + F.cross_entropy(logits, teacher)
        loss.backward()
        opt.step()
        train_score = torch.softmax(logits.detach(), dim=1)[:, 1].numpy()
        if labelled is not None:
            train_score = train_score[labelled]
        model.eval()
        with torch.no_grad():
            val_score = score_val()
        val_f1 = best_f1(y_val, val_score)
        curves["loss"].append(loss.item())
        curves["train_f1"].append(f1_at(y_lab, train_score, 0.5))
        curves["val_f1"].append(val_f1)
        if val_f1 > best:
            best, best_state = val_f1, {k: v.detach().clone() for k, v in model.state_dict().items()}
        if progress:
            progress(epoch, epochs, f"loss {curves['loss'][-1]:.3f} val F1 {val_f1:.3f}")
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return curves


class RowPlan:
    """What a GCN needs to compute the logits of some target rows: Â·X and Â's row blocks."""

    def __init__(self, adj: sparse.csr_matrix, ax_full_rows: Callable[[np.ndarray], torch.Tensor],
                 rows: NDArray[np.int64], layers: int, hops: list[NDArray[np.int64]] | None = None) -> None:
        """``hops``: ``hop_rows(adj, rows, layers - 1)`` when the caller has it (then ``adj`` needs only its rows)."""
        hops = hops if hops is not None else hop_rows(adj, rows, layers - 1)
        self.hops = hops  # R_0 (the targets) .. R_{L-1}
        self.targets = hops[0]
        self.ax = ax_full_rows(hops[-1])
        self.blocks = [RowBlock(row_block(adj, hops[i], hops[i + 1])) for i in range(layers - 2, -1, -1)]
