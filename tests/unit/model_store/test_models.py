"""The detectors: they learn, the splits do not leak, the fast paths equal the reference paths.

All on a small synthetic data set (scale 0.1, seed 0: ~20k transactions, ~4.7k labelled), trained
once per module. Nothing here hard-codes a model's score: every check compares against an
independent computation (scikit-learn, PyG, brute force) or a property that must hold.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import sparse
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from model_store import MODEL_TYPES
from model_store.fitting import RowPlan
from model_store.graph import (
    gcn_adjacency,
    gcn_rows,
    hop_rows,
    neighbours,
    row_block,
    transition_matrix,
    undirected_edge_index,
)
from model_store.inference import Scaler, gcn_scores
from model_store.metrics import choose_threshold, f1_per_step, illicit_metrics
from model_store.models.forest import forest_predict, forest_to_tensors
from model_store.models.gcn import GCN
from model_store.models.lpa import propagate
from model_store.registry import ModelStore
from model_store.scoring import score_stored
from model_store.splits import make_split, random_split, temporal_split
from model_store.train import TrainConfig, select_features, train_model
from replay.data.dataset import EllipticDataset
from replay.synth import generate
from txmon.core.elliptic_format import ILLICIT, LICIT, UNKNOWN

pytestmark = pytest.mark.filterwarnings("ignore:Sparse:UserWarning")

EPOCHS = 40  # GCN / MLP epochs for the "learns" checks (best validation epoch is kept)
TREES = 30


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """One intra-op thread: small tensors, and no oversubscription stalls on a busy 2-core runner."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def ds() -> EllipticDataset:
    d = generate(0.1, 49, 0)
    return EllipticDataset(d.tx_ids, d.steps, d.features.astype(np.float32), d.labels, d.edges, fingerprint="x")


@pytest.fixture(scope="module")
def y(ds: EllipticDataset) -> np.ndarray:
    return ds.labels == ILLICIT


@pytest.fixture(scope="module")
def random_trained(ds: EllipticDataset):
    """Every model type trained once on the random split (seed 0)."""
    split = make_split(ds, "random", seed=0)
    results = {m: train_model(ds, split, TrainConfig(m, split="random", seed=0, epochs=EPOCHS, n_estimators=TREES))
               for m in MODEL_TYPES}
    return split, results


def _with_labels(ds: EllipticDataset, labels: np.ndarray) -> EllipticDataset:
    return EllipticDataset(ds.tx_ids, ds.steps, ds.features, labels.astype(np.int8), ds.edges,
                           fingerprint=ds.fingerprint)


# -- 1. every model learns -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_model_beats_chance_on_random_split(random_trained, y, ds, model_type: str) -> None:
    split, results = random_trained
    r = results[model_type]
    assert r.scores.shape == (ds.n_nodes,) and np.isfinite(r.scores).all()
    assert ((r.scores >= 0) & (r.scores <= 1)).all()
    y_test, s_test = y[split.test], r.scores[split.test]
    assert 0 < y_test.sum() < len(y_test)

    auc = roc_auc_score(y_test, s_test)
    assert auc > 0.7, f"{model_type}: test ROC-AUC {auc:.3f}"
    f1 = f1_score(y_test, s_test >= r.threshold)
    all_illicit_f1 = f1_score(y_test, np.ones_like(y_test))
    assert f1 > 1.5 * all_illicit_f1, f"{model_type}: test F1 {f1:.3f} vs all-illicit F1 {all_illicit_f1:.3f}"
    # The reported metrics are these numbers, at the threshold chosen on validation.
    assert r.metrics["test"]["roc_auc"] == pytest.approx(auc, abs=1e-12)
    assert r.metrics["test"]["f1"] == pytest.approx(f1, abs=1e-12)
    assert r.threshold == choose_threshold(y[split.val], r.scores[split.val])


def test_lpa_temporal_split_scores_every_test_node_with_the_prior(ds, y) -> None:
    er = ds.edge_rows
    assert (ds.steps[er[:, 0]] == ds.steps[er[:, 1]]).all(), "precondition: no edge crosses time steps"
    split = make_split(ds, "temporal")
    r = train_model(ds, split, TrainConfig("lpa", split="temporal"))
    prior = float(y[split.train].mean())
    assert 0 < prior < 1
    # Validation and test steps share no edge with the training steps: nothing reaches them.
    assert (r.scores[split.test] == prior).all()
    assert (r.scores[split.val] == prior).all()
    assert r.metrics["test"]["roc_auc"] == 0.5
    assert roc_auc_score(y[split.test], r.scores[split.test]) == 0.5
    # ... while the training steps' unlabelled nodes near seeds do get propagated scores.
    unlabelled_train_steps = (ds.labels == UNKNOWN) & split.visible
    assert (r.scores[unlabelled_train_steps] != prior).any()


