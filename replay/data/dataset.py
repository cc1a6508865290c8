"""The in-memory Elliptic data set: typed arrays plus a tx id → row lookup."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from numpy.typing import NDArray

from txmon.core.elliptic_format import ILLICIT, LICIT, N_FEATURES, N_LOCAL, UNKNOWN


class TxIndex:
    """Vectorised tx id → row lookup (ids are sparse, up to ~3e8, so no dense table)."""

    def __init__(self, tx_ids: NDArray[np.int64]) -> None:
        self._order = np.argsort(tx_ids, kind="stable")
        self._sorted = tx_ids[self._order]

    def find(self, ids: NDArray[np.int64] | list[int]) -> tuple[NDArray[np.bool_], NDArray[np.int64]]:
        """(whether each id is in the data set, its row or −1), in one search."""
        ids = np.asarray(ids, dtype=np.int64)
        if len(self._sorted) == 0:
            return np.zeros(ids.shape, dtype=bool), np.full(ids.shape, -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self._sorted, ids), len(self._sorted) - 1)
        found = self._sorted[pos] == ids
        return found, np.where(found, self._order[pos], -1).astype(np.int64)

    def rows(self, ids: NDArray[np.int64] | list[int]) -> NDArray[np.int64]:
        """Rows of ``ids``; raises KeyError naming the first id that is not in the data set."""
        ids = np.asarray(ids, dtype=np.int64)
        found, rows = self.find(ids)
        if not np.all(found):
            missing = ids[~found]
            raise KeyError(f"unknown txId {int(missing.flat[0])} ({missing.size} unknown in all)")
        return rows

    def contains(self, ids: NDArray[np.int64]) -> NDArray[np.bool_]:
        return self.find(ids)[0]

    def __getitem__(self, tx_id: int) -> int:
        return int(self.rows(np.array([tx_id]))[0])

    def __contains__(self, tx_id: object) -> bool:
        return isinstance(tx_id, int | np.integer) and bool(self.contains(np.array([tx_id]))[0])

    def __len__(self) -> int:
        return len(self._sorted)


@dataclass(frozen=True, eq=False)
class EllipticDataset:
    """Elliptic transactions: one row per transaction, edges as (src, dst) tx ids.

    labels: 1 illicit, 0 licit, -1 unknown. Edges point in the direction BTC flows.
    """

    tx_ids: NDArray[np.int64]  # [N]
    steps: NDArray[np.int16]  # [N], 1..49
    features: NDArray[np.float32]  # [N, 165]
    labels: NDArray[np.int8]  # [N]
    edges: NDArray[np.int64]  # [E, 2] tx ids
    fingerprint: str = field(default="")  # sha256 over the three source files

    def __post_init__(self) -> None:
        n = len(self.tx_ids)
        if self.features.shape != (n, N_FEATURES):
            raise ValueError(f"features must be [{n}, {N_FEATURES}], got {list(self.features.shape)}")
        if self.steps.shape != (n,) or self.labels.shape != (n,):
            raise ValueError("steps and labels must have one entry per transaction")
        if self.edges.ndim != 2 or self.edges.shape[1] != 2:
            raise ValueError(f"edges must be [E, 2], got {list(self.edges.shape)}")

    @property
    def n_nodes(self) -> int:
        return len(self.tx_ids)

    @property
    def n_edges(self) -> int:
        return len(self.edges)

    @cached_property
    def index(self) -> TxIndex:
        return TxIndex(self.tx_ids)

    @cached_property
    def edge_rows(self) -> NDArray[np.int64]:
        """Edges as row indices [E, 2] (what graph libraries want)."""
        if self.n_edges == 0:
            return np.zeros((0, 2), dtype=np.int64)
        return self.index.rows(self.edges.ravel()).reshape(-1, 2)

    @property
    def local_features(self) -> NDArray[np.float32]:
        return self.features[:, :N_LOCAL]

    @property
    def aggregate_features(self) -> NDArray[np.float32]:
        return self.features[:, N_LOCAL:]

    def label_counts(self) -> dict[str, int]:
        return {
            "illicit": int(np.sum(self.labels == ILLICIT)),
            "licit": int(np.sum(self.labels == LICIT)),
            "unknown": int(np.sum(self.labels == UNKNOWN)),
        }
