"""Tests for replay.data.elliptic (the Kaggle-file loader) and replay.data.cache (its binary cache)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from replay.data import cache, elliptic
from replay.data.dataset import EllipticDataset, TxIndex
from replay.data.elliptic import DatasetError, fingerprint_files, load_elliptic
from txmon.core.elliptic_format import CLASS_TO_LABEL, CLASSES_FILE, EDGES_FILE, FEATURES_FILE, N_FEATURES

F, C, E = FEATURES_FILE, CLASSES_FILE, EDGES_FILE
Lines = dict[str, list[str]]  # file name -> physical lines (without line endings)


# ---------------------------------------------------------------------------------------------
# A tiny valid data set, written the way Kaggle does (repr floats, no header on features)


def make_lines(n: int = 48, n_steps: int = 3, seed: int = 0) -> Lines:
    rng = np.random.default_rng(seed)
    ids = rng.permutation(np.unique(rng.integers(1, 400_000_000, size=2 * n)))[:n]
    steps = np.sort(rng.integers(1, n_steps + 1, size=n))
    feats = rng.standard_normal((n, N_FEATURES)) * rng.choice([0.01, 1.0, 100.0], size=(n, 1))
    classes = rng.choice(list(CLASS_TO_LABEL), size=n)
    features = [
        ",".join([str(i), str(s), *map(repr, row.tolist())]) for i, s, row in zip(ids, steps, feats, strict=True)
    ]
    order = rng.permutation(n)  # classes rows need not follow the features' order
    class_lines = ["txId,class", *(f"{ids[k]},{classes[k]}" for k in order)]
    edge_lines = ["txId1,txId2"]
    for _ in range(n + 10):
        s = rng.integers(1, n_steps + 1)
        members = ids[steps == s]
        if len(members) >= 2:
            a, b = rng.choice(members, size=2, replace=False)
            edge_lines.append(f"{a},{b}")
    return {F: features, C: class_lines, E: edge_lines}


def write(d: Path, lines: Lines, *, newline: str = "\n", bom: bool = False) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    for name, ls in lines.items():
        text = "".join(line + newline for line in ls)
        (d / name).write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())
    return d


def expected(lines: Lines) -> dict[str, np.ndarray]:
    rows = [line.split(",") for line in lines[F]]
    label_of = {int(t): CLASS_TO_LABEL[c] for t, c in (x.split(",") for x in lines[C][1:])}
    ids = np.array([int(r[0]) for r in rows], dtype=np.int64)
    return {
        "tx_ids": ids,
        "steps": np.array([int(r[1]) for r in rows], dtype=np.int16),
        "features": np.array([[float(v) for v in r[2:]] for r in rows]).astype(np.float32),
        "labels": np.array([label_of[int(i)] for i in ids], dtype=np.int8),
        "edges": np.array([[int(v) for v in x.split(",")] for x in lines[E][1:]], dtype=np.int64).reshape(-1, 2),
    }


def assert_same(a: EllipticDataset, b: EllipticDataset | dict[str, np.ndarray]) -> None:
    for name in ("tx_ids", "steps", "features", "labels", "edges"):
        x, y = getattr(a, name), b[name] if isinstance(b, dict) else getattr(b, name)
        assert x.dtype == y.dtype, name
        np.testing.assert_array_equal(x, y, err_msg=name)


@pytest.fixture
def lines() -> Lines:
    return make_lines()


def load(d: Path) -> EllipticDataset:
    return load_elliptic(d, use_cache=False)


# ---------------------------------------------------------------------------------------------
# Valid input


def test_valid_load(tmp_path: Path, lines: Lines) -> None:
    ds = load(write(tmp_path, lines))
    exp = expected(lines)
    assert ds.features.shape == (48, N_FEATURES) and ds.edges.shape == exp["edges"].shape
    assert ds.tx_ids.dtype == np.int64 and ds.steps.dtype == np.int16
    assert ds.features.dtype == np.float32 and ds.labels.dtype == np.int8 and ds.edges.dtype == np.int64
    assert_same(ds, exp)
    assert set(np.unique(ds.labels)) <= {-1, 0, 1}
    assert len(ds.fingerprint) == 64 and ds.fingerprint == fingerprint_files(tmp_path)
    np.testing.assert_array_equal(ds.tx_ids[ds.edge_rows], ds.edges)


def test_crlf_and_bom_load_identically(tmp_path: Path, lines: Lines) -> None:
    lf = load(write(tmp_path / "lf", lines))
    crlf = load(write(tmp_path / "crlf", lines, newline="\r\n"))
    bom = load(write(tmp_path / "bom", lines, newline="\r\n", bom=True))
    assert_same(crlf, lf)
    assert_same(bom, lf)
    assert len({lf.fingerprint, crlf.fingerprint, bom.fingerprint}) == 3  # different bytes


def test_blank_lines_ignored(tmp_path: Path, lines: Lines, block_lines: int) -> None:
    ref = load(write(tmp_path / "ref", lines))
    for name in (F, C, E):
        lines[name][3:3] = ["", "   "]
        lines[name] += ["", ""]
    assert_same(load(write(tmp_path / "blank", lines, newline="\r\n")), ref)


def test_regular_files_take_the_fast_path(tmp_path: Path, lines: Lines, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_slow(src: object, *_: object) -> None:
        raise AssertionError(f"slow path used for {src}")

    ref = load(write(tmp_path / "ref", lines))
    monkeypatch.setattr(elliptic, "_features_slow", no_slow)
    monkeypatch.setattr(elliptic, "_two_columns_slow", no_slow)
    assert_same(load(write(tmp_path / "crlf-bom", lines, newline="\r\n", bom=True)), ref)
    lines[F][5:5] = ["", ""]
    lines[F] += [""]
    assert_same(load(write(tmp_path / "blank", lines, newline="\r\n")), ref)


def test_no_trailing_newline_and_old_mac_line_endings(tmp_path: Path, lines: Lines) -> None:
    ref = load(write(tmp_path / "ref", lines))
    d = tmp_path / "cr"
    write(d, lines, newline="\r")
    (d / F).write_bytes((d / F).read_bytes().rstrip(b"\r"))
    assert_same(load(d), ref)


def test_no_edges(tmp_path: Path, lines: Lines) -> None:
    lines[E] = lines[E][:1]
    ds = load(write(tmp_path, lines))
    assert ds.edges.shape == (0, 2) and ds.edges.dtype == np.int64 and ds.edge_rows.shape == (0, 2)


def test_quoted_fields_accepted(tmp_path: Path, lines: Lines) -> None:
    ref = load(write(tmp_path / "ref", lines))
    lines[C][0] = '"txId","class"'
    lines[C][1:] = [f'{t},"{c}"' for t, c in (x.split(",") for x in lines[C][1:])]
    assert_same(load(write(tmp_path / "q", lines)), ref)


# ---------------------------------------------------------------------------------------------
# Malformed input: every message names file, physical line and field


def _set_field(ls: list[str], lineno: int, col: int, value: str) -> None:
    fields = ls[lineno - 1].split(",")
    fields[col - 1] = value
    ls[lineno - 1] = ",".join(fields)


def _id(ls: list[str], lineno: int) -> str:
    return ls[lineno - 1].split(",")[0]


def _short(L: Lines) -> str:
    L[F][9] = L[F][9].rsplit(",", 1)[0]
    return f"{F}:10: expected 167 columns, found 166"


def _long(L: Lines) -> str:
    L[F][4] += ",1.0"
    return f"{F}:5: expected 167 columns, found 168"


def _short_first(L: Lines) -> str:
    L[F][0] = L[F][0].rsplit(",", 1)[0]
    return f"{F}:1: expected 167 columns, found 166"


def _not_a_number(L: Lines) -> str:
    _set_field(L[F], 17, 45, "abc")
    return f"{F}:17: column 45 (feature 43): 'abc' is not a number"


def _na_string(L: Lines) -> str:
    _set_field(L[F], 6, 3, "NA")
    return f"{F}:6: column 3 (feature 1): 'NA' is not a number"


def _empty_value(L: Lines) -> str:
    _set_field(L[F], 3, 5, "")
    return f"{F}:3: column 5 (feature 3): empty value"


def _step_50(L: Lines) -> str:
    _set_field(L[F], 9, 2, "50")
    return f"{F}:9: column 2 (time step): 50 is outside 1..49"


def _step_0(L: Lines) -> str:
    _set_field(L[F], 2, 2, "0")
    return f"{F}:2: column 2 (time step): 0 is outside 1..49"


def _step_fraction(L: Lines) -> str:
    _set_field(L[F], 4, 2, "2.5")
    return f"{F}:4: column 2 (time step): '2.5' is not an integer"


def _negative_id(L: Lines) -> str:
    _set_field(L[F], 7, 1, "-3")
    return f"{F}:7: column 1 (txId): '-3' is not a positive integer"


def _fractional_id(L: Lines) -> str:
    _set_field(L[F], 8, 1, "1.5")
    return f"{F}:8: column 1 (txId): '1.5' is not a positive integer"


def _huge_id(L: Lines) -> str:
    _set_field(L[F], 3, 1, "99999999999999999999")
    return f"{F}:3: column 1 (txId): '99999999999999999999' is too large for a txId (at most 2**53)"


def _tab_separated(L: Lines) -> str:
    L[F] = [x.replace(",", "\t") for x in L[F]]
    return f"{F}:1: expected 167 columns, found 1; fields must be separated by commas"


def _duplicate_id(L: Lines) -> str:
    tx = _id(L[F], 12)
    _set_field(L[F], 30, 1, tx)
    return f"{F}:30: duplicate txId {tx} (first seen on line 12)"


def _nan(L: Lines) -> str:
    _set_field(L[F], 8, 10, "nan")
    return f"{F}:8: column 10 (feature 8): 'nan' is not a finite number"


def _inf(L: Lines) -> str:
    _set_field(L[F], 21, 167, "-inf")
    return f"{F}:21: column 167 (feature 165): '-inf' is not a finite number"


def _float32_overflow(L: Lines) -> str:
    _set_field(L[F], 5, 100, "1e39")
    return f"{F}:5: column 100 (feature 98): '1e39' is too large for float32"


def _features_header(L: Lines) -> str:
    L[F].insert(0, ",".join(["txId", "time step", *(f"f{i}" for i in range(1, 166))]))
    return (
        f"{F}:1: column 1 (txId): 'txId' is not a number; this looks like a header line, "
        f"but Kaggle's {F} has none (delete the line)"
    )


def _first_problem_wins(L: Lines) -> str:
    # A NaN (found by the slow pass) on line 20 comes after a duplicate on line 10.
    _set_field(L[F], 20, 50, "")
    tx = _id(L[F], 2)
    _set_field(L[F], 10, 1, tx)
    return f"{F}:10: duplicate txId {tx} (first seen on line 2)"


def _first_problem_wins_2(L: Lines) -> str:
    L[F][19] += ",7"
    _set_field(L[F], 15, 2, "50")
    return f"{F}:15: column 2 (time step): 50 is outside 1..49"


def _blank_lines_counted(L: Lines) -> str:
    L[F][2:2] = ["", ""]
    L[F][11] = L[F][11].rsplit(",", 1)[0]
    return f"{F}:12: expected 167 columns, found 166"


def _features_empty(L: Lines) -> str:
    L[F] = []
    return f"{F}: the file has no transactions"


def _bad_class(L: Lines) -> str:
    L[C][4] = _id(L[C], 5) + ",x"
    return f"{C}:5: class 'x' is not one of '1', '2', 'unknown'"


def _classes_missing_header(L: Lines) -> str:
    first = L[C].pop(0) and L[C][0]
    return f"{C}:1: missing header line 'txId,class' (the first line is data: {first!r})"


def _classes_wrong_header(L: Lines) -> str:
    L[C][0] = "txid,label"
    return f"{C}:1: expected the header 'txId,class', found 'txid,label'"


def _classes_empty(L: Lines) -> str:
    L[C] = []
    return f"{C}:1: the file is empty (expected the header 'txId,class')"


def _classes_duplicate(L: Lines) -> str:
    tx = _id(L[C], 3)
    _set_field(L[C], 7, 1, tx)
    return f"{C}:7: duplicate txId {tx} (first seen on line 3)"


def _classes_unknown_tx(L: Lines) -> str:
    _set_field(L[C], 6, 1, "999999999")
    return f"{C}:6: txId 999999999 is not in {F}"


def _feature_without_class(L: Lines) -> str:
    tx = _id(L[F], 11)
    L[C] = [x for x in L[C] if x.split(",")[0] != tx]
    return f"{F}:11: txId {tx} has no row in {C}"


def _classes_three_columns(L: Lines) -> str:
    L[C][3] += ",1"
    return f"{C}:4: expected 2 columns (txId,class), found 3"


def _classes_one_column(L: Lines) -> str:
    L[C][3] = _id(L[C], 4)
    return f"{C}:4: expected 2 columns (txId,class), found 1"


def _classes_bad_id(L: Lines) -> str:
    _set_field(L[C], 4, 1, "abc")
    return f"{C}:4: column 1 (txId): 'abc' is not a positive integer"


def _classes_zero_id(L: Lines) -> str:
    _set_field(L[C], 9, 1, "0")
    return f"{C}:9: column 1 (txId): '0' is not a positive integer"


def _edge_unknown_dst(L: Lines) -> str:
    _set_field(L[E], 7, 2, "999999999")
    return f"{E}:7: txId2 999999999 is not in {F}"


def _edge_unknown_src(L: Lines) -> str:
    _set_field(L[E], 3, 1, "999999998")
    return f"{E}:3: txId1 999999998 is not in {F}"


def _edges_missing_header(L: Lines) -> str:
    first = L[E].pop(0) and L[E][0]
    return f"{E}:1: missing header line 'txId1,txId2' (the first line is data: {first!r})"


def _edges_wrong_header(L: Lines) -> str:
    L[E][0] = "source,target"
    return f"{E}:1: expected the header 'txId1,txId2', found 'source,target'"


def _edges_bad_id(L: Lines) -> str:
    _set_field(L[E], 5, 2, "x")
    return f"{E}:5: column 2 (txId2): 'x' is not a positive integer"


def _edges_negative_id(L: Lines) -> str:
    _set_field(L[E], 6, 1, "-5")
    return f"{E}:6: column 1 (txId1): '-5' is not a positive integer"


def _edges_one_column(L: Lines) -> str:
    L[E][8] = _id(L[E], 9)
    return f"{E}:9: expected 2 columns (txId1,txId2), found 1"


MALFORMED: list[Callable[[Lines], str]] = [
    _short,
    _long,
    _short_first,
    _not_a_number,
    _na_string,
    _empty_value,
    _step_50,
    _step_0,
    _step_fraction,
    _negative_id,
    _fractional_id,
    _huge_id,
    _tab_separated,
    _duplicate_id,
    _nan,
    _inf,
    _float32_overflow,
    _features_header,
    _first_problem_wins,
    _first_problem_wins_2,
    _blank_lines_counted,
    _features_empty,
    _bad_class,
    _classes_missing_header,
    _classes_wrong_header,
    _classes_empty,
    _classes_duplicate,
    _classes_unknown_tx,
    _feature_without_class,
    _classes_three_columns,
    _classes_one_column,
    _classes_bad_id,
    _classes_zero_id,
    _edge_unknown_dst,
    _edge_unknown_src,
    _edges_missing_header,
    _edges_wrong_header,
    _edges_bad_id,
    _edges_negative_id,
    _edges_one_column,
]


@pytest.fixture(params=[4096, 5], ids=["block4096", "block5"])
def block_lines(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """The slow pass's block size: 5 makes problems fall in later blocks and at block edges."""
    monkeypatch.setattr(elliptic, "_BLOCK_LINES", request.param)
    return request.param


