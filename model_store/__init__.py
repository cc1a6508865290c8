"""Detectors (label propagation, GCN, MLP, random forest), honest evaluation, versioned store."""

# Model types as stored: a family, with "-local" for the 93 local features only.
MODEL_TYPES = ("lpa", "gcn", "mlp", "mlp-local", "rf", "rf-local")