# -- 2. LPA ----------------------------------------------------------------------------------------------------------


def test_undirected_edges_and_transition_matrix_on_a_hand_graph() -> None:
    # 0-1-2 triangle (one edge given twice, once reversed), 3-4, 5 isolated, 6 only a self loop.
    edges = np.array([[0, 1], [1, 2], [2, 0], [1, 0], [3, 4], [6, 6]])
    ei = undirected_edge_index(edges, 7)
    assert sorted(map(tuple, ei.T.tolist())) == [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1), (3, 4), (4, 3)]
    t = transition_matrix(ei, 7).toarray()
    expected = np.zeros((7, 7))
    expected[0, [1, 2]] = expected[1, [0, 2]] = expected[2, [0, 1]] = 0.5
    expected[3, 4] = expected[4, 3] = 1.0
    np.testing.assert_array_equal(t, expected)


def _random_graph(seed: int, n: int = 60, m: int = 90) -> sparse.csr_matrix:
    """Symmetric, no self loops, no repeated entries (a step's graph as the worker holds it); some nodes isolated."""
    rng = np.random.default_rng(seed)
    ei = undirected_edge_index(rng.integers(0, n - 5, size=(m, 2)), n).numpy()
    return sparse.csr_matrix((np.ones(ei.shape[1]), (ei[0], ei[1])), shape=(n, n))


@pytest.mark.parametrize("seed", range(5))
def test_gcn_rows_are_gcn_adjacency_rows_bit_for_bit(seed: int) -> None:
    adj = _random_graph(seed)
    coo = adj.tocoo()
    full = gcn_adjacency(torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64)), adj.shape[0])
    rows = np.unique(np.random.default_rng(seed).integers(0, adj.shape[0], 20))
    rows = np.union1d(rows, [adj.shape[0] - 1])  # an isolated node: its self loop only
    part = gcn_rows(adj, rows)
    assert part.shape == full.shape
    for a, b in ((full[rows], part[rows]), (full[rows][:, rows], part[rows][:, rows])):
        np.testing.assert_array_equal(a.indptr, b.indptr)
        np.testing.assert_array_equal(a.indices, b.indices)
        np.testing.assert_array_equal(a.data, b.data)  # exact: arrival scores must not move
    others = np.setdiff1d(np.arange(adj.shape[0]), rows)
    assert part[others].nnz == 0


@pytest.mark.parametrize("seed", range(5))
def test_row_block_and_neighbours_are_scipy_indexing(seed: int) -> None:
    adj = _random_graph(seed)
    adj.data = np.random.default_rng(seed).random(adj.nnz)  # values, so a mixed-up entry would show
    hops = hop_rows(adj, np.array([seed, 7, 30]), 2)
    np.testing.assert_array_equal(neighbours(adj, hops[1]), adj[hops[1]].indices)
    for rows, cols in ((hops[0], hops[1]), (hops[1], hops[2]), (hops[0], hops[2])):
        got, want = row_block(adj, rows, cols), adj[rows][:, cols]
        assert got.shape == want.shape
        np.testing.assert_array_equal(got.indptr, want.indptr)
        np.testing.assert_array_equal(got.indices, want.indices)
        np.testing.assert_array_equal(got.data, want.data)
    with pytest.raises(ValueError, match="outside cols"):
        row_block(adj, hops[1], hops[0])  # hop 1 rows have neighbours outside hop 0 in these graphs


def test_transition_matrix_rows_sum_to_one_except_isolated_nodes(ds) -> None:
    n = ds.n_nodes
    ei = undirected_edge_index(ds.edge_rows, n)
    t = sparse.csr_matrix(transition_matrix(ei, n))
    deg = np.bincount(ei[0].numpy(), minlength=n)
    isolated = deg == 0  # the synthetic graph may have none; the hand graph above covers zero rows
    assert (~isolated).any()
    sums = np.asarray(t.sum(axis=1)).ravel()
    np.testing.assert_allclose(sums[~isolated], 1.0, rtol=0, atol=1e-12)
    assert (sums[isolated] == 0).all()
    assert (t.data > 0).all()
    # T = D^-1 A: row i holds 1/deg(i) on each neighbour.
    coo = t.tocoo()
    np.testing.assert_allclose(coo.data, 1.0 / deg[coo.row], rtol=1e-15)
    assert t.nnz == ei.shape[1]


