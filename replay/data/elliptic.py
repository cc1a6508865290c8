"""Load the Elliptic data set from the three Kaggle CSV files exactly as downloaded (see ELLIPTIC.md).

Fast path: pandas' C parser reads each file in one go and numpy checks all rows at once. Only when
that parse fails or looks irregular (NaN, ragged rows, blank lines that are not blank...) does a
slow pass walk the raw lines, so that every error names the first offending *physical* line
(1-based, header and blank lines counted). Parsed data sets are cached in binary form, keyed by the
files' content hash (replay.data.cache).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import logging
import mmap
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from replay.data import cache
from replay.data.dataset import EllipticDataset, TxIndex
from txmon.core.elliptic_format import (
    CLASS_TO_LABEL,
    CLASSES_FILE,
    CLASSES_HEADER,
    EDGES_FILE,
    EDGES_HEADER,
    FEATURES_FILE,
    FILES,
    N_COLUMNS,
    N_FEATURES,
    STEP_MAX,
    STEP_MIN,
)
from txmon.core.errors import TxmonError

log = logging.getLogger(__name__)

MAX_TX_ID = 2**53  # the fast path reads ids as float64, which is exact only up to here
_BOM = b"\xef\xbb\xbf"
Content = bytes | mmap.mmap  # a file's contents, memory-mapped where possible
_NO_LABEL = -128  # marks a class string that is not in CLASS_TO_LABEL
_CLASS_CHOICES = ", ".join(repr(c) for c in CLASS_TO_LABEL)
_HEADER_HINT = f"; this looks like a header line, but Kaggle's {FEATURES_FILE} has none (delete the line)"


class DatasetError(TxmonError, ValueError):
    """A problem with the input files; the message starts with ``file:line:`` where there is one."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None) -> None:
        self.file, self.line, self.reason = file, line, message
        where = f"{file}:{line}: " if file and line else f"{file}: " if file else ""
        super().__init__(where + message)


# ---------------------------------------------------------------------------------------------
# Public entry points


def load_elliptic(data_dir: Path, *, cache_dir: Path | None = None, use_cache: bool = True) -> EllipticDataset:
    """Load the three Kaggle files from ``data_dir``; arrays are in the features file's row order.

    With ``use_cache`` a binary copy keyed by the files' content hash is kept under ``cache_dir``
    (default ``Settings().cache_dir / "datasets"``) and used on later loads.
    Raises DatasetError for anything wrong with the files.
    """
    t0 = time.perf_counter()
    paths = _locate(Path(data_dir))
    memo: cache.StatIndex | None = None
    if use_cache:
        cache_dir = Path(cache_dir) if cache_dir is not None else cache.default_cache_dir()
        memo = cache.StatIndex(cache_dir)

    with contextlib.ExitStack() as open_files:
        contents: dict[str, Content] = {}
        digests: dict[str, str] = {}
        for name, path in paths.items():
            st = path.stat()
            sha = memo.lookup(path, st) if memo is not None else None
            if sha is None:
                # Open once: the same bytes are hashed now and parsed on a cache miss.
                hashed_at = time.time_ns()
                contents[name] = _open(path, open_files)
                sha = hashlib.sha256(contents[name]).hexdigest()
                if memo is not None:
                    memo.record(path, st, sha, hashed_at)
            digests[name] = sha

        if memo is not None:  # with the cache: cache_dir is set
            assert cache_dir is not None
            memo.save()
            ds = cache.read_dataset(cache_dir, combine_fingerprint(digests))
            if ds is not None:
                log.info("loaded %s from the cache in %.2f s", data_dir, time.perf_counter() - t0)
                return ds

        for name, path in paths.items():
            if name not in contents:
                # Hash what is parsed, so the cache key always matches the content even if a file
                # changed since its stat memo was taken.
                contents[name] = _open(path, open_files)
                digests[name] = hashlib.sha256(contents[name]).hexdigest()
        ds = _parse_files(contents, combine_fingerprint(digests))
    if memo is not None:
        assert cache_dir is not None
        cache.write_dataset(cache_dir, ds)
    log.info("parsed %s in %.2f s", data_dir, time.perf_counter() - t0)
    return ds


def combine_fingerprint(digests: Mapping[str, str]) -> str:
    """sha256 over the files' names and sha256 digests, in the fixed order of FILES."""
    h = hashlib.sha256()
    for name in FILES:
        h.update(f"{name}\0{digests[name]}\n".encode())
    return h.hexdigest()


