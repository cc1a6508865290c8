"""The arrival model: a GCN trained on arrival views, its threshold chosen on simulated validation arrival scores,
and the comparison of arrival against final verdicts.

Chosen by validation F1 of simulated arrival scores (full-size synthetic data, seed 0, steps 30-34): a GCN trained
from scratch on arrival views 0.888, the final GCN fine-tuned on them 0.866, an MLP on all 165 features (blind to
the graph, so unaffected by what has arrived) 0.859, the final GCN itself 0.808 (docs/models.md has the table).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from model_store.arrival import ArrivalViews, arrival_views
from model_store.fitting import Progress, RowPlan, train_loop
from model_store.graph import gcn_adjacency
from model_store.inference import gcn_scores
from model_store.metrics import choose_threshold, illicit_metrics
from model_store.models.gcn import GCN
from model_store.splits import Split
from replay.data.dataset import EllipticDataset
from txmon.core.contracts import ARRIVAL_WINDOW
from txmon.core.elliptic_format import ILLICIT, SHUTDOWN_STEP, UNKNOWN


@dataclass
class ArrivalScores:
    """Arrival scores of the transactions of some steps, indexed by data set row (NaN outside those steps)."""

    scores: NDArray[np.float64]
    ahead: NDArray[np.int64]  # transactions of its step after its window's end (-1 outside the steps)


def simulate_arrival(model: GCN, x: NDArray[np.float32], ds: EllipticDataset, steps: Iterable[int | np.integer],
                     window_size: int = ARRIVAL_WINDOW) -> ArrivalScores:
    """Offline what the worker computes on arrival: ``model`` on every window's view of ``steps`` (scaled features
    ``x`` of every row), rounded to float32 as the worker stores them. One step at a time, to bound memory."""
    scores = np.full(ds.n_nodes, np.nan)
    ahead = np.full(ds.n_nodes, -1, dtype=np.int64)
    layers = len(model.convs)
    for step in steps:
        v = arrival_views(ds, [int(step)], layers, window_size)
        if v.targets.size:
            p = gcn_scores(model, v.features(x), v.edge_index)[v.targets]
            scores[v.target_rows] = p.astype(np.float32).astype(np.float64)
            ahead[v.target_rows] = v.target_ahead
    return ArrivalScores(scores, ahead)


@dataclass
class ArrivalFit:
    model: GCN
    threshold: float
    window_size: int
    scores: ArrivalScores  # simulated on the validation and test steps
    metrics: dict
    curves: dict[str, list[float]]


def fit_arrival_gcn(ds: EllipticDataset, split: Split, x: NDArray[np.float32], *, epochs: int, lr: float,
                    weight_decay: float, hidden: int, dropout: float, seed: int, window_size: int = ARRIVAL_WINDOW,
                    progress: Progress | None = None) -> ArrivalFit:
    """A GCN trained from scratch on the arrival views of the split's training steps (loss on the training rows,
    each scored in its own window's view); the epoch and the threshold chosen on the validation rows' simulated
    arrival scores. ``x``: the data set's features, scaled as the final GCN scales them (one normaliser)."""
    torch.manual_seed(seed)
    y = ds.labels == ILLICIT
    layers = 3
    train_views = arrival_views(ds, np.unique(ds.steps[split.train]), layers, window_size)
    val_views = arrival_views(ds, np.unique(ds.steps[split.val]), layers, window_size)

    def plan(v: ArrivalViews, mask: NDArray[np.bool_]) -> tuple[RowPlan, NDArray[np.bool_]]:
        adj = gcn_adjacency(v.edge_index, v.n_nodes)
        xv = v.features(x)
        p = RowPlan(adj, lambda r: torch.from_numpy((adj[r] @ xv).astype(np.float32)),
                    v.targets[mask[v.target_rows]], layers)
        label = np.zeros(v.n_nodes, dtype=bool)
        label[v.targets] = y[v.target_rows]
        return p, label[p.targets]

    train, y_train = plan(train_views, split.train)
    val, y_val = plan(val_views, split.val)
    model = GCN(x.shape[1], hidden=hidden, layers=layers, dropout=dropout)

    def score_val() -> NDArray[np.float64]:
        return torch.softmax(model.forward_rows(val.ax, val.blocks), dim=1)[:, 1].numpy()

    curves = train_loop(model, epochs, lr, weight_decay, lambda: model.forward_rows(train.ax, train.blocks),
                        y_train, score_val, y_val, progress)
    steps = np.unique(ds.steps[split.val | split.test])
    sim = simulate_arrival(model, x, ds, steps, window_size)
    threshold = choose_threshold(y[split.val], sim.scores[split.val])  # never the test labels
    metrics = {"val": illicit_metrics(y[split.val], sim.scores[split.val], threshold),
               "test": illicit_metrics(y[split.test], sim.scores[split.test], threshold)}
    return ArrivalFit(model, threshold, window_size, sim, metrics, curves)


