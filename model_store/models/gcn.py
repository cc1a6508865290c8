"""A 3-layer GCN (PyG ``GCNConv``) with batch norm, ReLU and dropout.

Two ways to run the same parameters: ``forward`` is plain PyG on any (sub)graph — what inference and
the worker's step close use — and ``forward_rows`` computes the outputs of chosen rows only, from
the first layer's propagation Â·X (precomputed once in training: it never changes between epochs)
and the row blocks of Â each layer needs. Training and the worker's arrival scoring use the second;
both agree in eval mode up to float32 rounding (a few 1e-7: Â·X·W against PyG's Â·(X·W)).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy import sparse
from torch import nn
from torch.nn import functional as F
from torch_geometric.nn import GCNConv


def dropout(h: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Inverted dropout with a byte mask: torch's CPU Bernoulli sampling costs ~5x more.

    The rate is rounded to a multiple of 1/256 (0.5 is exact).
    """
    if not training or p <= 0:
        return h
    cut = round(p * 256)
    mask = (torch.randint(0, 256, h.shape, dtype=torch.uint8) >= cut).to(h.dtype).mul_(256 / (256 - cut))
    return h * mask


class _RowBlockMM(torch.autograd.Function):
    """block @ h through scipy's CSR product (2-3x torch's CSR matmul on CPU here), with the
    transpose made once per block, when a backward pass first needs it (inference never does)."""

    @staticmethod
    def forward(ctx: Any, h: torch.Tensor, block: RowBlock) -> torch.Tensor:
        ctx.row_block = block
        return torch.from_numpy(block.block @ h.detach().numpy())

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return torch.from_numpy(ctx.row_block.transposed @ grad.contiguous().numpy()), None


class RowBlock:
    """A row block Â[R_out, R_in] (float32 CSR) usable as ``block @ h`` inside autograd."""

    def __init__(self, block: sparse.csr_matrix) -> None:
        self.block = block.astype(np.float32).tocsr()
        self._transposed: sparse.csr_matrix | None = None

    @property
    def transposed(self) -> sparse.csr_matrix:
        if self._transposed is None:
            self._transposed = self.block.T.tocsr()
        return self._transposed

    def __matmul__(self, h: torch.Tensor) -> torch.Tensor:
        return _RowBlockMM.apply(h, self)


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

    def conv(self, i: int) -> GCNConv:
        """Layer i as a ``GCNConv`` (indexing the ModuleList types it as a bare ``nn.Module``)."""
        return self.convs[i]

    def _hidden(self, i: int, h: torch.Tensor) -> torch.Tensor:
        return dropout(F.relu(self.bns[i](h)), self.dropout, self.training)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        """Logits [N, 2] on a graph given by an undirected edge_index (PyG path)."""
        for i, conv in enumerate(self.convs[:-1]):
            x = self._hidden(i, conv(x, edge_index))
        return self.convs[-1](x, edge_index)

    def forward_rows(self, ax: torch.Tensor, blocks: list[RowBlock]) -> torch.Tensor:
        """Logits of the target rows only.

        ax: (Â·X) restricted to the outermost row set R_{L-1}. blocks[i] = Â[R_{L-2-i}, R_{L-1-i}],
        so each layer computes exactly the rows the next one reads.
        """
        return self.forward_rows_with_input(ax, blocks)[0]

    def forward_rows_with_input(self, ax: torch.Tensor, blocks: list[RowBlock]) -> tuple[torch.Tensor, torch.Tensor]:
        """``forward_rows`` and the last layer's input on its rows R_1 (what explanations read)."""
        first = self.conv(0)
        h = self._hidden(0, ax @ first.lin.weight.T + first.bias)
        last_input = h
        for i, block in enumerate(blocks):
            conv = self.conv(i + 1)
            last_input = h
            z = block @ (h @ conv.lin.weight.T) + conv.bias
            h = z if i == len(blocks) - 1 else self._hidden(i + 1, z)
        return h, last_input