def test_propagate_keeps_seed_labels_fixed_after_every_step(ds, y) -> None:
    split = make_split(ds, "random", seed=0)
    t = transition_matrix(undirected_edge_index(ds.edge_rows, ds.n_nodes), ds.n_nodes)
    all_scores = propagate(t, split.train, y & split.train, 6)
    assert len(all_scores) == 6
    for s in all_scores:
        assert (s[split.train & y] == 1.0).all()
        assert (s[split.train & ~y] == 0.0).all()
        assert ((s >= 0) & (s <= 1)).all()
    # Non-seeds move over the steps (the propagation does something).
    assert not np.array_equal(all_scores[0][~split.train], all_scores[-1][~split.train])


def test_propagate_unreached_nodes_score_the_prior() -> None:
    # path 0-1-2-3-4, seed 0 illicit, seed 4 licit; 5 an isolated licit seed; 6 an isolated unlabelled node.
    edges = np.array([[0, 1], [1, 2], [2, 3], [3, 4]])
    t = transition_matrix(undirected_edge_index(edges, 7), 7)
    seeds = np.array([1, 0, 0, 0, 1, 1, 0], dtype=bool)
    illicit = np.array([1, 0, 0, 0, 0, 0, 0], dtype=bool)
    prior = 1 / 3
    s1, s2, s3 = propagate(t, seeds, illicit, 3)
    np.testing.assert_allclose(s1, [1.0, 1.0, prior, 0.0, 0.0, 0.0, prior], rtol=0, atol=1e-15)
    np.testing.assert_allclose(s2, [1.0, 1.0, 0.5, 0.0, 0.0, 0.0, prior], rtol=0, atol=1e-15)
    assert s3[6] == pytest.approx(prior) and s3[0] == 1.0 and s3[4] == 0.0 and s3[5] == 0.0


# -- 3. metrics ------------------------------------------------------------------------------------------------------

Y_HAND = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0], dtype=bool)
S_HAND = np.array([0.9, 0.8, 0.4, 0.3, 0.7, 0.2, 0.1, 0.35, 0.05, 0.6])


def test_illicit_metrics_match_sklearn_and_hand_count() -> None:
    m = illicit_metrics(Y_HAND, S_HAND, 0.5)
    pred = S_HAND >= 0.5  # illicit: 0.9 0.8 | 0.7 0.6
    assert m["confusion"] == {"tp": 2, "fn": 2, "fp": 2, "tn": 4}
    assert m["precision"] == precision_score(Y_HAND, pred) == 0.5
    assert m["recall"] == recall_score(Y_HAND, pred) == 0.5
    assert m["f1"] == pytest.approx(f1_score(Y_HAND, pred)) and m["f1"] == pytest.approx(0.5)
    assert m["accuracy"] == accuracy_score(Y_HAND, pred) == 0.6
    # 19 of the 24 (illicit, licit) pairs are ranked correctly.
    assert m["roc_auc"] == pytest.approx(roc_auc_score(Y_HAND, S_HAND)) and m["roc_auc"] == pytest.approx(19 / 24)
    assert m["pr_auc"] == pytest.approx(average_precision_score(Y_HAND, S_HAND))
    assert (m["n"], m["n_illicit"], m["threshold"]) == (10, 4, 0.5)


def test_illicit_metrics_threshold_is_inclusive_and_single_class_auc_is_nan() -> None:
    m = illicit_metrics(Y_HAND, S_HAND, 0.4)  # a score equal to the threshold counts as illicit
    assert m["confusion"] == {"tp": 3, "fn": 1, "fp": 2, "tn": 4}
    m = illicit_metrics(np.zeros(4, dtype=bool), np.array([0.1, 0.9, 0.2, 0.3]), 0.5)
    assert math.isnan(m["roc_auc"]) and math.isnan(m["pr_auc"])
    assert m["confusion"] == {"tp": 0, "fn": 0, "fp": 1, "tn": 3} and m["f1"] == 0.0


