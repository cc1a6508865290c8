"""Write a data set in exactly the Kaggle layout (see ELLIPTIC.md)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
from numpy.typing import NDArray

from txmon.core.elliptic_format import (
    CLASSES_FILE,
    CLASSES_HEADER,
    EDGES_FILE,
    EDGES_HEADER,
    FEATURES_FILE,
    LABEL_TO_CLASS,
)


def write_kaggle_files(out_dir: Path, tx_ids: NDArray[np.int64], steps: NDArray[np.int16],
                       features: NDArray[np.float64], labels: NDArray[np.int8],
                       edges: NDArray[np.int64]) -> None:
    """Features without header (shortest round-trip floats), classes and edges with headers, LF."""
    out_dir.mkdir(parents=True, exist_ok=True)
    columns = [pa.array(tx_ids, pa.int64()), pa.array(steps.astype(np.int64))]
    columns += [pa.array(features[:, j], pa.float64()) for j in range(features.shape[1])]
    table = pa.Table.from_arrays(columns, names=[f"c{j}" for j in range(len(columns))])
    options = pacsv.WriteOptions(include_header=False, quoting_style="none")
    _atomic(out_dir / FEATURES_FILE, lambda p: pacsv.write_csv(table, str(p), write_options=options))

    classes = np.array([LABEL_TO_CLASS[k] for k in (1, 0, -1)])[np.select([labels == 1, labels == 0], [0, 1], 2)]
    lines = [",".join(CLASSES_HEADER)] + [f"{i},{c}" for i, c in zip(tx_ids.tolist(), classes.tolist(), strict=True)]
    _atomic(out_dir / CLASSES_FILE, lambda p: p.write_text("\n".join(lines) + "\n", newline="\n"))

    lines = [",".join(EDGES_HEADER)] + [f"{a},{b}" for a, b in edges.tolist()]
    _atomic(out_dir / EDGES_FILE, lambda p: p.write_text("\n".join(lines) + "\n", newline="\n"))


def _atomic(path: Path, write: Callable[[Path], object]) -> None:
    # A half-written data set must never look complete to the loader.
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)