@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["lf", "crlf"])
@pytest.mark.parametrize("mutate", MALFORMED, ids=lambda f: f.__name__.strip("_"))
def test_malformed(
    tmp_path: Path, lines: Lines, mutate: Callable[[Lines], str], newline: str, block_lines: int
) -> None:
    message = mutate(lines)
    write(tmp_path, lines, newline=newline)
    with pytest.raises(DatasetError) as info:
        load(tmp_path)
    assert str(info.value) == message
    assert isinstance(info.value, ValueError)
    assert info.value.__traceback__ is not None


def test_error_attributes(tmp_path: Path, lines: Lines) -> None:
    _step_50(lines)
    with pytest.raises(DatasetError) as info:
        load(write(tmp_path, lines))
    assert (info.value.file, info.value.line) == (F, 9)


def test_missing_file(tmp_path: Path, lines: Lines) -> None:
    write(tmp_path, lines)
    (tmp_path / F).unlink()
    with pytest.raises(DatasetError, match=rf"data directory .* has no {F} \(expected the three Kaggle files: "):
        load(tmp_path)
    with pytest.raises(DatasetError, match="does not exist"):
        load(tmp_path / "nope")


def test_missing_files_hint_nested_directory(tmp_path: Path, lines: Lines) -> None:
    write(tmp_path / "elliptic_bitcoin_dataset", lines)
    with pytest.raises(DatasetError, match="pass that directory instead"):
        load(tmp_path)


