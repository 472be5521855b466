"""The multi-modal fusion encoder of Knowledge-CLIP.

Input of one triplet view: ``[<head>; x_h + PE_h; xbar_r + PE_r; x_t + PE_t]`` where x_h and x_t
are entity token sequences (padded or cut to a fixed length) and xbar_r the pooled relation.
A masked element's content is replaced by zeros and it is left out of attention as a key, so its
content cannot change any output. Y is the output at ``<head>``; R the output at the relation.

Packed computation: a position that is neither a key (padding, a masked element) nor an output
(``<head>``, the relation) can change nothing, so it is not computed at all. The remaining tokens
of all views are packed into one [T, W] tensor for the per-token work (norms, projections, MLP);
only attention sees them per view, padded to the longest packed view with a key mask (no mask
when every view is full), through ``scaled_dot_product_attention``. The last block computes its
queries, MLP and residual only at the two outputs of each view. The result is the padded
computation's, up to float rounding.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class DropPath(nn.Module):
    """Stochastic depth: drops the whole residual branch per view while training."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor, view: Tensor, views: int) -> Tensor:
        """``x`` [rows, W] of packed tokens; ``view`` [rows] the view of each row, of ``views``."""
        if not self.training or self.p == 0:
            return x
        keep = torch.rand(views, device=x.device, dtype=x.dtype) >= self.p  # one draw per view
        return x * keep[view, None] / (1 - self.p)


@dataclass
class PackedViews:
    """Where the kept tokens of V views sit, packed ([T] rows) and padded for attention ([V, P]).

    Attributes:
        views: V; length: P, the longest packed view.
        view: [T] the view of each packed token.
        slot: [T] its place in the flattened [V * P] attention layout.
        key_mask: [V, 1, 1, P] True where attention may look (None: every slot is a valid key).
        outputs: [2V] packed rows of ``<head>`` (first V) and of the relation position (last V).
        relation_rank: [V] the relation's place within its packed view (``<head>`` is first).
    """

    views: int
    length: int
    view: Tensor
    slot: Tensor
    key_mask: Tensor | None
    outputs: Tensor
    relation_rank: Tensor


def pack_views(key_ok: Tensor, outputs: tuple[int, int]) -> tuple[Tensor, PackedViews]:
    """Choose the tokens to compute: valid keys and the two output positions.

    Args:
        key_ok: [V, n] True where a position may be attended.
        outputs: the positions of ``<head>`` and of the relation.

    Returns:
        The kept positions as a [V, n] mask, and their packed layout.
    """
    v, n = key_ok.shape
    dev = key_ok.device
    keep = key_ok.clone()
    keep[:, list(outputs)] = True
    counts = keep.sum(1)
    length = int(counts.max()) if v else 0
    rank = keep.cumsum(1) - 1
    view_ids = torch.arange(v, device=dev)
    slot = (view_ids[:, None] * length + rank)[keep]
    view = view_ids[:, None].expand(v, n)[keep]
    if bool((counts == length).all()) and bool(key_ok[keep].all()):
        key_mask = None
    else:
        key_mask = torch.zeros(v * length, dtype=torch.bool, device=dev)
        key_mask[slot] = key_ok[keep]
        key_mask = key_mask.view(v, 1, 1, length)
    row = torch.full((v, n), -1, dtype=torch.long, device=dev)
    row[keep] = torch.arange(int(keep.sum()), device=dev)
    outs = torch.cat([row[:, outputs[0]], row[:, outputs[1]]])
    return keep, PackedViews(v, length, view, slot, key_mask, outs, rank[:, outputs[1]])