def fingerprint_files(data_dir: Path) -> str:
    """The fingerprint load_elliptic would give ``data_dir`` (hashes the files, no memo)."""
    paths = _locate(Path(data_dir))
    return combine_fingerprint({name: cache.sha256_file(p) for name, p in paths.items()})


# ---------------------------------------------------------------------------------------------
# Files


def _locate(data_dir: Path) -> dict[str, Path]:
    if not data_dir.is_dir():
        raise DatasetError(f"data directory {data_dir} does not exist or is not a directory")
    missing = [name for name in FILES if not (data_dir / name).is_file()]
    if missing:
        hint = ""
        nested = sorted(p.parent for p in data_dir.glob(f"*/{FEATURES_FILE}"))
        if nested:  # Kaggle's zip unpacks into elliptic_bitcoin_dataset/
            hint = f"; found {FEATURES_FILE} in {nested[0]}, pass that directory instead"
        raise DatasetError(
            f"data directory {data_dir} has no {', '.join(missing)} "
            f"(expected the three Kaggle files: {', '.join(FILES)}){hint}"
        )
    return {name: data_dir / name for name in FILES}


def _open(path: Path, open_files: contextlib.ExitStack) -> Content:
    """The file's contents, memory-mapped where possible: hashing and parsing then read the page
    cache directly instead of first copying 660 MB into a bytes object."""
    try:
        f = open_files.enter_context(path.open("rb"))
        try:
            return open_files.enter_context(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))
        except (OSError, ValueError):  # empty file, or a file system without mmap
            return f.read()
    except OSError as e:
        raise DatasetError(f"cannot read {path}: {e.strerror or e}") from e


class _Source:
    """One input file's contents; a bytes copy and the physical lines are made only on demand
    (by the slow paths)."""

    def __init__(self, name: str, data: Content) -> None:
        self.name = name
        self.data = data

    def reader(self) -> IO[bytes]:
        if isinstance(self.data, mmap.mmap):
            self.data.seek(0)
            return self.data  # type: ignore[return-value]  # file-like enough for pandas
        return io.BytesIO(self.data)

    def has_quotes(self) -> bool:
        return self.data.find(b'"') >= 0

    @cached_property
    def content(self) -> bytes:
        return self.data if isinstance(self.data, bytes) else self.data[:]

    @cached_property
    def lines(self) -> list[bytes]:
        # bytes.splitlines breaks on \n, \r\n and \r, like pandas' C tokenizer; str.splitlines
        # would also break on \x0b, \x0c, \x1c... and so miscount lines.
        body = self.content
        return (body[len(_BOM) :] if body.startswith(_BOM) else body).splitlines()

    def n_lines(self) -> int:
        """Number of physical lines, without splitting."""
        d = self.content
        n = d.count(b"\n") + d.count(b"\r") - d.count(b"\r\n")
        return n + (1 if d and not d.endswith((b"\n", b"\r")) else 0)

    def text(self, lineno: int) -> str:
        return self.lines[lineno - 1].decode("utf-8", errors="replace")

    def fields(self, lineno: int) -> list[str]:
        return _split(self.text(lineno))

    def error(self, lineno: int | None, message: str) -> DatasetError:
        return DatasetError(message, file=self.name, line=lineno)


def _split(text: str) -> list[str]:
    # The csv module only where quotes are involved: str.split is several times faster.
    return next(csv.reader([text])) if '"' in text else text.split(",")


def _number(field: str) -> float | None:
    """``field`` as a float the way pandas would accept it, else None."""
    if "_" in field:  # Python's float() accepts '1_000', pandas does not
        return None
    try:
        return float(field)
    except ValueError:
        return None


def _bad_value(column: str, field: str, problem: str) -> str:
    return f"{column}: empty value" if not field.strip() else f"{column}: {field!r} {problem}"


def _bad_id(column: str, field: str) -> str:
    v = _number(field)
    if v is not None and v > MAX_TX_ID and v.is_integer():
        return f"{column}: {field!r} is too large for a txId (at most 2**53)"
    return _bad_value(column, field, "is not a positive integer")


def _is_tx_id(ids: NDArray[np.float64] | NDArray[np.int64]) -> NDArray[np.bool_]:
    with np.errstate(invalid="ignore"):
        ok = (ids >= 1) & (ids <= MAX_TX_ID)
        return ok & (ids == np.floor(ids)) if ids.dtype.kind == "f" else ok


