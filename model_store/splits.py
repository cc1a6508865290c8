"""Train / validation / test splits over the labelled transactions.

Test labels never reach training or threshold choice: every consumer gets boolean masks and
only ever reads ``labels[train]`` to fit and ``labels[val]`` to choose; ``labels[test]`` is read
by evaluation alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from sklearn.model_selection import train_test_split

from replay.data.dataset import EllipticDataset
from txmon.core.elliptic_format import ILLICIT, UNKNOWN

SPLITS = ("temporal", "random")


@dataclass(frozen=True)
class Split:
    name: str
    description: str
    train: NDArray[np.bool_]
    val: NDArray[np.bool_]
    test: NDArray[np.bool_]
    # Nodes a model may look at while training: for the temporal split only the training
    # period's steps (steps share no edges, so later steps cannot influence earlier ones).
    visible: NDArray[np.bool_]

    def to_dict(self) -> dict:
        return {"name": self.name, "description": self.description, "train": int(self.train.sum()),
                "val": int(self.val.sum()), "test": int(self.test.sum())}


def temporal_split(ds: EllipticDataset, train_last: int = 34, val_steps: int = 5) -> Split:
    """Train on steps 1..train_last minus its last ``val_steps`` (validation), test on the rest."""
    known = ds.labels != UNKNOWN
    s = ds.steps
    val_first = train_last - val_steps + 1
    if val_first <= 1:
        raise ValueError(f"validation steps {val_first}..{train_last} leave nothing to train on")
    return Split(
        "temporal",
        f"train steps 1-{val_first - 1}, validation {val_first}-{train_last}, test {train_last + 1}-{int(s.max())}",
        train=known & (s < val_first), val=known & (s >= val_first) & (s <= train_last),
        test=known & (s > train_last), visible=s <= train_last,
    )


def random_split(ds: EllipticDataset, seed: int = 0, max_step: int = 20,
                 fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)) -> Split:
    """Stratified random split of the labelled transactions of steps 1..max_step (the seed study)."""
    pool = np.flatnonzero((ds.labels != UNKNOWN) & (ds.steps <= max_step))
    y = ds.labels[pool] == ILLICIT
    train_i, rest = train_test_split(pool, train_size=fractions[0], stratify=y, random_state=seed)
    y_rest = ds.labels[rest] == ILLICIT
    val_share = fractions[1] / (fractions[1] + fractions[2])
    val_i, test_i = train_test_split(rest, train_size=val_share, stratify=y_rest, random_state=seed)
    mask = lambda idx: np.isin(np.arange(ds.n_nodes), idx)  # noqa: E731
    return Split(
        "random",
        f"stratified random {fractions[0]:.2f}/{fractions[1]:.2f}/{fractions[2]:.2f} of labelled steps 1-{max_step}",
        train=mask(train_i), val=mask(val_i), test=mask(test_i), visible=ds.steps <= max_step,
    )


def make_split(ds: EllipticDataset, name: str, seed: int = 0) -> Split:
    if name == "temporal":
        return temporal_split(ds)
    if name == "random":
        return random_split(ds, seed=seed)
    raise ValueError(f"unknown split {name!r}; choose one of {', '.join(SPLITS)}")