# ---------------------------------------------------------------------------------------------
# Cache


def _no_parse(*_: object) -> EllipticDataset:
    raise AssertionError("parsed although the cache should have been used")


def test_second_load_hits_cache(tmp_path: Path, lines: Lines, monkeypatch: pytest.MonkeyPatch) -> None:
    d, cdir = write(tmp_path / "data", lines), tmp_path / "cache"
    fresh = load(d)
    first = load_elliptic(d, cache_dir=cdir)
    assert cache.entry_path(cdir, first.fingerprint).is_file()
    assert (cdir / cache.STAT_INDEX).is_file()
    monkeypatch.setattr(elliptic, "_parse_files", _no_parse)
    second = load_elliptic(d, cache_dir=cdir)
    assert_same(second, first)
    assert second.fingerprint == first.fingerprint == fresh.fingerprint


def test_unchanged_files_are_not_rehashed(tmp_path: Path, lines: Lines, monkeypatch: pytest.MonkeyPatch) -> None:
    d, cdir = write(tmp_path / "data", lines), tmp_path / "cache"
    old = 1_600_000_000_000_000_000  # an mtime well in the past, so the memo is not "racy"
    for name in (F, C, E):
        os.utime(d / name, ns=(old, old))
    first = load_elliptic(d, cache_dir=cdir)

    def no_open(path: Path, *_: object) -> bytes:
        raise AssertionError(f"read {path} although it is unchanged and cached")

    monkeypatch.setattr(elliptic, "_open", no_open)
    monkeypatch.setattr(elliptic, "_parse_files", _no_parse)
    assert load_elliptic(d, cache_dir=cdir).fingerprint == first.fingerprint