@pytest.mark.parametrize("seed", range(6))
def test_choose_threshold_maximises_f1_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 60
    y_true = rng.random(n) < 0.25
    y_true[:2] = [True, False]
    # Rounded, so many scores tie; informative, so the best threshold is not trivial.
    score = np.round(np.clip(0.3 * y_true + rng.random(n) * 0.8, 0, 1), 1 if seed % 2 else 2)
    thr = choose_threshold(y_true, score)
    f1_of = {float(c): f1_score(y_true, score >= c, zero_division=0) for c in np.unique(score)}
    assert thr in f1_of
    assert f1_of[thr] == pytest.approx(max(f1_of.values()), abs=1e-12)
    assert illicit_metrics(y_true, score, thr)["f1"] == pytest.approx(max(f1_of.values()), abs=1e-12)


def test_choose_threshold_without_both_classes_is_half() -> None:
    assert choose_threshold(np.zeros(5, dtype=bool), np.linspace(0, 1, 5)) == 0.5
    assert choose_threshold(np.ones(5, dtype=bool), np.linspace(0, 1, 5)) == 0.5


def test_f1_per_step_matches_sklearn_per_step() -> None:
    rng = np.random.default_rng(3)
    n = 200
    steps = rng.integers(35, 41, n).astype(np.int16)
    y_true = rng.random(n) < 0.2
    y_true[steps == 38] = False  # a step without illicit transactions
    score = np.clip(0.4 * y_true + rng.random(n) * 0.7, 0, 1)
    out = f1_per_step(y_true, score, steps, 0.5)
    assert sorted(out) == list(range(35, 41))
    for t in range(35, 41):
        sub = steps == t
        assert out[t] == pytest.approx(f1_score(y_true[sub], score[sub] >= 0.5, zero_division=0), abs=1e-12)
    assert out[38] == 0.0


# -- 4. splits -------------------------------------------------------------------------------------------------------


def test_temporal_split(ds) -> None:
    sp = temporal_split(ds)
    known = ds.labels != UNKNOWN
    s = ds.steps
    assert not (sp.train & sp.val).any() and not (sp.train & sp.test).any() and not (sp.val & sp.test).any()
    for mask in (sp.train, sp.val, sp.test):
        assert mask.dtype == bool and mask.shape == (ds.n_nodes,) and mask.any()
        assert not (mask & ~known).any()
    assert s[sp.train].max() < s[sp.val].min() and s[sp.val].max() < s[sp.test].min()
    np.testing.assert_array_equal(sp.train, known & (s >= 1) & (s <= 29))
    np.testing.assert_array_equal(sp.val, known & (s >= 30) & (s <= 34))
    np.testing.assert_array_equal(sp.test, known & (s >= 35) & (s <= 49))
    np.testing.assert_array_equal(sp.visible, s <= 34)
    assert not (sp.visible & sp.test).any()
    assert sp.to_dict() == {"name": "temporal", "description": sp.description, "train": int(sp.train.sum()),
                            "val": int(sp.val.sum()), "test": int(sp.test.sum())}


def test_random_split(ds, y) -> None:
    sp = random_split(ds, seed=0)
    known = ds.labels != UNKNOWN
    assert not (sp.train & sp.val).any() and not (sp.train & sp.test).any() and not (sp.val & sp.test).any()
    np.testing.assert_array_equal(sp.train | sp.val | sp.test, known & (ds.steps <= 20))
    assert not ((sp.train | sp.val | sp.test) & ~known).any()
    assert ds.steps[sp.train | sp.val | sp.test].max() <= 20
    n = (sp.train | sp.val | sp.test).sum()
    assert sp.train.sum() / n == pytest.approx(0.7, abs=0.01)
    assert sp.val.sum() / n == pytest.approx(0.15, abs=0.01) and sp.test.sum() / n == pytest.approx(0.15, abs=0.01)
    shares = [y[m].mean() for m in (sp.train, sp.val, sp.test)]
    assert max(shares) - min(shares) <= 0.01, shares
    # Deterministic for a seed, different for another.
    again = random_split(ds, seed=0)
    for a, b in ((sp.train, again.train), (sp.val, again.val), (sp.test, again.test)):
        np.testing.assert_array_equal(a, b)
    other = random_split(ds, seed=1)
    assert not np.array_equal(sp.test, other.test) and not np.array_equal(sp.train, other.train)


