"""The arrival model: a GCN trained on arrival views, its threshold chosen on simulated validation arrival scores,
and the comparison of arrival against final verdicts.

Chosen on validation (docs/models.md has the numbers): a GCN trained from scratch on arrival views beat the final
GCN fine-tuned on them, an MLP on all 165 features (blind to the graph, so unaffected by what has arrived) and the
final GCN itself; learning the final GCN's verdicts on the unlabelled transactions as well as the labels
(distillation) beat labels alone and the teacher alone.
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
from model_store.registry import ArrivalPart
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

    def part(self, feature_set: str, training: dict, threshold: float | None = None) -> ArrivalPart:
        """What the model store keeps of it (``threshold``: another than the one chosen on validation)."""
        return ArrivalPart(self.model.state_dict(), {**self.model.architecture(), "feature_set": feature_set},
                           self.threshold if threshold is None else threshold, self.window_size, self.metrics,
                           {**training, "curves": self.curves})


def fit_arrival_gcn(ds: EllipticDataset, split: Split, x: NDArray[np.float32], teacher: NDArray[np.float64], *,
                    epochs: int, lr: float, weight_decay: float, hidden: int, dropout: float, seed: int,
                    window_size: int = ARRIVAL_WINDOW, progress: Progress | None = None) -> ArrivalFit:
    """A GCN trained from scratch on the arrival views of the split's training steps, each transaction scored in
    its own window's view: class-weighted cross-entropy on the training labels plus cross-entropy to ``teacher``
    (the final GCN's P(illicit) of every row) on every transaction of those steps that is not a validation or
    test row — the GCN is what resolves an arrival alert, and most transactions are unlabelled. The epoch and the
    threshold are chosen on the validation rows' simulated arrival scores. ``x``: the data set's features, scaled
    as the final GCN scales them (one normaliser)."""
    torch.manual_seed(seed)
    y = ds.labels == ILLICIT
    layers = 3
    train_steps = np.unique(ds.steps[split.train])
    train_views = arrival_views(ds, train_steps, layers, window_size)
    val_views = arrival_views(ds, np.unique(ds.steps[split.val]), layers, window_size)

    def plan(v: ArrivalViews, mask: NDArray[np.bool_]) -> tuple[RowPlan, NDArray[np.int64]]:
        """The row plan of the views' targets whose rows ``mask`` selects, and those rows in its order."""
        adj = gcn_adjacency(v.edge_index, v.n_nodes)
        xv = v.features(x)
        p = RowPlan(adj, lambda r: torch.from_numpy((adj[r] @ xv).astype(np.float32)),
                    v.targets[mask[v.target_rows]], layers)
        row_of = np.full(v.n_nodes, -1, dtype=np.int64)
        row_of[v.targets] = v.target_rows
        return p, row_of[p.targets]

    pool = np.isin(ds.steps, train_steps) & ~(split.val | split.test)
    train, train_rows = plan(train_views, pool)
    val, val_rows = plan(val_views, split.val)
    model = GCN(x.shape[1], hidden=hidden, layers=layers, dropout=dropout)

    def score_val() -> NDArray[np.float64]:
        return torch.softmax(model.forward_rows(val.ax, val.blocks), dim=1)[:, 1].numpy()

    curves = train_loop(model, epochs, lr, weight_decay, lambda: model.forward_rows(train.ax, train.blocks),
                        y[train_rows], score_val, y[val_rows], progress, labelled=split.train[train_rows],
                        soft=teacher[train_rows])
    steps = np.unique(ds.steps[split.val | split.test])
    sim = simulate_arrival(model, x, ds, steps, window_size)
    threshold = choose_threshold(y[split.val], sim.scores[split.val])  # never the test labels
    metrics = {"val": illicit_metrics(y[split.val], sim.scores[split.val], threshold),
               "test": illicit_metrics(y[split.test], sim.scores[split.test], threshold)}
    return ArrivalFit(model, threshold, window_size, sim, metrics, curves)


def compare_on_test(model: GCN, x: NDArray[np.float32], ds: EllipticDataset, split: Split, threshold: float,
                    final: NDArray[np.float64], final_threshold: float, window_size: int = ARRIVAL_WINDOW,
                    rate: float | None = None) -> tuple[dict, ArrivalScores]:
    """``model``'s arrival verdicts, simulated on the split's test steps, against the ``final`` scores (``compare``
    on ``comparison_rows``), and the simulated scores."""
    sim = simulate_arrival(model, x, ds, np.unique(ds.steps[split.test]), window_size)
    return compare(ds, comparison_rows(ds, split), sim, threshold, final, final_threshold, rate), sim


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
