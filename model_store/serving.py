"""Which model a run serves, and training one into the store when there is none for the data set.

The policy ``txmon demo`` and the embedded ``txmon replay`` share: serve the latest GCN if it was trained on
this data set, else the newest GCN that was, else train one on the temporal split and store it (promoted only
if the store has no latest GCN yet). Errors are ``ModelStoreError``; messages go to ``log``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from model_store.manifest import ModelManifest
from model_store.registry import ModelStore
from replay.data.dataset import EllipticDataset

if TYPE_CHECKING:  # model_store.train imports scikit-learn: only when a model is trained
    from model_store.splits import Split
    from model_store.train import Progress, TrainConfig, TrainResult

Log = Callable[[str], None]


def train_and_store(ds: EllipticDataset, split: Split, cfg: TrainConfig, store: ModelStore, promote: bool | None,
                    progress: Progress | None = None) -> tuple[ModelManifest, TrainResult]:
    """Train ``cfg`` on ``split`` and save it in ``store`` as a new version: (manifest, result).
    ``promote=None`` promotes it only if it is the first of its type; ModelStoreError if the store refuses."""
    from model_store.train import train_model

    result = train_model(ds, split, cfg, progress)
    arrival = None if result.arrival is None else result.arrival.part(
        cfg.feature_set, {"epochs": cfg.epochs, "lr": cfg.lr, "weight_decay": cfg.weight_decay, "seed": cfg.seed,
                          "trained_on": "arrival views of the training steps"})
    manifest = store.save(cfg.model_type, result.state_dict, architecture=result.architecture,
                          threshold=result.threshold, metrics=result.metrics, training=result.training,
                          dataset_fingerprint=ds.fingerprint, feature_mean=result.feature_mean,
                          feature_std=result.feature_std, promote=promote, arrival=arrival)
    return manifest, result


def served_model(ds: EllipticDataset, epochs: int, store: ModelStore, log: Log = lambda message: None,
                 progress: Progress | None = None) -> tuple[ModelManifest, str]:
    """The GCN to serve for ``ds`` and why it was chosen: the latest one if it was trained on ``ds``, else the
    newest that was, else a new one (``epochs`` epochs on the temporal split, stored, promoted only if the store
    has no latest GCN). ``progress`` follows the training, when there is one."""
    latest = store.latest("gcn")
    if latest is not None:
        m = store.manifest(latest, "gcn")
        if m.dataset_fingerprint == ds.fingerprint:
            return m, "the latest gcn, trained on this data set" + _no_arrival(m)
    matching = [m for m in store.scan("gcn") if isinstance(m, ModelManifest)
                and m.dataset_fingerprint == ds.fingerprint]
    if matching:
        return matching[-1], f"trained on this data set (the latest gcn, {latest}, was not)" + _no_arrival(matching[-1])

    from model_store.splits import make_split
    from model_store.train import TrainConfig

    reason = "the store has no gcn" if latest is None else f"the latest gcn ({latest}) was trained on other data"
    log(f"training a GCN ({epochs} epochs, temporal split): {reason}")
    cfg = TrainConfig("gcn", split="temporal", epochs=epochs)
    m, _ = train_and_store(ds, make_split(ds, "temporal"), cfg, store, promote=latest is None, progress=progress)
    promoted = " and promoted to latest" if latest is None else f" (not promoted: the latest gcn stays {latest})"
    return m, f"just trained, stored in {store.root}{promoted}"


def _no_arrival(m: ModelManifest) -> str:
    return "" if m.arrival else ("; it has no arrival model (trained before txmon stored one), so it scores on arrival "
                                 "too: `txmon train gcn` trains both")
