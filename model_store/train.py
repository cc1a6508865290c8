"""Training: one plain function per model family, all on the same split and scaler.

Each ``fit_*`` sees the data set, the split's masks and the training labels; the decision
threshold is chosen on validation; test metrics are computed last, from the final scores.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from sklearn.ensemble import RandomForestClassifier

from model_store import MODEL_TYPES
from model_store.arrival_train import ArrivalFit, compare, comparison_rows, fit_arrival_gcn
from model_store.fitting import Progress, RowPlan, best_f1, train_loop
from model_store.graph import gcn_adjacency, transition_matrix, undirected_edge_index
from model_store.inference import Scaler, gcn_scores
from model_store.metrics import choose_threshold, f1_per_step, illicit_metrics
from model_store.models.forest import forest_to_tensors
from model_store.models.gcn import GCN
from model_store.models.lpa import propagate
from model_store.models.mlp import MLP
from model_store.splits import Split
from replay.data.dataset import EllipticDataset
from txmon.core.elliptic_format import ILLICIT


@dataclass
class TrainConfig:
    model_type: str
    split: str = "temporal"
    seed: int = 0
    epochs: int = 200
    lr: float = 0.01
    weight_decay: float = 5e-4
    hidden: int = 100
    dropout: float = 0.5
    k_max: int = 10
    n_estimators: int = 50
    max_features: int = 50
    arrival: bool = True  # gcn: also train the model it serves on arrival (model_store.arrival_train)

    def __post_init__(self) -> None:
        if self.model_type not in MODEL_TYPES:
            raise ValueError(f"unknown model {self.model_type!r}; choose one of {', '.join(MODEL_TYPES)}")

    @property
    def feature_set(self) -> str:
        return "local" if self.model_type.endswith("-local") else "all"


@dataclass
class TrainResult:
    model_type: str
    state_dict: dict[str, torch.Tensor]
    architecture: dict
    scores: NDArray[np.float64]  # illicit score of every node
    threshold: float
    metrics: dict
    training: dict
    feature_mean: list[float] | None = None
    feature_std: list[float] | None = None
    curves: dict[str, list[float]] = field(default_factory=dict)
    arrival: ArrivalFit | None = None  # gcn: the model served on arrival


def select_features(ds: EllipticDataset, feature_set: str) -> NDArray[np.float32]:
    return ds.local_features if feature_set == "local" else ds.features


def _finish(cfg: TrainConfig, ds: EllipticDataset, split: Split, scores: NDArray[np.float64],
            **kw: Any) -> TrainResult:
    y = ds.labels == ILLICIT
    threshold = choose_threshold(y[split.val], scores[split.val])
    metrics = {
        "split": split.to_dict(),
        "train": illicit_metrics(y[split.train], scores[split.train], threshold),
        "val": illicit_metrics(y[split.val], scores[split.val], threshold),
        "test": illicit_metrics(y[split.test], scores[split.test], threshold),
        "test_f1_per_step": f1_per_step(y[split.test], scores[split.test], ds.steps[split.test], threshold),
    }
    training = {**cfg.__dict__, "feature_set": cfg.feature_set, "split_description": split.description}
    return TrainResult(cfg.model_type, scores=scores, threshold=threshold, metrics=metrics, training=training, **kw)


def fit_lpa(ds: EllipticDataset, split: Split, cfg: TrainConfig, progress: Progress | None = None) -> TrainResult:
    y = ds.labels == ILLICIT
    t = transition_matrix(undirected_edge_index(ds.edge_rows, ds.n_nodes), ds.n_nodes)
    all_scores = propagate(t, split.train, y & split.train, cfg.k_max)
    val_f1 = [best_f1(y[split.val], s[split.val]) for s in all_scores]
    k = int(np.argmax(val_f1)) + 1  # the smallest k with the best validation F1
    if progress:
        progress(cfg.k_max, cfg.k_max, f"k={k}")
    res = _finish(cfg, ds, split, all_scores[k - 1], state_dict={}, architecture={"n_features": 0, "k": k})
    res.curves = {"val_f1_by_k": val_f1}
    return res


def fit_rf(ds: EllipticDataset, split: Split, cfg: TrainConfig, progress: Progress | None = None) -> TrainResult:
    x = select_features(ds, cfg.feature_set)
    y = ds.labels == ILLICIT
    rf = RandomForestClassifier(n_estimators=cfg.n_estimators, max_features=min(cfg.max_features, x.shape[1]),
                                n_jobs=2, random_state=cfg.seed)
    rf.fit(x[split.train], y[split.train].astype(int))
    state = forest_to_tensors(rf)
    scores = rf.predict_proba(x)[:, list(rf.classes_).index(1)] if 1 in rf.classes_ else np.zeros(len(x))
    if progress:
        progress(1, 1, f"{cfg.n_estimators} trees")
    arch = {"n_features": x.shape[1], "n_estimators": cfg.n_estimators, "max_features": rf.max_features,
            "feature_set": cfg.feature_set}
    return _finish(cfg, ds, split, scores, state_dict=state, architecture=arch)


def fit_mlp(ds: EllipticDataset, split: Split, cfg: TrainConfig, progress: Progress | None = None) -> TrainResult:
    torch.manual_seed(cfg.seed)
    raw = select_features(ds, cfg.feature_set)
    scaler = Scaler.fit(raw[split.train])
    x = torch.from_numpy(scaler.transform(raw))
    y = ds.labels == ILLICIT
    model = MLP(x.shape[1], hidden=50, dropout=0.2)
    x_train, x_val = x[split.train], x[split.val]

    def score_val() -> NDArray[np.float64]:
        return torch.softmax(model(x_val), dim=1)[:, 1].numpy()

    curves = train_loop(model, cfg.epochs, cfg.lr, cfg.weight_decay, lambda: model(x_train), y[split.train],
                        score_val, y[split.val], progress)
    with torch.no_grad():
        scores = torch.softmax(model(x), dim=1)[:, 1].numpy().astype(np.float64)
    arch = {**model.architecture(), "feature_set": cfg.feature_set}
    res = _finish(cfg, ds, split, scores, state_dict=model.state_dict(), architecture=arch,
                  feature_mean=scaler.mean.tolist(), feature_std=scaler.std.tolist())
    res.curves = curves
    return res


def fit_gcn(ds: EllipticDataset, split: Split, cfg: TrainConfig, progress: Progress | None = None) -> TrainResult:
    torch.manual_seed(cfg.seed)
    raw = select_features(ds, cfg.feature_set)
    scaler = Scaler.fit(raw[split.train])
    x = scaler.transform(raw)
    y = ds.labels == ILLICIT
    edge_index = undirected_edge_index(ds.edge_rows, ds.n_nodes)
    adj = gcn_adjacency(edge_index, ds.n_nodes)
    layers = 3
    # The first layer's propagation Â·X is the same every epoch: compute it once, per row set.
    ax_rows = lambda rows: torch.from_numpy((adj[rows] @ x).astype(np.float32))  # noqa: E731
    train = RowPlan(adj, ax_rows, np.flatnonzero(split.train), layers)
    val = RowPlan(adj, ax_rows, np.flatnonzero(split.val), layers)
    model = GCN(x.shape[1], hidden=cfg.hidden, layers=layers, dropout=cfg.dropout)

    def score_val() -> NDArray[np.float64]:
        return torch.softmax(model.forward_rows(val.ax, val.blocks), dim=1)[:, 1].numpy()

    t0 = time.perf_counter()
    curves = train_loop(model, cfg.epochs, cfg.lr, cfg.weight_decay,
                        lambda: model.forward_rows(train.ax, train.blocks), y[train.targets], score_val,
                        y[val.targets], progress)
    train_seconds = time.perf_counter() - t0
    scores = gcn_scores(model, x, edge_index)
    arch = {**model.architecture(), "feature_set": cfg.feature_set}
    res = _finish(cfg, ds, split, scores, state_dict=model.state_dict(), architecture=arch,
                  feature_mean=scaler.mean.tolist(), feature_std=scaler.std.tolist())
    res.curves = curves
    res.training["train_seconds"] = round(train_seconds, 2)
    if cfg.arrival:
        res.arrival = _fit_arrival(ds, split, cfg, x, res, progress)
    return res


def _fit_arrival(ds: EllipticDataset, split: Split, cfg: TrainConfig, x: NDArray[np.float32], final: TrainResult,
                 progress: Progress | None) -> ArrivalFit:
    """The arrival model for ``final`` (same normalisation), with its test comparison against ``final``."""
    t0 = time.perf_counter()
    step = (lambda d, t, m: progress(d, t, f"arrival model: {m}")) if progress else None
    fit = fit_arrival_gcn(ds, split, x, final.scores, epochs=cfg.epochs, lr=cfg.lr, weight_decay=cfg.weight_decay,
                          hidden=cfg.hidden, dropout=cfg.dropout, seed=cfg.seed, progress=step)
    fit.metrics["comparison"] = compare(ds, comparison_rows(ds, split), fit.scores, fit.threshold, final.scores,
                                        final.threshold)
    fit.metrics["train_seconds"] = round(time.perf_counter() - t0, 2)
    return fit


FITTERS = {"lpa": fit_lpa, "gcn": fit_gcn, "mlp": fit_mlp, "mlp-local": fit_mlp, "rf": fit_rf, "rf-local": fit_rf}


def train_model(ds: EllipticDataset, split: Split, cfg: TrainConfig, progress: Progress | None = None) -> TrainResult:
    np.random.seed(cfg.seed)
    return FITTERS[cfg.model_type](ds, split, cfg, progress)
