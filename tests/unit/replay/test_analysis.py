"""Network analysis: fits on known distributions, hand-computed graph statistics, report end to end."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import typer
from scipy import special
from typer.testing import CliRunner

from replay.analysis import fit_densification, fit_power_law, run_analysis
from replay.analysis.network import analyze_network, step_statistics
from replay.analysis.report import to_jsonable
from replay.data.dataset import EllipticDataset
from replay.data.elliptic import load_elliptic
from replay.synth import synthesize
from txmon.cli.analyze import analyze
from txmon.core.elliptic_format import N_FEATURES
from txmon.core.fits import densification_series, fit_tail, lognormal_ccdf, power_law_ccdf

# ---------------------------------------------------------------- densification


@pytest.mark.parametrize("alpha", [1.0, 1.3])
def test_densification_recovers_alpha_exactly(alpha: float) -> None:
    n = np.geomspace(1_000, 200_000, 49)
    fit = fit_densification(n, 1.15 * n**alpha)
    assert fit.alpha == pytest.approx(alpha, abs=1e-9)
    assert np.exp(fit.intercept) == pytest.approx(1.15, rel=1e-9)
    assert fit.r2 == pytest.approx(1.0) and fit.stderr < 1e-9 and fit.n_points == 49
    np.testing.assert_allclose(fit.predict(n), 1.15 * n**alpha, rtol=1e-9)


@pytest.mark.parametrize("alpha", [1.0, 1.3])
def test_densification_recovers_alpha_with_noise(alpha: float) -> None:
    rng = np.random.default_rng(0)
    n = np.cumsum(rng.integers(1_000, 8_000, 49)).astype(float)
    e = 1.15 * n**alpha * np.exp(rng.normal(0, 0.02, n.size))
    fit = fit_densification(n, e)
    assert abs(fit.alpha - alpha) < 3 * fit.stderr + 0.01
    assert 0 < fit.stderr < 0.02 and fit.r2 > 0.99


def test_densification_errors_on_too_few_points() -> None:
    with pytest.raises(ValueError, match="at least 2 points"):
        fit_densification([100], [115])
    with pytest.raises(ValueError, match="at least 2 points"):
        fit_densification([100, 200, 300], [0, 0, 345])  # zero edges cannot be logged
    with pytest.raises(ValueError, match="same length"):
        fit_densification([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="distinct"):
        fit_densification([100, 100], [115, 120])


def test_two_points_fit_exactly_without_a_standard_error() -> None:
    fit = fit_densification([100, 400], [100, 800])
    assert fit.alpha == pytest.approx(1.5) and np.isnan(fit.stderr)


def test_densification_series_expanding_and_window() -> None:
    n = np.arange(1, 11, dtype=float) * 1000
    e = 2 * n**1.2
    expanding = densification_series(n, e)
    window = densification_series(n, e, window=4)
    assert expanding[:2] == [None, None] and window[:2] == [None, None]
    assert expanding[-1].n_points == 10 and window[-1].n_points == 4
    assert all(f.alpha == pytest.approx(1.2) for f in expanding[2:] + window[2:])


# ---------------------------------------------------------------- power law


def discrete_power_law(alpha: float, n: int, rng: np.random.Generator, kmax: int = 1_000_000) -> np.ndarray:
    """Exact inverse transform: X is the largest k with P(X ≥ k) = ζ(α, k) / ζ(α, 1) ≥ u."""
    ccdf = special.zeta(alpha, np.arange(1, kmax + 1, dtype=float)) / special.zeta(alpha, 1)
    return np.searchsorted(-ccdf, -rng.random(n), side="right")


def test_power_law_recovers_alpha_and_beats_lognormal() -> None:
    x = discrete_power_law(2.5, 20_000, np.random.default_rng(1))
    fit = fit_power_law(x)
    assert fit is not None
    assert fit.alpha == pytest.approx(2.5, abs=0.15)
    assert fit.lognormal_loglik_ratio > 0  # the power law is preferred over the lognormal
    assert fit.xmin <= 5 and 10 <= fit.n_tail <= x.size and 0 < fit.ks_distance < 0.05
    assert 0 <= fit.lognormal_p <= 1


def test_power_law_is_none_on_tiny_input() -> None:
    assert fit_power_law(np.array([1, 2, 3])) is None
    assert fit_power_law(np.zeros(1000)) is None  # zeros are dropped: nothing left
    assert fit_power_law(np.array([])) is None
    assert fit_power_law(np.full(100, 4)) is None  # one distinct value


def test_tail_keeps_at_least_min_tail_points() -> None:
    x = discrete_power_law(2.2, 3_000, np.random.default_rng(5))
    tail = fit_tail(x, min_tail=50)
    assert tail is not None and tail.power_law.n_tail >= 50
    assert tail.alpha_stderr == pytest.approx((tail.power_law.alpha - 1) / np.sqrt(tail.power_law.n_tail))


def test_model_ccdfs_start_at_one_and_fall() -> None:
    k = np.arange(3, 50)
    for ccdf in (power_law_ccdf(k, 2.5, 3), lognormal_ccdf(k, 1.0, 1.2, 3)):
        assert ccdf[0] == pytest.approx(1.0) and np.all(np.diff(ccdf) < 0)
    assert power_law_ccdf(np.array([20.0]), 2.5, 10, discrete=False)[0] == pytest.approx(2**-1.5)


# ---------------------------------------------------------------- hand-made graph


def _dataset(steps: dict[int, int], edges: list[tuple[int, int]]) -> EllipticDataset:
    ids = np.array(list(steps), dtype=np.int64)
    n = len(ids)
    return EllipticDataset(
        tx_ids=ids, steps=np.array(list(steps.values()), dtype=np.int16),
        features=np.zeros((n, N_FEATURES), dtype=np.float32), labels=np.full(n, -1, dtype=np.int8),
        edges=np.array(edges, dtype=np.int64).reshape(-1, 2),
    )


# Step 1: a triangle 10-11-12 with 13 hanging off 12. Step 2: two single edges and an isolated node.
# Rows are shuffled on purpose: the analysis must not rely on file order.
STEPS = {22: 2, 10: 1, 24: 2, 12: 1, 20: 2, 11: 1, 23: 2, 13: 1, 21: 2}
EDGES = [(10, 11), (11, 12), (12, 10), (12, 13), (20, 21), (22, 23)]


def test_per_step_and_cumulative_numbers_by_hand() -> None:
    per_step, cum = step_statistics(_dataset(STEPS, EDGES))
    s1, s2 = per_step
    assert (s1.step, s1.nodes, s1.edges, s1.components, s1.triangles, s1.wedges) == (1, 4, 4, 1, 1, 5)
    assert s1.avg_in_degree == s1.avg_out_degree == 1.0
    assert (s1.max_in_degree, s1.max_out_degree) == (1, 2)
    assert s1.density == pytest.approx(4 / (4 * 3))
    assert s1.clustering == pytest.approx((1 + 1 + 1 / 3 + 0) / 4)  # 12 closes 1 of its 3 wedges, 13 has degree 1
    assert s1.transitivity == pytest.approx(3 * 1 / 5)
    assert (s2.nodes, s2.edges, s2.components, s2.triangles, s2.clustering) == (5, 2, 3, 0, 0.0)
    assert s2.avg_in_degree == pytest.approx(0.4) and s2.density == pytest.approx(2 / 20)

    assert cum[0] == s1
    c = cum[1]
    assert (c.step, c.nodes, c.edges, c.components, c.triangles, c.wedges) == (2, 9, 6, 4, 1, 5)
    assert c.avg_in_degree == pytest.approx(6 / 9) and c.density == pytest.approx(6 / 72)
    assert c.clustering == pytest.approx((7 / 3) / 9) and c.transitivity == pytest.approx(0.6)


def test_cumulative_is_recounted_when_an_edge_crosses_steps() -> None:
    ds = _dataset(STEPS, [*EDGES, (13, 20)])  # joins step 1's component to {20, 21}
    per_step, cum = step_statistics(ds)
    assert [s.edges for s in per_step] == [4, 2]  # the crossing edge belongs to neither step's graph
    c = cum[1]
    assert (c.nodes, c.edges, c.components, c.triangles, c.wedges) == (9, 7, 3, 1, 7)
    assert c.clustering == pytest.approx((7 / 3) / 9) and c.transitivity == pytest.approx(3 / 7)
    a = analyze_network(ds, step_fits=False)
    assert a.cross_step_edges == 1 and a.step_fits == []


def test_degree_distributions_of_the_whole_graph() -> None:
    a = analyze_network(_dataset(STEPS, EDGES), step_fits=True)
    assert a.in_degree.nodes == 9 and a.in_degree.positive == 6 and a.out_degree.positive == 5
    assert dict(zip(a.out_degree.degree, a.out_degree.count, strict=True)) == {0: 4, 1: 4, 2: 1}
    assert sorted(a.out_degree.values().tolist()) == [0, 0, 0, 0, 1, 1, 1, 1, 2]
    assert a.in_degree.fit is None  # far too small to fit
    assert [f.step for f in a.step_fits] == [1, 2] and a.step_fits[0].in_degree is None
    assert a.densification is not None and a.densification.n_points == 2


def test_to_jsonable_turns_nan_into_null() -> None:
    assert to_jsonable({"a": float("nan"), "b": np.float64(1.5), "c": (np.int64(2),)}) == {"a": None, "b": 1.5,
                                                                                        "c": [2]}


# ---------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, EllipticDataset]:
    data = tmp_path_factory.mktemp("small")
    synthesize(data, scale=0.02, seed=0)
    return data, load_elliptic(data, cache_dir=tmp_path_factory.mktemp("cache"))


def _check_output(out: Path) -> dict:
    report = (out / "report.md").read_text()
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    assert {"degree_ccdf.png", "densification.png", "step_series.png"} <= set(images)
    for name in images:
        assert not Path(name).is_absolute() and (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    doc = json.loads((out / "analysis.json").read_text())
    alpha = doc["network"]["densification"]["alpha"]
    assert abs(alpha - 1) < 0.1
    assert f"α = {alpha:.3f}" in report  # the report states the fitted value, not a canned one
    assert len(doc["network"]["per_step"]) == len(doc["network"]["cumulative"]) == 49
    return doc


def test_run_analysis_end_to_end(small: tuple[Path, EllipticDataset], tmp_path: Path) -> None:
    data, ds = small
    phases: set[str] = set()
    out = tmp_path / "new" / "report"
    result = run_analysis(ds, out, source=str(data), progress=lambda p, done, total: phases.add(p))
    assert phases == {"stats", "fits", "plots", "report"}
    doc = _check_output(out)
    assert doc["source"] == str(data) and doc["network"]["cross_step_edges"] == 0
    assert result.network.cumulative[-1].nodes == ds.n_nodes
    assert result.network.cumulative[-1].edges == ds.n_edges
    assert doc["network"]["in_degree"]["fit"]["power_law"]["n_tail"] >= 10
    assert "no densification" in (out / "report.md").read_text()
    run_analysis(ds, out, step_fits=False)  # an existing report directory is overwritten
    assert "step_power_law.png" not in (out / "report.md").read_text()
    with pytest.raises(ValueError, match="window"):
        run_analysis(ds, out, window=2)


def test_cli(small: tuple[Path, EllipticDataset], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data, _ = small
    monkeypatch.setenv("TXMON_CACHE_DIR", str(tmp_path / "cache"))
    app = typer.Typer()
    app.command()(analyze)
    runner = CliRunner()
    out = tmp_path / "out"
    result = runner.invoke(app, [str(data), "--out", str(out), "--no-step-fits"])
    assert result.exit_code == 0, result.output
    assert "densification α" in result.output
    _check_output(out)

    result = runner.invoke(app, [str(tmp_path / "missing"), "--out", str(out)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    (tmp_path / "file").write_text("x")
    result = runner.invoke(app, [str(data), "--out", str(tmp_path / "file")])
    assert result.exit_code == 2 and "not a directory" in " ".join(result.output.split())  # rich wraps lines
