"""Scores from a stored model: rebuild it from its manifest and tensors, score a data set."""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import NDArray

from model_store.graph import transition_matrix, undirected_edge_index
from model_store.inference import Scaler, build_gcn, gcn_scores
from model_store.manifest import ModelManifest
from model_store.models.forest import forest_predict
from model_store.models.lpa import propagate
from model_store.models.mlp import MLP
from model_store.splits import make_split
from model_store.train import select_features
from replay.data.dataset import EllipticDataset
from txmon.core.elliptic_format import ILLICIT


def score_stored(manifest: ModelManifest, state: dict[str, torch.Tensor], ds: EllipticDataset) -> NDArray[np.float64]:
    """Illicit score of every transaction of ``ds`` from a stored model."""
    family = manifest.model_type.split("-")[0]
    feature_set = manifest.architecture.get("feature_set", "all")
    if family == "lpa":
        # LPA's "weights" are the training labels of its split: rebuild the split, seed with them.
        split = make_split(ds, manifest.training["split"], seed=manifest.training["seed"])
        t = transition_matrix(undirected_edge_index(ds.edge_rows, ds.n_nodes), ds.n_nodes)
        k = manifest.architecture["k"]
        return propagate(t, split.train, (ds.labels == ILLICIT) & split.train, k)[k - 1]
    raw = select_features(ds, feature_set)
    if raw.shape[1] != manifest.n_features:
        raise ValueError(f"model {manifest.version} expects {manifest.n_features} features, data has {raw.shape[1]}")
    if family == "rf":
        return forest_predict(state, raw)
    if manifest.feature_mean is None or manifest.feature_std is None:
        raise ValueError(f"model {manifest.version} has no feature normalisation")
    x = Scaler(manifest.feature_mean, manifest.feature_std).transform(raw)
    if family == "gcn":
        return gcn_scores(build_gcn(manifest, state), x, undirected_edge_index(ds.edge_rows, ds.n_nodes))
    if family == "mlp":
        a = manifest.architecture
        model = MLP(a["n_features"], hidden=a["hidden"], dropout=a["dropout"])
        model.load_state_dict(state)
        model.eval()
        with torch.no_grad():
            return torch.softmax(model(torch.from_numpy(x)), dim=1)[:, 1].numpy().astype(np.float64)
    raise ValueError(f"model {manifest.version}: unknown model family {family!r}")
