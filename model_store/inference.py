"""What serving a GCN needs, and nothing that training needs (no scikit-learn): the feature scaler, the
rebuilt model, its scores. The stream worker imports only this; training and scoring re-use it.
"""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray

from model_store.manifest import ModelManifest
from model_store.models.gcn import GCN


class Scaler:
    """Standardisation fitted on training rows only."""

    def __init__(self, mean: ArrayLike, std: ArrayLike) -> None:
        self.mean, self.std = np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)

    @classmethod
    def fit(cls, x: NDArray[np.float32]) -> Scaler:
        x64 = x.astype(np.float64)
        std = x64.std(axis=0)
        return cls(x64.mean(axis=0), np.where(std > 0, std, 1.0))

    def transform(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        return ((x - self.mean) / self.std).astype(np.float32)


def build_gcn(manifest: ModelManifest, state: dict[str, torch.Tensor]) -> GCN:
    a = manifest.architecture
    model = GCN(a["n_features"], hidden=a["hidden"], layers=a["layers"], dropout=a["dropout"])
    model.load_state_dict(state)
    return model.eval()


def gcn_scores(model: GCN, x: NDArray[np.float32], edge_index: torch.Tensor) -> NDArray[np.float64]:
    """Illicit probability of every node, full graph, PyG path (eval mode)."""
    model.eval()
    with torch.no_grad():
        return torch.softmax(model(torch.from_numpy(x), edge_index), dim=1)[:, 1].numpy().astype(np.float64)