def _repeats(ids: NDArray[np.float64] | NDArray[np.int64]) -> NDArray[np.bool_]:
    """True for each row whose id already occurred on an earlier row."""
    order = np.argsort(ids, kind="stable")  # stable: the first occurrence leads its group
    s = ids[order]
    rep = np.zeros(len(ids), dtype=bool)
    rep[order[1:]] = s[1:] == s[:-1]
    return rep


def _first_seen(ids: NDArray[np.float64] | NDArray[np.int64], lines: NDArray[np.int64], row: int) -> int:
    return int(lines[np.flatnonzero(ids == ids[row])[0]])


def _read_fast(src: _Source, *, skiprows: int, **kwargs: Any) -> pd.DataFrame | None:
    """pandas' C parser over the whole file; None if it fails (the caller re-diagnoses)."""
    try:
        df = pd.read_csv(
            src.reader(),
            header=None,
            skiprows=skiprows,
            engine="c",
            skip_blank_lines=False,  # keeps row i on physical line i + 1 + skiprows
            **kwargs,
        )
    except Exception as e:  # any pandas/pyarrow failure is re-diagnosed line by line
        log.debug("%s: fast parse failed (%s: %s)", src.name, type(e).__name__, e)
        return None
    # Without quotes every physical line is one row; with them a quoted line break would merge two
    # lines and shift every line number after it. (Counting lines costs ~0.3 s at full size.)
    if src.has_quotes() and len(df) != src.n_lines() - skiprows:
        return None
    return df


# ---------------------------------------------------------------------------------------------
# elliptic_txs_features.csv: no header; txId, time step, 165 features


@dataclass(frozen=True)
class _Features:
    ids: NDArray[np.int64]
    steps: NDArray[np.int16]
    features: NDArray[np.float32]
    lines: NDArray[np.int64]


def _feature_column(col: int) -> str:
    """0-based column -> 'column 45 (feature 43)'."""
    what = "txId" if col == 0 else "time step" if col == 1 else f"feature {col - 1}"
    return f"column {col + 1} ({what})"


@dataclass(frozen=True)
class _FeatureRows:
    """Parsed but unchecked features file: ids and steps still float64 (as read)."""

    ids: NDArray[np.float64]
    steps: NDArray[np.float64]
    features: NDArray[np.float32]  # values too large for float32 are inf here
    lines: NDArray[np.int64]

    @staticmethod
    def from_columns(df: pd.DataFrame | NDArray[np.float64], lines: NDArray[np.int64]) -> _FeatureRows:
        if isinstance(df, pd.DataFrame):
            ids, steps = df[0].to_numpy(np.float64), df[1].to_numpy(np.float64)
            with np.errstate(over="ignore"):
                # Straight to float32: half the memory and time of a float64 interleave.
                feats = df.iloc[:, 2:].to_numpy(dtype=np.float32)
        else:
            ids, steps = df[:, 0], df[:, 1]
            with np.errstate(over="ignore"):
                feats = df[:, 2:].astype(np.float32)
        return _FeatureRows(ids, steps, feats, lines)

    @staticmethod
    def concat(parts: list[_FeatureRows]) -> _FeatureRows:
        if not parts:
            empty = np.zeros(0)
            return _FeatureRows(empty, empty, np.zeros((0, N_FEATURES), np.float32), np.zeros(0, np.int64))
        return _FeatureRows(
            *(np.concatenate([getattr(p, f) for p in parts]) for f in ("ids", "steps", "features", "lines"))
        )

    def select(self, keep: NDArray[np.bool_]) -> _FeatureRows:
        return _FeatureRows(self.ids[keep], self.steps[keep], self.features[keep], self.lines[keep])


def _parse_features(src: _Source) -> _Features:
    rows = _features_fast(src)
    if rows is None:
        log.info("%s: irregular file, re-checking it block by block", src.name)
        rows = _features_slow(src)
    if len(rows.ids) == 0:
        raise src.error(None, "the file has no transactions")
    _check_features(src, rows)
    return _Features(rows.ids.astype(np.int64), rows.steps.astype(np.int16), rows.features, rows.lines)


def _features_fast(src: _Source) -> _FeatureRows | None:
    df = _read_fast(src, skiprows=0, dtype=np.float64)
    return None if df is None else _rows_from_frame(df, 1, lambda i: src.lines[i])