def test_make_split_rejects_unknown_name(ds) -> None:
    with pytest.raises(ValueError, match="unknown split 'bogus'"):
        make_split(ds, "bogus")


def _flip_test_labels(ds: EllipticDataset, test: np.ndarray) -> EllipticDataset:
    labels = ds.labels.copy()
    labels[test & (ds.labels == ILLICIT)] = LICIT
    labels[test & (ds.labels == LICIT)] = ILLICIT
    return _with_labels(ds, labels)


def _same_metrics(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        _same_metrics(a[k], b[k]) if isinstance(a[k], dict)
        else (math.isnan(a[k]) and math.isnan(b[k])) if isinstance(a[k], float) and math.isnan(a[k])
        else a[k] == b[k] for k in a)


@pytest.mark.parametrize(("split_name", "model_type"),
                         [("temporal", "lpa"), ("temporal", "mlp"), ("temporal", "gcn"), ("temporal", "rf"),
                          ("random", "lpa"), ("random", "gcn")])
def test_test_labels_cannot_influence_training(ds, split_name: str, model_type: str) -> None:
    split = make_split(ds, split_name, seed=0)
    flipped = _flip_test_labels(ds, split.test)
    assert (flipped.labels[split.test] != ds.labels[split.test]).all()
    np.testing.assert_array_equal(flipped.labels[~split.test], ds.labels[~split.test])
    if split_name == "temporal":  # the temporal split itself never looks at which class a label is
        again = make_split(flipped, "temporal")
        assert all(np.array_equal(getattr(again, f), getattr(split, f)) for f in ("train", "val", "test", "visible"))
    cfg = TrainConfig(model_type, split=split_name, seed=0, epochs=6, n_estimators=10)
    real, other = train_model(ds, split, cfg), train_model(flipped, split, cfg)

    assert real.threshold == other.threshold
    np.testing.assert_array_equal(real.scores, other.scores)
    assert _same_metrics(real.metrics["train"], other.metrics["train"])
    assert _same_metrics(real.metrics["val"], other.metrics["val"])
    assert real.architecture == other.architecture and real.curves == other.curves
    assert real.state_dict.keys() == other.state_dict.keys()
    assert all(torch.equal(real.state_dict[k], other.state_dict[k]) for k in real.state_dict)
    # Only the test metrics see the test labels, and they do see them.
    assert real.metrics["test"]["n_illicit"] + other.metrics["test"]["n_illicit"] == real.metrics["test"]["n"]
    if model_type == "gcn":  # its arrival model: trained, its epoch kept and its threshold chosen without them
        ra, oa = real.arrival, other.arrival
        assert ra is not None and oa is not None
        assert ra.threshold == oa.threshold and ra.curves == oa.curves
        assert all(torch.equal(v, oa.model.state_dict()[k]) for k, v in ra.model.state_dict().items())
        np.testing.assert_array_equal(ra.scores.scores, oa.scores.scores)
        assert _same_metrics(ra.metrics["val"], oa.metrics["val"])
        assert ra.metrics["test"]["n_illicit"] + oa.metrics["test"]["n_illicit"] == ra.metrics["test"]["n"]


# -- 5. GCN: the fast training path equals PyG -----------------------------------------------------------------------


