"""Triplet minibatches over all modality pairs at once, with G2E in-edges, sharding and resume.

A batch is a pure function of (seed, epoch, batch index, rank): the loader's state is three
numbers, workers compute batches independently, and a restored loader yields exactly the
remaining batches of its epoch.
"""

from collections.abc import Iterator
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from kgclip.errors import ConfigError
from kgclip.graph import KnowledgeGraph
from kgclip.sampling.csr import CSR


@dataclass
class TripletBatch:
    """One training step's data.

    Attributes:
        triplet: [B] index of each triplet in the graph's triplet arrays.
        head, relation, tail: [B] global entity / relation ids.
        entities: [N] unique global entity ids touched (heads, tails, G2E neighbours, negatives);
            each is encoded once per step.
        modality: [N] modality code of each entity (0 image, 1 text).
        head_index, tail_index: [B] position of each triplet's head / tail in ``entities``.
        g2e_edge_index: [2, E] sampled in-edges (h, t) as positions in ``entities``; row 0 the
            neighbour h, row 1 the tail t. Hop 1 edges end at batch tails, hop 2 at hop-1
            neighbours, and so on. The batch's own triplets never appear here.
        g2e_relation: [E] relation id of each sampled edge.
        g2e_hop: [E] the hop (1-based) at which each edge was sampled.
        neg_head, neg_relation, neg_tail: [B, K] corrupted negatives (positions in ``entities``
            for heads / tails, relation ids for relations), or None.
        inputs: per-entity model inputs once content is loaded (see EntityContent), or None.
        skipped: entity keys whose content failed to load.
        dropped: how many triplets were dropped from the batch because of them.
    """

    triplet: Tensor
    head: Tensor
    relation: Tensor
    tail: Tensor
    entities: Tensor
    modality: Tensor
    head_index: Tensor
    tail_index: Tensor
    g2e_edge_index: Tensor
    g2e_relation: Tensor
    g2e_hop: Tensor
    neg_head: Tensor | None = None
    neg_relation: Tensor | None = None
    neg_tail: Tensor | None = None
    inputs: Any = None
    skipped: list[str] = field(default_factory=list)
    dropped: int = 0

    def __len__(self) -> int:
        return int(self.triplet.numel())

    def drop_entities(self, bad: Tensor) -> "TripletBatch":
        """A batch without the triplets and G2E edges that touch entity positions flagged in ``bad``."""
        keep = ~(bad[self.head_index] | bad[self.tail_index])
        ekeep = ~(bad[self.g2e_edge_index[0]] | bad[self.g2e_edge_index[1]])
        neg = {}
        if self.neg_head is not None:
            for name in ("neg_head", "neg_relation", "neg_tail"):
                neg[name] = getattr(self, name)[keep]
        return replace(
            self, triplet=self.triplet[keep], head=self.head[keep], relation=self.relation[keep], tail=self.tail[keep],
            head_index=self.head_index[keep], tail_index=self.tail_index[keep],
            g2e_edge_index=self.g2e_edge_index[:, ekeep], g2e_relation=self.g2e_relation[ekeep], g2e_hop=self.g2e_hop[ekeep], **neg,
        )

    def to(self, device: torch.device | str) -> "TripletBatch":
        """A copy with every tensor (and the loaded inputs) on ``device``."""
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        for name, v in moved.items():
            if isinstance(v, Tensor) or (name == "inputs" and v is not None):
                moved[name] = v.to(device)
        return TripletBatch(**moved)


