"""Heads on top of the fusion encoder: the E2R relation classifier and the G2E graph network."""

import torch
from torch import Tensor, nn
from torch_geometric.nn import MessagePassing


class RelationClassifier(nn.Module):
    """E2R: a 2-layer MLP on R(h, -, t) over the fixed relation vocabulary."""

    def __init__(self, width: int, num_relations: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, num_relations))

    def forward(self, r: Tensor) -> Tensor:
        return self.mlp(r)


class RelationConditionedConv(MessagePassing):
    """One G2E layer: G^l(t) = mean over in-edges (h, r, t) of (W^l R(h,-,t)) * G^(l-1)(h).

    A node without in-edges keeps G^(l-1) (it has no message to take the mean of).
    """

    def __init__(self, width: int) -> None:
        super().__init__(aggr="mean")
        self.lin = nn.Linear(width, width, bias=False)

    def forward(self, x: Tensor, edge_index: Tensor, edge_rel: Tensor) -> Tensor:
        out = self.propagate(edge_index, x=x, edge_rel=edge_rel)
        has_in = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        has_in[edge_index[1]] = True
        return torch.where(has_in[:, None], out, x)

    def message(self, x_j: Tensor, edge_rel: Tensor) -> Tensor:
        return self.lin(edge_rel) * x_j


class G2EGraphNetwork(nn.Module):
    """L relation-conditioned layers (paper's G2E GNN); G^0 = Y(-,-,.)."""

    def __init__(self, width: int, layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList([RelationConditionedConv(width) for _ in range(layers)])

    def forward(self, y: Tensor, edge_index: Tensor, edge_rel: Tensor) -> Tensor:
        g = y
        for layer in self.layers:
            g = layer(g, edge_index, edge_rel)
        return g
