"""The synthetic generator: determinism, Kaggle format, calibration, exact aggregates, drift."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import f1_score, roc_auc_score

from replay.data.describe import describe
from replay.data.elliptic import load_elliptic
from replay.synth import generate, synthesize
from replay.synth.features import neighbour_aggregates
from replay.synth.typologies import Typology, draw_pattern, typology_mix
from txmon.core.elliptic_format import FILES, ILLICIT, LICIT, N_LOCAL, UNKNOWN

SCALE = 0.1  # ≈20k transactions: large enough for stable statistics, fast enough for every run


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("synth")
    data = synthesize(out, scale=SCALE, seed=7)
    ds = load_elliptic(out, cache_dir=tmp_path_factory.mktemp("cache"))
    return out, data, ds


def _digest(d: Path) -> dict[str, str]:
    return {f: hashlib.sha256((d / f).read_bytes()).hexdigest() for f in FILES}


def test_same_seed_gives_identical_bytes(tmp_path: Path) -> None:
    synthesize(tmp_path / "a", scale=0.02, seed=3)
    synthesize(tmp_path / "b", scale=0.02, seed=3)
    synthesize(tmp_path / "c", scale=0.02, seed=4)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a")["elliptic_txs_features.csv"] != _digest(tmp_path / "c")["elliptic_txs_features.csv"]


def test_files_are_in_kaggle_format(written) -> None:
    out, data, _ = written
    first = (out / "elliptic_txs_features.csv").read_text().split("\n", 1)[0].split(",")
    assert len(first) == 167
    assert first[0].isdigit() and 1 <= int(first[1]) <= 49  # no header: txId, step first
    float(first[2])
    classes = (out / "elliptic_txs_classes.csv").read_text().splitlines()
    assert classes[0] == "txId,class"
    assert {line.split(",")[1] for line in classes[1:]} == {"1", "2", "unknown"}
    assert (out / "elliptic_txs_edgelist.csv").read_text().splitlines()[0] == "txId1,txId2"
    assert b"\r" not in (out / "elliptic_txs_edgelist.csv").read_bytes()


def test_round_trip_through_the_loader(written) -> None:
    _, data, ds = written
    np.testing.assert_array_equal(ds.tx_ids, data.tx_ids)
    np.testing.assert_array_equal(ds.steps, data.steps)
    np.testing.assert_array_equal(ds.labels, data.labels)
    np.testing.assert_array_equal(ds.edges, data.edges)
    np.testing.assert_array_equal(ds.features, data.features.astype(np.float32))


def test_calibration_matches_published_statistics(written) -> None:
    _, _, ds = written
    s = describe(ds)
    assert s.steps == 49
    assert abs(s.nodes - 203_769 * SCALE) <= 49  # per-step rounding
    assert s.edges_per_node == pytest.approx(1.150, abs=0.01)
    assert s.share_illicit == pytest.approx(0.022, abs=0.005)
    assert s.share_licit == pytest.approx(0.206, abs=0.015)
    assert s.share_unknown == pytest.approx(0.772, abs=0.02)
    assert s.step_size_min >= SCALE * 1_000 - 1 and s.step_size_max <= SCALE * 8_000 + 1
    assert s.cross_step_edges == 0 and s.self_loops == 0 and s.duplicate_edges == 0
    assert s.steps_weakly_connected == 49
    assert s.clustering < 0.02
    assert max(st.density for st in s.per_step) < 0.01  # ~1.15/(n-1): sparse at any scale
    # Heavy tails: the largest degree is far above the mean, and the biggest hubs are licit.
    assert s.in_degree.max > 20 * s.in_degree.mean and s.out_degree.max > 20 * s.out_degree.mean
    deg = np.bincount(ds.edge_rows.ravel(), minlength=ds.n_nodes)
    top = np.argsort(-deg)[: max(10, ds.n_nodes // 1000)]
    assert np.sum(ds.labels[top] == ILLICIT) == 0 and np.sum(ds.labels[top] == LICIT) > len(top) // 2
    # Illicit transactions cluster: their labelled neighbours are illicit far above the base rate.
    assert s.illicit_neighbour_share > 3 * s.illicit_base_share


def test_full_scale_step_sizes_follow_elliptic() -> None:
    from replay.synth.calibration import ELLIPTIC
    from replay.synth.generator import step_sizes

    sizes = step_sizes(np.random.default_rng(0), 49, 1.0, ELLIPTIC)
    assert sizes.sum() == 203_769
    assert sizes.min() >= 1_000 and sizes.max() <= 8_000


def test_aggregates_are_recomputed_from_neighbours(written) -> None:
    _, _, ds = written
    local = ds.local_features.astype(np.float64)
    er = ds.edge_rows
    recomputed = neighbour_aggregates(local, er[:, 0], er[:, 1])
    written_agg = ds.aggregate_features.astype(np.float64)
    # Each written column is the recomputed statistic, standardised: an exact affine map.
    for j in range(recomputed.shape[1]):
        x, y = recomputed[:, j], written_agg[:, j]
        a, b = np.polyfit(x, y, 1)
        assert a > 0, f"aggregate {j}"
        assert np.max(np.abs(a * x + b - y)) < 1e-4 * max(1.0, np.abs(y).max()), f"aggregate {j}"


def test_aggregates_of_a_tampered_file_do_not_match(written) -> None:
    # The affine check above must be able to fail: shuffling neighbours breaks it.
    _, _, ds = written
    er = ds.edge_rows.copy()
    er[:, 1] = np.random.default_rng(0).permutation(er[:, 1])
    recomputed = neighbour_aggregates(ds.local_features.astype(np.float64), er[:, 0], er[:, 1])
    x, y = recomputed[:, 0], ds.aggregate_features[:, 0].astype(np.float64)
    a, b = np.polyfit(x, y, 1)
    assert np.max(np.abs(a * x + b - y)) > 1e-2


def test_local_features_carry_signal_but_do_not_separate_classes(written) -> None:
    _, _, ds = written
    known = ds.labels != UNKNOWN
    x, y = ds.local_features[known][:, :N_LOCAL], (ds.labels[known] == ILLICIT).astype(int)
    idx = np.random.default_rng(0).permutation(len(y))
    tr, te = idx[: len(y) // 2], idx[len(y) // 2:]
    rf = RandomForestClassifier(n_estimators=100, n_jobs=2, random_state=0).fit(x[tr], y[tr])
    p = rf.predict_proba(x[te])[:, 1]
    auc = roc_auc_score(y[te], p)
    best_f1 = max(f1_score(y[te], p >= t) for t in np.linspace(0.05, 0.95, 19))
    assert 0.6 < auc < 0.98, auc  # informative, with overlap
    assert best_f1 < 0.95, best_f1  # no threshold separates the classes


def test_pattern_mix_drifts_then_breaks_at_the_shutdown() -> None:
    first, last, after = typology_mix(1, 49, 43), typology_mix(42, 49, 43), typology_mix(43, 49, 43)
    assert last[Typology.PEELING_CHAIN] < first[Typology.PEELING_CHAIN]
    assert last[Typology.MIXING] > first[Typology.MIXING] and last[Typology.LAYERING] > first[Typology.LAYERING]
    assert Typology.SMURFING not in last and max(after, key=after.get) == Typology.SMURFING


@pytest.mark.parametrize("budget", [2, 3, 5, 17])
def test_patterns_fit_their_budget(budget: int) -> None:
    rng = np.random.default_rng(0)
    for typ in (Typology.PEELING_CHAIN, Typology.MIXING, Typology.LAYERING, Typology.SMURFING):
        for step in (1, 30, 49):
            p = draw_pattern(rng, typ, step, budget)
            assert 2 <= p.size <= budget
            assert all(0 <= a < p.size and 0 <= b < p.size and p.rank[a] < p.rank[b] for a, b in p.edges)


def test_illicit_activity_changes_at_the_shutdown() -> None:
    data = generate(scale=0.1, seed=1)
    pre, post = data.steps < 43, data.steps >= 43
    assert not np.any(data.typology[pre] == Typology.SMURFING)
    assert np.mean(data.typology[post & data.illicit] == Typology.SMURFING) > 0.3
    assert data.illicit[post].mean() < 0.6 * data.illicit[pre].mean()


def test_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="steps"):
        generate(scale=0.01, n_steps=50)
    with pytest.raises(ValueError, match="scale"):
        generate(scale=0)