@pytest.mark.parametrize("layers", [2, 3])
def test_gcn_forward_rows_equals_pyg_forward(ds, layers: int) -> None:
    torch.manual_seed(layers)
    split = make_split(ds, "random", seed=0)
    raw = select_features(ds, "all")
    x = Scaler.fit(raw[split.train]).transform(raw)
    rng = np.random.default_rng(layers)
    # Cut 10 nodes loose, so isolated rows (self loop only) are among the targets too.
    cut = rng.choice(ds.n_nodes, 10, replace=False)
    er = ds.edge_rows[~np.isin(ds.edge_rows, cut).any(axis=1)]
    edge_index = undirected_edge_index(er, ds.n_nodes)
    adj = gcn_adjacency(edge_index, ds.n_nodes)

    def ax_rows(rows: np.ndarray) -> torch.Tensor:
        return torch.from_numpy((adj[rows] @ x).astype(np.float32))

    rows = np.concatenate([rng.choice(ds.n_nodes, 300, replace=False), cut, np.flatnonzero(split.val)[:5]])
    plan = RowPlan(adj, ax_rows, rows, layers)
    np.testing.assert_array_equal(plan.targets, np.unique(rows))
    assert len(plan.blocks) == layers - 1

    model = GCN(x.shape[1], hidden=32, layers=layers, dropout=0.5)
    with torch.no_grad():  # non-trivial batch-norm state, so eval mode is not an identity
        for bn in model.bns:
            bn.running_mean.normal_(0, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_(0, 0.1)
    model.eval()
    fast = model.forward_rows(plan.ax, plan.blocks)
    full = model(torch.from_numpy(x), edge_index)[torch.from_numpy(plan.targets)]
    assert fast.shape == (len(plan.targets), 2)
    torch.testing.assert_close(fast, full, rtol=0, atol=1e-5)

    # Training differentiates the fast path: its gradients are the reference path's too.
    model.zero_grad()
    fast.sum().backward()
    fast_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model(torch.from_numpy(x), edge_index)[torch.from_numpy(plan.targets)].sum().backward()
    for g_fast, p in zip(fast_grads, model.parameters(), strict=True):
        torch.testing.assert_close(g_fast, p.grad, rtol=1e-4, atol=1e-4)


def test_gcn_training_state_dict_loads_into_a_fresh_model(random_trained, ds) -> None:
    _, results = random_trained
    r = results["gcn"]
    a = r.architecture
    fresh = GCN(a["n_features"], hidden=a["hidden"], layers=a["layers"], dropout=a["dropout"])
    fresh.load_state_dict(r.state_dict)  # strict: same keys, same shapes
    x = Scaler(np.array(r.feature_mean), np.array(r.feature_std)).transform(select_features(ds, "all"))
    scores = gcn_scores(fresh, x, undirected_edge_index(ds.edge_rows, ds.n_nodes))
    np.testing.assert_allclose(scores, r.scores, rtol=0, atol=1e-6)


# -- 6. random forest as tensors -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["continuous", "integer"])
def test_forest_tensors_predict_like_sklearn(kind: str) -> None:
    rng = np.random.default_rng(7)
    n, d = 600, 8
    # integer: many ties; thresholds sit between integers, test points on both sides and at them
    x = rng.integers(0, 5, (n, d)).astype(np.float64) if kind == "integer" else rng.normal(size=(n, d))
    y = ((x[:, 0] + x[:, 1] * x[:, 2] + rng.normal(scale=0.7, size=n)) > 0.5).astype(int)
    rf = RandomForestClassifier(n_estimators=15, max_features=3, random_state=0, n_jobs=1).fit(x, y)
    state = forest_to_tensors(rf)
    assert all(isinstance(v, torch.Tensor) for v in state.values())

    # Fresh points, plus points lying exactly on split thresholds (as float32, what both compare).
    x_test = rng.integers(-1, 6, (400, d)).astype(np.float64) if kind == "integer" else rng.normal(size=(400, d))
    tree = rf.estimators_[0].tree_
    internal = np.flatnonzero(tree.children_left >= 0)
    on_thr = rng.normal(size=(len(internal), d))
    on_thr[np.arange(len(internal)), tree.feature[internal]] = tree.threshold[internal]
    x_all = np.concatenate([x_test, x, on_thr, on_thr.astype(np.float32)])
    np.testing.assert_allclose(forest_predict(state, x_all), rf.predict_proba(x_all)[:, 1], rtol=0, atol=1e-12)


# -- 7. stored models score as at training time ----------------------------------------------------------------------


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_score_stored_reproduces_training_scores(random_trained, ds, tmp_path: Path, model_type: str) -> None:
    _, results = random_trained
    r = results[model_type]
    store = ModelStore(tmp_path / "models")
    saved = store.save(model_type, r.state_dict, architecture=r.architecture, threshold=r.threshold,
                       metrics=r.metrics, training=r.training, dataset_fingerprint=ds.fingerprint,
                       feature_mean=r.feature_mean, feature_std=r.feature_std)
    manifest, state = store.load(saved.version)
    assert manifest.threshold == r.threshold
    scores = score_stored(manifest, state, ds)
    assert scores.shape == r.scores.shape
    np.testing.assert_allclose(scores, r.scores, rtol=0, atol=1e-5)


def test_train_config_rejects_unknown_model() -> None:
    with pytest.raises(ValueError, match="unknown model 'svm'"):
        TrainConfig("svm")
    assert replace(TrainConfig("rf-local"), seed=3).feature_set == "local"