class Block(nn.Module):
    """Pre-norm Transformer block over packed views."""

    def __init__(self, width: int, heads: int, drop_path: float, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)
        self.ln2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, int(width * mlp_ratio)), nn.GELU(), nn.Linear(int(width * mlp_ratio), width))
        self.drop = DropPath(drop_path)

    def forward(self, x: Tensor, pk: PackedViews, last: bool = False) -> Tensor:
        """``x`` [T, W] packed tokens -> [T, W]; with ``last``, only the outputs' rows [2V, W]."""
        w = x.shape[1]
        v, p, h = pk.views, pk.length, self.heads
        qkv = self.qkv(self.ln1(x))
        padded = qkv.new_zeros(v * p, 3 * w).index_copy(0, pk.slot, qkv)
        q, k, val = padded.view(v, p, 3, h, w // h).permute(2, 0, 3, 1, 4)  # each [V, H, P, d]
        if last:  # queries only at <head> (first in each view) and at the relation: [V, H, 2, d]
            at = pk.relation_rank.view(v, 1, 1, 1).expand(v, h, 1, w // h)
            q = torch.cat([q[:, :, :1], q.gather(2, at)], dim=2)
        a = F.scaled_dot_product_attention(q, k, val, attn_mask=pk.key_mask)
        if last:
            a = a.transpose(1, 2).reshape(v, 2, w).transpose(0, 1).reshape(2 * v, w)  # rows: <head> of each view, then relations
            x, view = x[pk.outputs], pk.view[pk.outputs]
        else:
            a = a.transpose(1, 2).reshape(v * p, w)[pk.slot]
            view = pk.view
        x = x + self.drop(self.out(a), view, v)
        return x + self.drop(self.mlp(self.ln2(x)), view, v)


class FusionEncoder(nn.Module):
    """Randomly initialised Transformer over (head, relation, tail) views.

    Args:
        width, layers, heads, drop_path: the Transformer (paper: 1024, 4, 16, 0.1).
        entity_tokens: the fixed token length of an entity (padded or cut).
    """

    def __init__(self, width: int, layers: int, heads: int, drop_path: float, entity_tokens: int) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"fusion width {width} is not divisible by {heads} heads")
        self.width, self.entity_tokens = width, entity_tokens
        self.head_token = nn.Parameter(torch.randn(width) * 0.02)
        self.role = nn.Parameter(torch.randn(3, width) * 0.02)  # PE_h, PE_r, PE_t
        dpr = [drop_path * i / max(layers - 1, 1) for i in range(layers)]
        self.blocks = nn.ModuleList([Block(width, heads, d) for d in dpr])
        self.ln = nn.LayerNorm(width)

    @property
    def relation_position(self) -> int:
        return 1 + self.entity_tokens

    def forward(
        self,
        head: Tensor,
        head_valid: Tensor,
        relation: Tensor,
        tail: Tensor,
        tail_valid: Tensor,
        use_head: Tensor,
        use_relation: Tensor,
        use_tail: Tensor,
    ) -> tuple[Tensor, Tensor]:
        """Encode views.

        Args:
            head, tail: [V, L, W] entity tokens (already at fusion width); head_valid, tail_valid:
                [V, L] True for real tokens.
            relation: [V, W] pooled relation vectors.
            use_head, use_relation, use_tail: [V] bool, False where the element is masked.

        Returns:
            Y [V, W] (output at ``<head>``) and R [V, W] (output at the relation position).
        """
        v = head.shape[0]
        if v == 0:
            empty = head.new_zeros(0, self.width)
            return empty, empty
        uh, ur, ut = use_head[:, None, None], use_relation[:, None], use_tail[:, None, None]
        x = torch.cat(
            [
                self.head_token.expand(v, 1, -1),
                torch.where(uh, head, 0.0) + self.role[0],
                (torch.where(ur, relation, 0.0) + self.role[1]).unsqueeze(1),
                torch.where(ut, tail, 0.0) + self.role[2],
            ],
            dim=1,
        )
        ones = torch.ones(v, 1, dtype=torch.bool, device=x.device)
        key_ok = torch.cat([ones, head_valid & use_head[:, None], use_relation[:, None], tail_valid & use_tail[:, None]], dim=1)
        keep, pk = pack_views(key_ok, (0, self.relation_position))
        x = x[keep]  # [T, W]
        for i, blk in enumerate(self.blocks):
            x = blk(x, pk, last=i == len(self.blocks) - 1)
        if not self.blocks:
            x = x[pk.outputs]
        x = self.ln(x)
        return x[:v], x[v:]
