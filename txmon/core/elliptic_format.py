"""The Elliptic data set's file format, exactly as Kaggle distributes it (see ELLIPTIC.md)."""

from __future__ import annotations

FEATURES_FILE = "elliptic_txs_features.csv"
CLASSES_FILE = "elliptic_txs_classes.csv"
EDGES_FILE = "elliptic_txs_edgelist.csv"
FILES = (FEATURES_FILE, CLASSES_FILE, EDGES_FILE)

CLASSES_HEADER = ("txId", "class")
EDGES_HEADER = ("txId1", "txId2")

N_FEATURES = 165  # after txId and time step
N_LOCAL = 93  # the first 93 features are the transaction's own
N_AGGREGATE = 72  # the last 72 aggregate the one-hop neighbourhood
N_COLUMNS = 2 + N_FEATURES
N_STEPS = 49
STEP_MIN, STEP_MAX = 1, N_STEPS
SHUTDOWN_STEP = 43  # the dark market shutdown: detectors trained before it fail on the steps from here

# Labels as txmon stores them; Kaggle's class strings map onto these.
ILLICIT, LICIT, UNKNOWN = 1, 0, -1
CLASS_TO_LABEL = {"1": ILLICIT, "2": LICIT, "unknown": UNKNOWN}
LABEL_TO_CLASS = {v: k for k, v in CLASS_TO_LABEL.items()}