class TripletSampler:
    """Builds the batch of given triplet indices: entities, G2E in-edges, negatives.

    Args:
        graph: the training graph (message passing uses its triplets only).
        fanouts: in-edges sampled per node and hop for G2E, e.g. ``[4]`` or ``[10, 5]``;
            empty for none.
        negatives: corrupted negatives per triplet (0: none).
        known: extra (h, r, t) triplets that count as true when filtering negatives (valid/test).
    """

    def __init__(self, graph: KnowledgeGraph, fanouts: list[int], negatives: int = 0, known: np.ndarray | None = None) -> None:
        self.num_entities = graph.num_entities
        self.num_relations = int(graph.relation.max()) + 1 if graph.num_triplets else 0
        self.head = torch.from_numpy(graph.head)
        self.relation = torch.from_numpy(graph.relation)
        self.tail = torch.from_numpy(graph.tail)
        self.modality = torch.from_numpy(graph.modality.astype(np.int64))
        self.fanouts = list(fanouts)
        self.negatives = int(negatives)
        self.csr = CSR.from_edges(self.head, self.tail, self.num_entities) if self.fanouts else None
        if self.negatives:
            self.num_relations = max(self.num_relations, graph.store.num_relations)
            keys = self._keys(self.head, self.relation, self.tail)
            if known is not None and len(known):
                k = torch.as_tensor(known, dtype=torch.long)
                keys = torch.cat([keys, self._keys(k[:, 0], k[:, 1], k[:, 2])])
            self.known = torch.unique(keys)
            self.by_modality = [torch.from_numpy(np.flatnonzero(graph.modality == c)) for c in (0, 1)]

    def _keys(self, h: Tensor, r: Tensor, t: Tensor) -> Tensor:
        return (h * max(self.num_relations, 1) + r) * self.num_entities + t

    def _is_known(self, h: Tensor, r: Tensor, t: Tensor) -> Tensor:
        k = self._keys(h, r, t)
        pos = torch.searchsorted(self.known, k).clamp(max=self.known.numel() - 1)
        return self.known[pos] == k

    def sample(self, triplets: Tensor, generator: torch.Generator) -> TripletBatch:
        triplets = triplets.long()
        h, r, t = self.head[triplets], self.relation[triplets], self.tail[triplets]
        extra: list[Tensor] = []
        e_src: list[Tensor] = []
        e_dst: list[Tensor] = []
        e_rel: list[Tensor] = []
        e_hop: list[Tensor] = []
        if self.csr is not None:
            frontier = torch.unique(t)
            seen = torch.unique(torch.cat([h, t]))
            for hop, fanout in enumerate(self.fanouts, start=1):
                seed_pos, pos = self.csr.sample(frontier, fanout, generator)
                eid = self.csr.eid[pos]
                ok = ~torch.isin(eid, triplets)  # no label leakage: the batch's own triplets never pass messages
                eid, src, dst = eid[ok], self.csr.src[pos][ok], frontier[seed_pos][ok]
                e_src.append(src)
                e_dst.append(dst)
                e_rel.append(self.relation[eid])
                e_hop.append(torch.full_like(eid, hop))
                new = torch.unique(src)
                frontier = new[~torch.isin(new, seen)]
                seen = torch.cat([seen, frontier])
                extra.append(frontier)
        neg_h = neg_r = neg_t = None
        if self.negatives:
            neg_h, neg_r, neg_t = self._negatives(h, r, t, generator)
            extra += [neg_h.flatten(), neg_t.flatten()]
        entities, inverse = torch.unique(torch.cat([h, t, *extra, *e_src, *e_dst]), return_inverse=True)
        b = h.numel()
        head_index, tail_index = inverse[:b], inverse[b : 2 * b]
        pos_of = lambda x: torch.searchsorted(entities, x)  # noqa: E731 (entities is sorted)
        src = torch.cat(e_src) if e_src else torch.empty(0, dtype=torch.long)
        dst = torch.cat(e_dst) if e_dst else torch.empty(0, dtype=torch.long)
        batch = TripletBatch(
            triplet=triplets, head=h, relation=r, tail=t, entities=entities, modality=self.modality[entities],
            head_index=head_index, tail_index=tail_index,
            g2e_edge_index=torch.stack([pos_of(src), pos_of(dst)]),
            g2e_relation=torch.cat(e_rel) if e_rel else torch.empty(0, dtype=torch.long),
            g2e_hop=torch.cat(e_hop) if e_hop else torch.empty(0, dtype=torch.long),
        )
        if neg_h is not None:
            batch.neg_head, batch.neg_relation, batch.neg_tail = pos_of(neg_h), neg_r, pos_of(neg_t)
        return batch

    def _negatives(self, h: Tensor, r: Tensor, t: Tensor, g: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """K corruptions per triplet: the head, tail (same modality) or relation replaced; known triplets redrawn once, then left as is."""
        k = self.negatives
        H0, R0, T0 = h.repeat_interleave(k), r.repeat_interleave(k), t.repeat_interleave(k)
        H, R, T = H0.clone(), R0.clone(), T0.clone()
        for attempt in range(2):
            todo = torch.ones_like(H, dtype=torch.bool) if attempt == 0 else self._is_known(H, R, T)
            idx = todo.nonzero().flatten()
            if idx.numel() == 0:
                break
            H[idx], R[idx], T[idx] = H0[idx], R0[idx], T0[idx]  # one corruption per negative
            side = torch.randint(0, 3, (idx.numel(),), generator=g)
            for s, target in ((0, H), (2, T)):
                sel = idx[side == s]
                if sel.numel():
                    mod = self.modality[target[sel]]
                    for c in (0, 1):
                        cs = sel[mod == c]
                        pool = self.by_modality[c]
                        if cs.numel() and pool.numel():
                            target[cs] = pool[torch.randint(0, pool.numel(), (cs.numel(),), generator=g)]
            sel = idx[side == 1]
            if sel.numel() and self.num_relations > 1:
                R[sel] = torch.randint(0, self.num_relations, (sel.numel(),), generator=g)
        return H.view(-1, k), R.view(-1, k), T.view(-1, k)


def _identity(x: Any) -> Any:
    return x


class _EpochBatches(Dataset):
    def __init__(self, loader: "TripletLoader", epoch: int, start: int) -> None:
        self.loader, self.epoch, self.start = loader, epoch, start

    def __len__(self) -> int:
        return len(self.loader) - self.start

    def __getitem__(self, i: int) -> TripletBatch:
        return self.loader.batch(self.epoch, self.start + i)


class TripletLoader:
    """Shuffled minibatches of the training triplets of every edge type together.

    Args:
        graph: training graph (its triplets are the examples and the message-passing edges).
        batch_size: triplets per batch on this rank.
        fanouts: G2E in-edge fan-out per hop (see :class:`TripletSampler`).
        seed: the global seed; every rank uses the same one and sees the same global order.
        rank, world_size: this process's shard: each rank sees a disjoint 1/world_size of the
            triplets each epoch.
        uneven: ``"pad"`` repeats triplets from the start of the order so every rank gets the same
            count; ``"drop"`` leaves the remainder out.
        drop_last: leave out a last batch smaller than ``batch_size``.
        negatives, known: see :class:`TripletSampler`.
        content: an :class:`~kgclip.sampling.content.EntityContent` that loads model inputs into
            each batch (in the workers), or None for ids only.
        num_workers: DataLoader workers (0: in this process).
    """

    def __init__(
        self,
        graph: KnowledgeGraph,
        batch_size: int,
        *,
        fanouts: list[int] = (),  # type: ignore[assignment]
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        uneven: str = "pad",
        drop_last: bool = False,
        negatives: int = 0,
        known: np.ndarray | None = None,
        content: Any = None,
        num_workers: int = 0,
    ) -> None:
        if uneven not in ("pad", "drop"):
            raise ConfigError(f"uneven must be 'pad' or 'drop', got {uneven!r}")
        if not 0 <= rank < world_size:
            raise ConfigError(f"rank {rank} is not in 0..{world_size - 1}")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        self.n = graph.num_triplets
        if self.n == 0:
            raise ConfigError("the training graph has no triplets")
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self.uneven, self.drop_last = uneven, drop_last
        self.sampler = TripletSampler(graph, list(fanouts), negatives, known)
        self.content = content
        self.num_workers = num_workers
        self.epoch = 0
        self.position = 0
        per_rank = -(-self.n // world_size) if uneven == "pad" else self.n // world_size
        self.per_rank = per_rank
        self._cache: tuple[int, Tensor] | None = None

    def __len__(self) -> int:
        full, rest = divmod(self.per_rank, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def rank_triplets(self, epoch: int) -> Tensor:
        """This rank's triplet indices for ``epoch`` in order (same global permutation on every rank)."""
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        perm = torch.randperm(self.n, generator=g)
        total = self.per_rank * self.world_size
        if total > self.n:
            perm = torch.cat([perm, perm[: total - self.n]])
        mine = perm[:total][self.rank :: self.world_size]
        self._cache = (epoch, mine)
        return mine

    def batch(self, epoch: int, index: int) -> TripletBatch:
        """The ``index``-th batch of ``epoch`` on this rank (deterministic)."""
        ids = self.rank_triplets(epoch)[index * self.batch_size : (index + 1) * self.batch_size]
        g = torch.Generator().manual_seed(((self.seed * 1_000_003 + epoch) * 1_000_003 + index) * 131 + self.rank)
        batch = self.sampler.sample(ids, g)
        if self.content is not None:
            batch = self.content.attach(batch)
        return batch

    def __iter__(self) -> Iterator[TripletBatch]:
        epoch, start = self.epoch, self.position
        if self.num_workers > 0:
            it = DataLoader(_EpochBatches(self, epoch, start), batch_size=None, shuffle=False, num_workers=self.num_workers,
                            collate_fn=_identity, persistent_workers=False, prefetch_factor=2)
        else:
            it = (self.batch(epoch, i) for i in range(start, len(self)))
        for b in it:
            self.position += 1
            yield b
        self.epoch, self.position = epoch + 1, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self.position = epoch, 0

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed, "rank": self.rank, "world_size": self.world_size}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state.get("seed", self.seed) != self.seed or state.get("world_size", self.world_size) != self.world_size:
            raise ConfigError(f"loader state was saved with seed {state.get('seed')} on {state.get('world_size')} ranks; "
                              f"this run has seed {self.seed} on {self.world_size}")
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
