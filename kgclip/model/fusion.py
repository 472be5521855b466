"""The multi-modal fusion encoder of Knowledge-CLIP.

Input of one triplet view: ``[<head>; x_h + PE_h; xbar_r + PE_r; x_t + PE_t]`` where x_h and x_t
are entity token sequences (padded or cut to a fixed length) and xbar_r the pooled relation.
A masked element's content is replaced by zeros and it is left out of attention as a key, so its
content cannot change any output. Y is the output at ``<head>``; R the output at the relation.
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class DropPath(nn.Module):
    """Stochastic depth: drops the whole residual branch per sample while training."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return x
        keep = torch.rand(x.shape[0], *([1] * (x.dim() - 1)), device=x.device, dtype=x.dtype) >= self.p
        return x * keep / (1 - self.p)


class Block(nn.Module):
    """Pre-norm Transformer block with a key padding mask."""

    def __init__(self, width: int, heads: int, drop_path: float, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)
        self.ln2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, int(width * mlp_ratio)), nn.GELU(), nn.Linear(int(width * mlp_ratio), width))
        self.drop = DropPath(drop_path)

    def forward(self, x: Tensor, key_ok: Tensor) -> Tensor:
        b, n, w = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, n, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4)
        mask = key_ok[:, None, None, :]  # [b, 1, 1, n]: True = may be attended
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + self.drop(self.out(a.transpose(1, 2).reshape(b, n, w)))
        return x + self.drop(self.mlp(self.ln2(x)))


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
        for blk in self.blocks:
            x = blk(x, key_ok)
        x = self.ln(x)
        return x[:, 0], x[:, self.relation_position]
