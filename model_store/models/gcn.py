"""A 3-layer GCN (PyG ``GCNConv``) with batch norm, ReLU and dropout.

Two ways to run the same parameters: ``forward`` is plain PyG on any (sub)graph — what the
stream worker and inference use — and ``forward_rows`` computes the outputs of chosen rows only,
from the first layer's propagation Â·X precomputed once (it never changes between epochs) and
the row blocks of Â each layer needs. Training uses the second; both agree exactly in eval mode.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch_geometric.nn import GCNConv


class GCN(nn.Module):
    def __init__(self, in_features: int, hidden: int = 100, layers: int = 3, dropout: float = 0.5) -> None:
        super().__init__()
        dims = [in_features] + [hidden] * (layers - 1) + [2]
        self.convs = nn.ModuleList(GCNConv(a, b) for a, b in zip(dims, dims[1:], strict=False))
        self.bns = nn.ModuleList(nn.BatchNorm1d(hidden) for _ in range(layers - 1))
        self.dropout = dropout

    def architecture(self) -> dict:
        return {"n_features": self.convs[0].in_channels, "hidden": self.convs[0].out_channels,
                "layers": len(self.convs), "dropout": self.dropout}

    def _hidden(self, i: int, h: torch.Tensor) -> torch.Tensor:
        return F.dropout(F.relu(self.bns[i](h)), p=self.dropout, training=self.training)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        """Logits [N, 2] on a graph given by an undirected edge_index (PyG path)."""
        for i, conv in enumerate(self.convs[:-1]):
            x = self._hidden(i, conv(x, edge_index))
        return self.convs[-1](x, edge_index)

    def forward_rows(self, ax: torch.Tensor, blocks: list[torch.Tensor]) -> torch.Tensor:
        """Logits of the target rows only.

        ax: (Â·X) restricted to the outermost row set R_{L-1}. blocks[i] = Â[R_{L-2-i}, R_{L-1-i}]
        as sparse CSR, so each layer computes exactly the rows the next one reads.
        """
        convs = self.convs
        h = self._hidden(0, ax @ convs[0].lin.weight.T + convs[0].bias)
        for i, block in enumerate(blocks):
            conv = convs[i + 1]
            z = torch.sparse.mm(block, h @ conv.lin.weight.T) + conv.bias
            h = z if i == len(blocks) - 1 else self._hidden(i + 1, z)
        return h