def _rows_from_frame(df: pd.DataFrame, first_line: int, raw_line: Callable[[int], bytes]) -> _FeatureRows | None:
    """The frame's rows (row i on physical line first_line + i) if they are all regular, else None."""
    if df.shape[1] != N_COLUMNS:
        return None
    rows = _FeatureRows.from_columns(df, np.arange(first_line, first_line + len(df), dtype=np.int64))
    nan = np.isnan(rows.features)  # NaN survives the float32 cast
    row_nan = nan.any(axis=1) | np.isnan(rows.ids) | np.isnan(rows.steps)
    if not row_nan.any():
        return rows
    # NaN comes from 'nan', 'NA', empty fields, short rows or blank lines: only all-NaN rows whose
    # line really is blank are fine; the slow pass says what the others are.
    blank = nan.all(axis=1) & np.isnan(rows.ids) & np.isnan(rows.steps)
    if (row_nan & ~blank).any() or any(raw_line(int(i)).strip() for i in np.flatnonzero(blank)):
        return None
    return rows.select(~blank)


_BLOCK_LINES = 4096  # lines per pandas call in the slow pass


def _features_slow(src: _Source) -> _FeatureRows:
    """pandas parses blocks of lines; only a block it rejects is walked line by line in Python
    (~15x slower). The first line that cannot be tokenised into 167 numbers raises, but only after
    the rows before it were checked, so the first offending line is always the one named."""
    parts: list[_FeatureRows] = []
    failure: DatasetError | None = None
    for start in range(0, len(src.lines), _BLOCK_LINES):
        block = src.lines[start : start + _BLOCK_LINES]
        rows = _block_fast(block, start + 1)
        if rows is None:
            no_rows_yet = not any(len(p.ids) for p in parts)
            rows, failure = _block_slow(src, block, start + 1, no_rows_yet)
        parts.append(rows)
        if failure is not None:
            break
    rows = _FeatureRows.concat(parts)
    if failure is not None:
        _check_features(src, rows)  # raises if an earlier line has a problem
        raise failure
    return rows


def _block_fast(block: list[bytes], first_line: int) -> _FeatureRows | None:
    try:
        # The extra newline keeps a trailing blank line as a row of its own.
        df = pd.read_csv(
            io.BytesIO(b"\n".join(block) + b"\n"),
            header=None,
            dtype=np.float64,
            engine="c",
            skip_blank_lines=False,
        )
    except Exception:  # re-diagnosed line by line
        return None
    return _rows_from_frame(df, first_line, lambda i: block[i]) if len(df) == len(block) else None


def _block_slow(
    src: _Source, block: list[bytes], first_line: int, no_rows_yet: bool
) -> tuple[_FeatureRows, DatasetError | None]:
    """The block's rows up to the first line that is not 167 numbers, and that line's error."""
    values: list[list[float]] = []
    lines: list[int] = []
    failure: DatasetError | None = None
    for lineno, raw in enumerate(block, first_line):
        text = raw.decode("utf-8", errors="replace")
        if not text.strip():
            continue
        fields = _split(text)
        nums: list[float] | None = None
        if "_" not in text:
            with contextlib.suppress(ValueError):
                nums = [float(f) for f in fields]
        if len(fields) != N_COLUMNS:
            msg = f"expected {N_COLUMNS} columns, found {len(fields)}"
            if len(fields) == 1 and ("\t" in text or ";" in text):
                msg += "; fields must be separated by commas"
        elif nums is None:
            col = next(i for i, f in enumerate(fields) if _number(f) is None)
            msg = _bad_value(_feature_column(col), fields[col], "is not a number")
        else:
            values.append(nums)
            lines.append(lineno)
            continue
        if no_rows_yet and not values and len(fields) > 1 and _number(fields[0]) is None:
            msg += _HEADER_HINT
        failure = src.error(lineno, msg)
        break
    array = np.array(values, dtype=np.float64).reshape(-1, N_COLUMNS)
    return _FeatureRows.from_columns(array, np.array(lines, dtype=np.int64)), failure


