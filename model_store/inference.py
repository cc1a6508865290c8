"""What serving a GCN needs, and nothing that training needs (no scikit-learn): the feature scaler, the
rebuilt model, its scores. The stream worker imports only this; training and scoring re-use it.
"""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray

from model_store.manifest import ModelManifest
from model_store.models.gcn import GCN
from model_store.registry import ModelStore, ModelStoreError


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


def build_gcn(manifest: ModelManifest, state: dict[str, torch.Tensor], arrival: bool = False) -> GCN:
    """The version's GCN (``arrival``: its arrival model) in eval mode."""
    a = manifest.arrival.architecture if arrival and manifest.arrival else manifest.architecture
    model = GCN(a["n_features"], hidden=a["hidden"], layers=a["layers"], dropout=a["dropout"])
    model.load_state_dict(state)
    return model.eval()


def load_servable_gcn(store: ModelStore, ref: str = "latest") -> tuple[ModelManifest, GCN, Scaler, GCN | None]:
    """What a worker checks before it serves a GCN, and ``txmon models show`` with it: the weights' sha256 and
    tensors only (``ModelStore.load_with_arrival``), a feature normalisation, and the GCN built from the manifest's
    architecture with those weights; the same for its arrival model, if it has one (None: the GCN scores on
    arrival too, as versions trained before txmon stored arrival models). ModelStoreError says which failed."""
    manifest, state, arrival_state = store.load_with_arrival(ref, model_type="gcn")
    if manifest.feature_mean is None or manifest.feature_std is None:
        raise ModelStoreError(f"model {manifest.version} has no feature normalisation")
    gcn = _built(manifest, state, arrival=False)
    arrival = _built(manifest, arrival_state, arrival=True) if arrival_state is not None else None
    return manifest, gcn, Scaler(manifest.feature_mean, manifest.feature_std), arrival


def _built(manifest: ModelManifest, state: dict[str, torch.Tensor], arrival: bool) -> GCN:
    try:
        return build_gcn(manifest, state, arrival)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:  # an architecture the weights do not fit
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelStoreError(f"model {manifest.version}: its {'arrival model' if arrival else 'GCN'} cannot be "
                              f"built from the manifest's architecture and its weights: {first}") from None


def gcn_scores(model: GCN, x: NDArray[np.float32], edge_index: torch.Tensor) -> NDArray[np.float64]:
    """Illicit probability of every node, full graph, PyG path (eval mode)."""
    model.eval()
    with torch.no_grad():
        return torch.softmax(model(torch.from_numpy(x), edge_index), dim=1)[:, 1].numpy().astype(np.float64)
