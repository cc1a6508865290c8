"""A feature-only baseline: a small MLP on the transaction's own feature vector."""

from __future__ import annotations

import torch
from torch import nn


class MLP(nn.Module):
    def __init__(self, in_features: int, hidden: int = 50, dropout: float = 0.2) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 2))
        self.in_features, self.hidden, self.dropout = in_features, hidden, dropout

    def architecture(self) -> dict:
        return {"n_features": self.in_features, "hidden": self.hidden, "dropout": self.dropout}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