def _check_features(src: _Source, rows: _FeatureRows) -> None:
    """Vectorised row checks; raises for the first bad row."""
    ids, steps, feats = rows.ids, rows.steps, rows.features
    # nan, inf, and too large for float32. numpy's stub types all(axis=...) as scalar-or-array; it is an array here.
    bad_feat: NDArray[np.bool_] = ~np.isfinite(feats).all(axis=1)  # type: ignore[assignment]
    with np.errstate(invalid="ignore"):
        step_int = steps == np.floor(steps)
        bad_step = ~(step_int & (steps >= STEP_MIN) & (steps <= STEP_MAX))
    bad_id = ~_is_tx_id(ids)
    dup = _repeats(ids)
    bad = bad_id | bad_step | bad_feat | dup
    if not bad.any():
        return
    r = int(np.argmax(bad))
    line = int(rows.lines[r])
    f = src.fields(line)

    def field(c: int) -> str:
        return f[c] if c < len(f) else "?"

    if bad_id[r]:
        msg = _bad_id(_feature_column(0), field(0))
    elif bad_step[r] and not step_int[r]:
        msg = _bad_value(_feature_column(1), field(1), "is not an integer")
    elif bad_step[r]:
        msg = f"{_feature_column(1)}: {field(1).strip()} is outside {STEP_MIN}..{STEP_MAX}"
    elif bad_feat[r]:
        c = int(np.argmax(~np.isfinite(feats[r]))) + 2
        v = _number(field(c))
        problem = "is too large for float32" if v is not None and np.isfinite(v) else "is not a finite number"
        msg = _bad_value(_feature_column(c), field(c), problem)
    else:
        msg = f"duplicate txId {int(ids[r])} (first seen on line {_first_seen(ids, rows.lines, r)})"
    raise src.error(line, msg)


# ---------------------------------------------------------------------------------------------
# elliptic_txs_classes.csv and elliptic_txs_edgelist.csv: a header, then two columns


def _check_header(src: _Source, expected: tuple[str, str]) -> None:
    want = ",".join(expected)
    if not src.lines:
        raise src.error(1, f"the file is empty (expected the header {want!r})")
    first = src.text(1)
    fields = _split(first)
    if [f.strip() for f in fields] == list(expected):
        return
    if _number(fields[0]) is not None:
        raise src.error(1, f"missing header line {want!r} (the first line is data: {first!r})")
    raise src.error(1, f"expected the header {want!r}, found {first!r}")


def _two_columns_slow(
    src: _Source, header: tuple[str, str], numeric: tuple[bool, bool]
) -> tuple[list[list[float | str]], list[int], DatasetError | None]:
    """Tokenise lines 2.. into two fields, numbers where ``numeric``; stops at the first bad line."""
    rows: list[list[float | str]] = []
    lines: list[int] = []
    for lineno in range(2, len(src.lines) + 1):
        text = src.text(lineno)
        if not text.strip():
            continue
        fields = _split(text)
        if len(fields) != 2:
            return rows, lines, src.error(lineno, f"expected 2 columns ({','.join(header)}), found {len(fields)}")
        row: list[float | str] = []
        for c, (field, is_num) in enumerate(zip(fields, numeric, strict=True)):
            if not is_num:
                row.append(field)
                continue
            v = _number(field)
            if v is None:
                msg = _bad_value(f"column {c + 1} ({header[c]})", field, "is not a positive integer")
                return rows, lines, src.error(lineno, msg)
            row.append(v)
        rows.append(row)
        lines.append(lineno)
    return rows, lines, None


@dataclass(frozen=True)
class _Classes:
    ids: NDArray[np.int64]
    labels: NDArray[np.int8]
    lines: NDArray[np.int64]


def _parse_classes(src: _Source) -> _Classes:
    _check_header(src, CLASSES_HEADER)
    df = _read_fast(src, skiprows=1, dtype={0: np.int64, 1: str}, keep_default_na=False)
    if df is not None and df.shape[1] == 2:
        ids = df[0].to_numpy(dtype=np.int64)
        classes = df[1].to_numpy(dtype=object)
        try:
            return _check_classes(src, ids, classes, np.arange(2, len(df) + 2, dtype=np.int64))
        except DatasetError:
            pass  # pandas pads a short row with '': only the slow pass can tell that from a bad class
    log.info("%s: irregular file, checking it line by line", src.name)
    rows, line_list, failure = _two_columns_slow(src, CLASSES_HEADER, (True, False))
    ids_f = np.array([r[0] for r in rows], dtype=np.float64)
    classes = np.array([r[1] for r in rows], dtype=object)
    checked = _check_classes(src, ids_f, classes, np.array(line_list, dtype=np.int64))
    if failure is not None:
        raise failure
    return checked


