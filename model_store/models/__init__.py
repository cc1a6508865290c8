"""The detectors: label propagation, GCN, MLP and random forest."""