def test_touched_file_is_rehashed_but_still_cached(
    tmp_path: Path, lines: Lines, monkeypatch: pytest.MonkeyPatch
) -> None:
    d, cdir = write(tmp_path / "data", lines), tmp_path / "cache"
    first = load_elliptic(d, cache_dir=cdir)
    os.utime(d / C, ns=(1_000_000_000, 1_000_000_000))  # same content, new mtime
    monkeypatch.setattr(elliptic, "_parse_files", _no_parse)
    assert load_elliptic(d, cache_dir=cdir).fingerprint == first.fingerprint


def test_changed_file_invalidates(tmp_path: Path, lines: Lines) -> None:
    d, cdir = write(tmp_path / "data", lines), tmp_path / "cache"
    first = load_elliptic(d, cache_dir=cdir)
    _set_field(lines[F], 1, 3, "42.5")  # same mtime granularity is possible: the size differs too
    write(d, lines)
    second = load_elliptic(d, cache_dir=cdir)
    assert second.fingerprint != first.fingerprint
    assert second.features[0, 0] == np.float32(42.5)
    assert_same(second, load(d))


def test_same_size_change_within_mtime_granularity(tmp_path: Path, lines: Lines) -> None:
    d, cdir = write(tmp_path / "data", lines), tmp_path / "cache"
    st = (d / F).stat()
    load_elliptic(d, cache_dir=cdir)
    text = (d / F).read_text()
    first_value = lines[F][0].split(",")[2]
    changed = first_value[:-1] + ("1" if first_value[-1] != "1" else "2")
    (d / F).write_text(text.replace(first_value, changed, 1))
    os.utime(d / F, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size and mtime: only ctime/racy catch it
    assert load_elliptic(d, cache_dir=cdir).features[0, 0] == np.float32(float(changed))


def test_corrupt_cache_entry_is_rebuilt(tmp_path: Path, lines: Lines) -> None:
    d, cdir = write(tmp_path / "data", lines), tmp_path / "cache"
    first = load_elliptic(d, cache_dir=cdir)
    entry = cache.entry_path(cdir, first.fingerprint)
    entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])
    assert_same(load_elliptic(d, cache_dir=cdir), first)
    assert cache.read_dataset(cdir, first.fingerprint) is not None  # rewritten
    entry.write_bytes(b"garbage")
    (cdir / cache.STAT_INDEX).write_text("{not json")
    assert_same(load_elliptic(d, cache_dir=cdir), first)