def _check_classes(
    src: _Source,
    ids: NDArray[np.float64] | NDArray[np.int64],
    classes: NDArray[np.object_],
    lines: NDArray[np.int64],
) -> _Classes:
    labels = np.full(len(ids), _NO_LABEL, dtype=np.int8)
    for cls, label in CLASS_TO_LABEL.items():
        labels[classes == cls] = label
    bad_id = ~_is_tx_id(ids)
    bad_class = labels == _NO_LABEL
    dup = _repeats(ids)
    bad = bad_id | bad_class | dup
    if bad.any():
        r = int(np.argmax(bad))
        line = int(lines[r])
        if bad_id[r]:
            msg = _bad_id("column 1 (txId)", src.fields(line)[0])
        elif bad_class[r]:
            msg = f"class {classes[r]!r} is not one of {_CLASS_CHOICES}"
        else:
            msg = f"duplicate txId {int(ids[r])} (first seen on line {_first_seen(ids, lines, r)})"
        raise src.error(line, msg)
    return _Classes(ids.astype(np.int64), labels, lines)


@dataclass(frozen=True)
class _Edges:
    edges: NDArray[np.int64]
    lines: NDArray[np.int64]


def _parse_edges(src: _Source) -> _Edges:
    _check_header(src, EDGES_HEADER)
    df = _read_fast(src, skiprows=1, dtype=np.int64)
    if df is not None and df.shape[1] == 2:
        edges = df.to_numpy(dtype=np.int64)
        return _check_edges(src, edges, np.arange(2, len(df) + 2, dtype=np.int64))
    log.info("%s: irregular file, checking it line by line", src.name)
    rows, line_list, failure = _two_columns_slow(src, EDGES_HEADER, (True, True))
    values = np.array(rows, dtype=np.float64).reshape(-1, 2)
    checked = _check_edges(src, values, np.array(line_list, dtype=np.int64))
    if failure is not None:
        raise failure
    return checked


def _check_edges(src: _Source, edges: NDArray[np.float64] | NDArray[np.int64], lines: NDArray[np.int64]) -> _Edges:
    bad = ~_is_tx_id(edges)  # [E, 2]
    if bad.any():
        r = int(np.argmax(bad.any(axis=1)))
        c = int(np.argmax(bad[r]))
        line = int(lines[r])
        msg = _bad_id(f"column {c + 1} ({EDGES_HEADER[c]})", src.fields(line)[c])
        raise src.error(line, msg)
    return _Edges(edges.astype(np.int64), lines)


# ---------------------------------------------------------------------------------------------
# Putting the three files together


def _parse_files(contents: Mapping[str, Content], fingerprint: str) -> EllipticDataset:
    feat_src = _Source(FEATURES_FILE, contents[FEATURES_FILE])
    cls_src = _Source(CLASSES_FILE, contents[CLASSES_FILE])
    edge_src = _Source(EDGES_FILE, contents[EDGES_FILE])
    feat = _parse_features(feat_src)
    cls = _parse_classes(cls_src)
    edg = _parse_edges(edge_src)

    n = len(feat.ids)
    index = TxIndex(feat.ids)
    found, rows = index.find(cls.ids)
    if not found.all():
        r = int(np.argmin(found))
        raise cls_src.error(int(cls.lines[r]), f"txId {int(cls.ids[r])} is not in {FEATURES_FILE}")
    labels = np.full(n, _NO_LABEL, dtype=np.int8)
    labels[rows] = cls.labels
    unlabelled = labels == _NO_LABEL
    if unlabelled.any():
        r = int(np.argmax(unlabelled))
        raise feat_src.error(int(feat.lines[r]), f"txId {int(feat.ids[r])} has no row in {CLASSES_FILE}")

    found = index.contains(edg.edges.reshape(-1)).reshape(-1, 2)
    if not found.all():
        r = int(np.argmin(found.all(axis=1)))
        c = int(np.argmin(found[r]))
        raise edge_src.error(int(edg.lines[r]), f"{EDGES_HEADER[c]} {int(edg.edges[r, c])} is not in {FEATURES_FILE}")

    return EllipticDataset(
        tx_ids=feat.ids,
        steps=feat.steps,
        features=feat.features,
        labels=labels,
        edges=edg.edges.reshape(-1, 2),
        fingerprint=fingerprint,
    )