def comparison_rows(ds: EllipticDataset, split: Split) -> NDArray[np.bool_]:
    """What arrival is compared with final on: the test transactions and the unlabelled ones of the test steps
    (alerts, and so retractions, fall on unlabelled transactions too)."""
    return split.test | ((ds.labels == UNKNOWN) & np.isin(ds.steps, np.unique(ds.steps[split.test])))


def compare(ds: EllipticDataset, rows: NDArray[np.bool_], arrival: ArrivalScores, arrival_threshold: float,
            final: NDArray[np.float64], final_threshold: float, rate: float | None = None) -> dict:
    """Arrival against final verdicts on the transactions ``rows`` selects, overall and per step: precision, recall
    and F1 of each (labelled transactions), the arrival F1 as a share of the final F1, how many arrival alerts the
    final verdict retracts (all transactions, labelled or not), and how early arrival alerts come: the median
    number of the step's transactions after the alert's window (and seconds, at ``rate`` transactions a second)."""
    known = ds.labels != UNKNOWN
    y = ds.labels == ILLICIT
    flagged = rows & (arrival.scores >= arrival_threshold)

    def block(m: NDArray[np.bool_]) -> dict:
        lab = m & known
        a = illicit_metrics(y[lab], arrival.scores[lab], arrival_threshold)
        f = illicit_metrics(y[lab], final[lab], final_threshold)
        alerts = m & flagged
        n_alerts = int(alerts.sum())
        retracted = int((alerts & (final < final_threshold)).sum())
        ahead = arrival.ahead[alerts]
        out: dict[str, Any] = {
            "transactions": int(m.sum()), "labelled": int(lab.sum()),
            "arrival": {k: a[k] for k in ("precision", "recall", "f1", "pr_auc")},
            "final": {k: f[k] for k in ("precision", "recall", "f1", "pr_auc")},
            "f1_ratio": a["f1"] / f["f1"] if f["f1"] > 0 else float("nan"),
            "arrival_alerts": n_alerts, "retracted": retracted,
            "retraction_rate": retracted / n_alerts if n_alerts else float("nan"),
            "ahead_median_tx": float(np.median(ahead)) if n_alerts else float("nan"),
        }
        if rate:
            out["ahead_median_s"] = out["ahead_median_tx"] / rate
        return out

    steps = np.unique(ds.steps[rows])
    # Before and after the dark market shutdown, where detectors trained on the earlier steps fail.
    periods = {f"{int(p.min())}-{int(p.max())}": block(rows & np.isin(ds.steps, p))
               for p in (steps[steps < SHUTDOWN_STEP], steps[steps >= SHUTDOWN_STEP]) if p.size}
    return {"overall": block(rows), "periods": periods,
            "per_step": {int(s): block(rows & (ds.steps == s)) for s in steps},
            "arrival_threshold": arrival_threshold, "final_threshold": final_threshold, "rate": rate}