def test_cache_entry_with_wrong_dtype_is_ignored(tmp_path: Path, lines: Lines) -> None:
    d, cdir = write(tmp_path / "data", lines), tmp_path / "cache"
    first = load_elliptic(d, cache_dir=cdir)
    entry = cache.entry_path(cdir, first.fingerprint)
    with np.load(entry) as z:
        arrays = dict(z)
    arrays["features"] = arrays["features"].astype(np.float64)
    np.savez(entry, **arrays)
    assert cache.read_dataset(cdir, first.fingerprint) is None
    assert_same(load_elliptic(d, cache_dir=cdir), first)


def test_use_cache_false_writes_nothing(tmp_path: Path, lines: Lines) -> None:
    d, cdir = write(tmp_path / "data", lines), tmp_path / "cache"
    load_elliptic(d, cache_dir=cdir, use_cache=False)
    assert not cdir.exists()


def test_default_cache_dir_from_settings(tmp_path: Path, lines: Lines, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TXMON_CACHE_DIR", str(tmp_path / "home-cache"))
    ds = load_elliptic(write(tmp_path / "data", lines))
    assert cache.entry_path(tmp_path / "home-cache" / "datasets", ds.fingerprint).is_file()


def test_errors_are_not_cached(tmp_path: Path, lines: Lines) -> None:
    _step_50(lines)
    d, cdir = write(tmp_path / "data", lines), tmp_path / "cache"
    for _ in range(2):
        with pytest.raises(DatasetError, match=":9: "):
            load_elliptic(d, cache_dir=cdir)
    assert not list(cdir.glob("*.npz"))


# ---------------------------------------------------------------------------------------------
# TxIndex


def test_tx_index(tmp_path: Path, lines: Lines) -> None:
    ds = load(write(tmp_path, lines))
    idx = ds.index
    assert len(idx) == ds.n_nodes
    np.testing.assert_array_equal(idx.rows(ds.tx_ids[::-1]), np.arange(ds.n_nodes)[::-1])
    np.testing.assert_array_equal(idx.contains(np.array([ds.tx_ids[3], 999_999_999])), [True, False])
    assert idx[int(ds.tx_ids[5])] == 5
    assert int(ds.tx_ids[0]) in idx and 999_999_999 not in idx and "x" not in idx
    with pytest.raises(KeyError, match="unknown txId 999999999"):
        idx.rows([int(ds.tx_ids[0]), 999_999_999])
    with pytest.raises(KeyError):
        idx[0]
    empty = TxIndex(np.array([], dtype=np.int64))
    assert not empty.contains(np.array([1])).any() and 1 not in empty
