"""Compressed in-edge lists and vectorised uniform neighbour sampling without replacement.

Everything is a handful of tensor operations per call: no Python loop over nodes or edges.
"""

from dataclasses import dataclass

import torch
from torch import Tensor

_SMALL_FACTOR = 4
"""Nodes with at most fanout * _SMALL_FACTOR in-edges are sampled by random keys over all their
edges (all of them kept when there are at most fanout); larger ones by draws with replacement whose
duplicates are redrawn."""


@dataclass
class CSR:
    """In-edges grouped by destination node.

    Attributes:
        indptr: [num_dst + 1] offsets; the in-edges of node v are positions indptr[v]:indptr[v+1].
        src: [num_edges] source node of each position.
        eid: [num_edges] index of each position's edge in the original edge list, or None when
            that is the position itself (edges given already grouped by destination).
    """

    indptr: Tensor
    src: Tensor
    eid: Tensor | None

    @classmethod
    def from_edges(cls, src: Tensor, dst: Tensor, num_dst: int) -> "CSR":
        """Build from parallel source / destination index tensors (one stable sort, none when
        ``dst`` is already in order)."""
        src, dst = torch.as_tensor(src, dtype=torch.long), torch.as_tensor(dst, dtype=torch.long)
        counts = torch.bincount(dst, minlength=num_dst)
        indptr = torch.zeros(num_dst + 1, dtype=torch.long)
        torch.cumsum(counts, 0, out=indptr[1:])
        if is_sorted(dst):
            return cls(indptr=indptr, src=src, eid=None)
        eid = torch.sort(dst.int() if num_dst < 2**31 else dst, stable=True).indices  # int32 keys sort faster
        return cls(indptr=indptr, src=src[eid], eid=eid)

    @property
    def num_edges(self) -> int:
        return int(self.src.numel())

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.indptr, self.src, self.eid) if t is not None)

    def edge_ids(self, pos: Tensor) -> Tensor:
        """The original edge index of CSR positions."""
        return pos if self.eid is None else self.eid[pos]

    def degree(self, nodes: Tensor) -> Tensor:
        return self.indptr[nodes + 1] - self.indptr[nodes]

    def sample(self, seeds: Tensor, fanout: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Sample up to ``fanout`` in-edges of each seed, uniformly without replacement.

        Args:
            seeds: [n] destination nodes.
            fanout: the most edges per seed; a negative value takes all.
            generator: the random generator (determinism per seed).

        Returns:
            (seed_pos, pos): for each sampled edge, the index of its seed in ``seeds`` and its
            position in this CSR (``src[pos]`` is the neighbour, ``edge_ids(pos)`` the edge).
            Edges of one seed are not necessarily adjacent.
        """
        seeds = seeds.long()
        start = self.indptr[seeds]
        deg = self.indptr[seeds + 1] - start
        if fanout < 0:
            fanout = int(deg.max()) if deg.numel() else 0
        parts_seed: list[Tensor] = []
        parts_pos: list[Tensor] = []

        # 1. Degree up to fanout * _SMALL_FACTOR: a random key per edge, the `fanout` smallest per seed
        #    (every edge of a seed with at most `fanout`).
        small = deg <= fanout * _SMALL_FACTOR
        all_small = bool(small.all())
        sel = None if all_small else small.nonzero().flatten()  # None: every seed
        if all_small or sel.numel():
            d = deg if sel is None else deg[sel]
            s, p = _expand(sel, start if sel is None else start[sel], d)
            if bool((d > fanout).any()):
                key = torch.rand(p.numel(), generator=generator, dtype=torch.float64) + s
                order = torch.argsort(key)  # s is sorted: the keys stay grouped by seed
                s, p = s[order], p[order]
                keep = torch.arange(s.numel()) < torch.searchsorted(s, s) + fanout  # rank within its seed < fanout
                s, p = s[keep], p[keep]
            parts_seed.append(s)
            parts_pos.append(p)

        # 2. High degree: draws with replacement, duplicates redrawn until none remain.
        big = torch.empty(0, dtype=torch.long) if all_small else (~small).nonzero().flatten()
        if big.numel():
            d = deg[big].repeat_interleave(fanout)
            s = big.repeat_interleave(fanout)
            off = (torch.rand(d.numel(), generator=generator, dtype=torch.float64) * d).long()
            while True:
                key = s * (1 << 32) + off
                order = torch.argsort(key)
                sk = key[order]
                dup_sorted = torch.zeros_like(sk, dtype=torch.bool)
                dup_sorted[1:] = sk[1:] == sk[:-1]
                if not bool(dup_sorted.any()):
                    break
                dup = order[dup_sorted]
                off[dup] = (torch.rand(dup.numel(), generator=generator, dtype=torch.float64) * d[dup]).long()
            parts_seed.append(s)
            parts_pos.append(start[s] + off)

        if not parts_seed:
            empty = torch.empty(0, dtype=torch.long)
            return empty, empty
        if len(parts_seed) == 1:
            return parts_seed[0], parts_pos[0]
        return torch.cat(parts_seed), torch.cat(parts_pos)


def _expand(seed_idx: Tensor | None, start: Tensor, count: Tensor) -> tuple[Tensor, Tensor]:
    """For each seed i, the positions start[i] .. start[i] + count[i] - 1, with the seed index
    (``seed_idx[i]``, or i when ``seed_idx`` is None)."""
    s = torch.repeat_interleave(count) if seed_idx is None else seed_idx.repeat_interleave(count)
    idx = torch.arange(s.numel())
    shift = start - (torch.cumsum(count, 0) - count)  # position = start + (index - first index of the seed)
    return s, idx + shift.repeat_interleave(count)


def isin(values: Tensor, test: Tensor) -> Tensor:
    """``torch.isin(values, test)`` by one sort and a binary search (a few times faster on the
    small tensors of a batch)."""
    if test.numel() == 0:
        return torch.zeros_like(values, dtype=torch.bool)
    ref = torch.sort(test).values
    return ref[torch.searchsorted(ref, values).clamp_(max=ref.numel() - 1)] == values


def is_sorted(x: Tensor) -> bool:
    """Whether ``x`` is in non-decreasing order."""
    return x.numel() < 2 or bool((x[1:] >= x[:-1]).all())
