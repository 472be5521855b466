"""Triplet minibatches over all modality pairs at once, with G2E in-edges, sharding and resume.

A batch is a pure function of (seed, epoch, batch index, rank): the loader's state is its position
(epoch, batch) and the settings that fix the order (seed, ranks, source weights, views; see
:meth:`TripletLoader.state_dict`), workers compute batches independently, and a restored loader
yields exactly the remaining batches of its epoch.

The G2E neighbourhoods come from the graph's ``HeteroData`` through the one neighbour sampler of
:mod:`kgclip.sampling.neighbor` (PyG's ``NeighborSampler`` where pyg-lib is installed).
"""

import math
from collections.abc import Iterator
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from kgclip.errors import ConfigError
from kgclip.graph import KnowledgeGraph
from kgclip.sampling.csr import isin
from kgclip.sampling.negatives import HardNegatives
from kgclip.sampling.neighbor import JointLayout, make_sampler, sample_edges
from kgclip.sampling.views import ViewIndex
from kgclip.typing import MODALITY_CODE

VIEW_MODES = ("random", "fixed")
NEGATIVE_MODES = ("random", "hard")
_EMPTY = torch.empty(0, dtype=torch.long)


@dataclass
class TripletBatch:
    """One training step's data.

    Attributes:
        triplet: [B] index of each triplet in the graph's triplet arrays.
        head, relation, tail: [B] global entity / relation ids (with views drawn at random, the
            drawn views: the graph's head / tail of ``triplet`` or another view of its concept).
        entities: [N] unique global entity ids touched (heads, tails, G2E neighbours, negatives);
            each is encoded once per step.
        modality: [N] modality code of each entity (``kgclip.typing.IMAGE`` / ``TEXT``).
        head_index, tail_index: [B] position of each triplet's head / tail in ``entities``.
        g2e_edge_index: [2, E] sampled in-edges (h, t) as positions in ``entities``; row 0 the
            neighbour h, row 1 the tail t. Hop 1 edges end at batch tails, hop 2 at hop-1
            neighbours, and so on. The batch's own triplets (and copies of them) never appear
            here, nor edges into nodes that only those triplets reached.
        g2e_relation: [E] relation id of each sampled edge.
        g2e_hop: [E] the hop (1-based) at which each edge was sampled.
        neg_head, neg_relation, neg_tail: [B, K] corrupted negatives (positions in ``entities``
            for heads / tails, relation ids for relations), or None. A negative equal to its
            triplet means that none was found for that slot; losses leave it out.
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
            # a negative that touches a flagged entity becomes "none found" (the triplet itself)
            gone = (bad[self.neg_head] | bad[self.neg_tail])[keep]
            for name, own in (("neg_head", self.head_index), ("neg_relation", self.relation), ("neg_tail", self.tail_index)):
                neg[name] = torch.where(gone, own[keep][:, None], getattr(self, name)[keep])
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
    """Builds the batch of given triplet indices: entities, G2E in-edges, views, negatives.

    Args:
        graph: the training graph (message passing uses its triplets only).
        fanouts: in-edges sampled per node, hop and edge type for G2E (PyG's ``num_neighbors``),
            e.g. ``[4]`` or ``[10, 5]``; empty for none.
        negatives: corrupted negatives per triplet (0: none).
        known: extra (h, r, t) triplets that count as true when filtering negatives (valid/test).
        negative_mode: ``"random"``: the head, tail (same modality) or relation replaced at random;
            ``"hard"``: knowledge-derived corruptions (see :mod:`kgclip.sampling.negatives`).
        views: ``"random"``: an entity that is a view of a concept is replaced, in each batch, by a
            view of that concept drawn uniformly (one draw per concept and batch, for heads, tails
            and G2E neighbours alike); ``"fixed"``: the stored entity. Stores without concepts
            give the same batches either way.
    """

    def __init__(self, graph: KnowledgeGraph, fanouts: list[int], negatives: int = 0, known: np.ndarray | None = None,
                 views: str = "random", negative_mode: str = "random") -> None:
        if views not in VIEW_MODES:
            raise ConfigError(f"views must be one of {', '.join(VIEW_MODES)}, got {views!r}")
        if negative_mode not in NEGATIVE_MODES:
            raise ConfigError(f"negative_mode must be one of {', '.join(NEGATIVE_MODES)}, got {negative_mode!r}")
        if negatives < 0:
            raise ConfigError(f"negatives must be at least 0, got {negatives}")
        self.num_entities = graph.num_entities
        self.num_relations = int(graph.relation.max()) + 1 if graph.num_triplets else 0
        self.head = torch.from_numpy(graph.head)
        self.relation = torch.from_numpy(graph.relation)
        self.tail = torch.from_numpy(graph.tail)
        self.modality = torch.from_numpy(graph.modality.astype(np.int64))
        self.fanouts = list(fanouts)
        self.negatives = int(negatives)
        codes = graph.concept[graph.concept >= 0] if graph.concept is not None else np.empty(0, dtype=np.int64)
        self.has_view_choice = bool(codes.size) and int(np.bincount(codes).max()) > 1
        """Whether some concept has several views (only then do the view modes differ)."""
        self.views = ViewIndex(graph.concept) if views == "random" and self.has_view_choice else None
        self.neighbors = None
        if self.fanouts:
            data = graph.to_hetero_data()
            self.layout = JointLayout.of(data)
            self.neighbors = make_sampler(data, self.fanouts)
            # joint node id (the sampler's numbering) <-> global entity id; relation of each joint edge
            self.joint_to_global = torch.cat([data[nt].global_id for nt in self.layout.node_types])
            self.global_to_joint = torch.empty_like(self.joint_to_global)
            self.global_to_joint[self.joint_to_global] = torch.arange(self.joint_to_global.numel())
            self.edge_relation = torch.cat([data[et].relation for et in self.layout.edge_types])
        if self.negatives:
            self.num_relations = max(self.num_relations, graph.store.num_relations)
            h, t = self._canonical(self.head), self._canonical(self.tail)
            keys = self._keys(h, self.relation, t)
            if known is not None and len(known):
                k = torch.as_tensor(known, dtype=torch.long)
                keys = torch.cat([keys, self._keys(self._canonical(k[:, 0]), k[:, 1], self._canonical(k[:, 2]))])
            self.known = torch.unique(keys)
            self.by_modality = {c: torch.from_numpy(np.flatnonzero(graph.modality == c)) for c in MODALITY_CODE.values()}
        self.hard = None
        if self.negatives and negative_mode == "hard":
            texts = graph.store.entity_table(["text"])["text"].to_numpy(zero_copy_only=False)
            self.hard = HardNegatives(self.head, self.relation, self.tail, self.modality, texts, max(self.num_relations, 1), self.known, self.views)

    def _canonical(self, entities: Tensor) -> Tensor:
        """Entities as their concept's representative when views are drawn (a fact holds for every view)."""
        return entities if self.views is None else self.views.canonical(entities)

    def _keys(self, h: Tensor, r: Tensor, t: Tensor) -> Tensor:
        return (h * max(self.num_relations, 1) + r) * self.num_entities + t

    def _is_known(self, h: Tensor, r: Tensor, t: Tensor) -> Tensor:
        k = self._keys(self._canonical(h), r, self._canonical(t))
        pos = torch.searchsorted(self.known, k).clamp(max=self.known.numel() - 1)
        return self.known[pos] == k

    def _g2e(self, h: Tensor, r: Tensor, t: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Sampled in-edges of the batch's tails as global (src, dst, relation, hop), the batch's
        own triplets (and their copies) left out, with what was reached only through them."""
        tails = torch.unique(t)
        s = sample_edges(self.neighbors, self.layout, self.global_to_joint[tails], generator)
        src, dst, rel, hop = self.joint_to_global[s.src], self.joint_to_global[s.dst], self.edge_relation[s.edge], s.hop
        # Only hop-1 edges end at batch tails, so only they can be batch triplets: compare
        # (tail slot, relation, head) keys (no overflow: tail slot < batch size).
        r_count, n = max(self.num_relations, 1), self.num_entities
        own = (torch.searchsorted(tails, t) * r_count + r) * n + h
        if len(self.fanouts) == 1:  # every edge is a hop-1 edge
            keep = ~isin((torch.searchsorted(tails, dst) * r_count + rel) * n + src, own)
        else:
            first = hop == 1
            keep = torch.ones_like(hop, dtype=torch.bool)
            keep[first] = ~isin((torch.searchsorted(tails, dst[first]) * r_count + rel[first]) * n + src[first], own)
        if not bool(keep.all()):
            for k in range(2, len(self.fanouts) + 1):  # drop edges into nodes that only removed edges reached
                reached = src[keep & (hop == k - 1)]
                at = hop == k
                keep[at] &= isin(dst[at], reached)
            src, dst, rel, hop = src[keep], dst[keep], rel[keep], hop[keep]
        return src, dst, rel, hop

    def sample(self, triplets: Tensor, generator: torch.Generator) -> TripletBatch:
        """The batch of the given triplet indices; every random choice comes from ``generator``."""
        triplets = triplets.long()
        h, r, t = self.head[triplets], self.relation[triplets], self.tail[triplets]
        src = dst = rel = hop = _EMPTY
        if self.neighbors is not None:
            src, dst, rel, hop = self._g2e(h, r, t, generator)
        b, e = h.numel(), src.numel()
        if self.views is not None:
            drawn = self.views.draw(torch.cat([h, t, src, dst]), generator)
            h, t, src, dst = drawn[:b], drawn[b : 2 * b], drawn[2 * b : 2 * b + e], drawn[2 * b + e :]
        parts = [h, t, src, dst]
        neg_h = neg_r = neg_t = None
        if self.negatives:
            neg_h, neg_r, neg_t = self._negatives(h, r, t, generator) if self.hard is None else self.hard.draw(h, r, t, self.negatives, generator)
            parts += [neg_h.flatten(), neg_t.flatten()]
        entities, inverse = torch.unique(torch.cat(parts), return_inverse=True)
        batch = TripletBatch(
            triplet=triplets, head=h, relation=r, tail=t, entities=entities, modality=self.modality[entities],
            head_index=inverse[:b], tail_index=inverse[b : 2 * b],
            g2e_edge_index=inverse[2 * b : 2 * b + 2 * e].view(2, e), g2e_relation=rel, g2e_hop=hop,
        )
        if neg_h is not None:
            off, k = 2 * b + 2 * e, neg_h.numel()
            batch.neg_head = inverse[off : off + k].view_as(neg_h)
            batch.neg_relation = neg_r
            batch.neg_tail = inverse[off + k : off + 2 * k].view_as(neg_t)
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
                    for c, pool in self.by_modality.items():
                        cs = sel[mod == c]
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
        fanouts: G2E in-edge fan-out per hop and edge type (see :class:`TripletSampler`).
        seed: the global seed; every rank uses the same one and sees the same global order.
        rank, world_size: this process's shard: each rank sees a disjoint 1/world_size of the
            triplets each epoch.
        uneven: ``"pad"`` repeats triplets from the start of the order so every rank gets the same
            count; ``"drop"`` leaves the remainder out.
        drop_last: leave out a last batch smaller than ``batch_size``.
        negatives, known, views, negative_mode: see :class:`TripletSampler`.
        source_weights: the probability of drawing a triplet from each ``source`` of the training
            triplets (every source named; normalised). An epoch still holds as many triplets as
            the graph: each source fills its share, cycling through fresh shuffles of its triplets
            when its share is larger than it (a random subset when smaller). None: every triplet
            once per epoch (weights proportional to size).
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
        views: str = "random",
        negative_mode: str = "random",
        source_weights: dict[str, float] | None = None,
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
        self.views = views
        self.source_weights = _normalise_weights(graph, source_weights)
        self._quota: list[tuple[Tensor, int]] = []  # (triplets of a source, its count per epoch)
        if self.source_weights is not None:
            codes = torch.from_numpy(graph.source)
            order = torch.sort(codes, stable=True).indices
            groups = torch.split(order, torch.bincount(codes, minlength=len(graph.sources)).tolist())
            self._quota = list(zip(groups, _largest_remainder([self.source_weights[s] for s in graph.sources], self.n), strict=True))
        self.sampler = TripletSampler(graph, list(fanouts), negatives, known, views=views, negative_mode=negative_mode)
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

    def epoch_order(self, epoch: int) -> Tensor:
        """The global order of triplet indices of ``epoch`` (the same on every rank)."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        if not self._quota:
            return torch.randperm(self.n, generator=g)
        parts = []
        for members, count in self._quota:
            m = members.numel()
            if count == 0:
                continue
            if count <= m:
                parts.append(members[torch.randperm(m, generator=g)[:count]])
            else:  # several fresh shuffles of the source, one after the other
                reps = -(-count // m)
                parts.append(members[torch.rand(reps, m, generator=g).argsort(dim=1).flatten()[:count]])
        pool = torch.cat(parts)
        return pool[torch.randperm(pool.numel(), generator=g)]

    def rank_triplets(self, epoch: int) -> Tensor:
        """This rank's triplet indices for ``epoch`` in order (same global permutation on every rank)."""
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        perm = self.epoch_order(epoch)
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

    def state_dict(self) -> dict[str, Any]:
        """Where the loader is (``epoch``, ``position``: batches done in it) and what fixes its
        order (``seed``, ``rank``, ``world_size``, ``views``, ``source_weights``: normalised, or
        None for every triplet once per epoch). Plain values, fit for ``torch.load(weights_only=True)``."""
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed, "rank": self.rank, "world_size": self.world_size,
                "views": self.views, "source_weights": None if self.source_weights is None else dict(self.source_weights)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue where ``state`` left off; a state saved with other order settings is a ConfigError.

        States written before ``views`` / ``source_weights`` existed count as ``fixed`` views and
        no weights; on a store without concepts both view modes give the same batches."""
        if state.get("seed", self.seed) != self.seed or state.get("world_size", self.world_size) != self.world_size:
            raise ConfigError(f"loader state was saved with seed {state.get('seed')} on {state.get('world_size')} ranks; "
                              f"this run has seed {self.seed} on {self.world_size}")
        saved = state.get("source_weights")
        if not _same_weights(saved, self.source_weights):
            raise ConfigError(f"loader state was saved with data.source_weights {saved}; this run has {self.source_weights} "
                              "(the order of the remaining batches would differ)")
        views = state.get("views", "fixed")
        if views != self.views and self.sampler.has_view_choice:
            raise ConfigError(f"loader state was saved with data.views {views!r}; this run has {self.views!r} on a store with concepts")
        self.epoch, self.position = int(state["epoch"]), int(state["position"])


def _normalise_weights(graph: KnowledgeGraph, weights: dict[str, float] | None) -> dict[str, float] | None:
    """Checked, normalised source weights (source name -> probability), or None."""
    if weights is None:
        return None
    if not isinstance(weights, dict) or not weights:
        raise ConfigError(f"source_weights must map each triplet source to a weight, got {weights!r}")
    if graph.source is None:
        raise ConfigError("source_weights: this graph does not record the sources of its triplets")
    present = list(graph.sources)
    unknown = sorted(set(weights) - set(present))
    if unknown:
        raise ConfigError(f"source_weights names {', '.join(map(repr, unknown))}, which no training triplet has as source "
                          f"(sources: {', '.join(present)})")
    missing = [s for s in present if s not in weights]
    if missing:
        raise ConfigError(f"source_weights leaves out {', '.join(map(repr, missing))} (training triplets come from "
                          f"{', '.join(present)}; give each a weight, 0 to leave a source out)")
    vals = {}
    for s in present:
        w = weights[s]
        if isinstance(w, bool) or not isinstance(w, int | float) or not math.isfinite(w) or w < 0:
            raise ConfigError(f"source_weights[{s!r}] must be a finite number >= 0, got {w!r}")
        vals[s] = float(w)
    total = sum(vals.values())
    if total <= 0:
        raise ConfigError("source_weights are all 0: no triplet could be drawn")
    return {s: w / total for s, w in vals.items()}


def _largest_remainder(p: list[float], n: int) -> list[int]:
    """Integer counts summing to ``n`` in proportions ``p`` (largest remainders get the rest)."""
    exact = [x * n for x in p]
    counts = [math.floor(x) for x in exact]
    for i in sorted(range(len(p)), key=lambda i: (counts[i] - exact[i], i))[: n - sum(counts)]:
        counts[i] += 1
    return counts


def _same_weights(a: dict[str, float] | None, b: dict[str, float] | None) -> bool:
    if a is None or b is None:
        return a is b
    return a.keys() == b.keys() and all(math.isclose(a[k], b[k], rel_tol=1e-9, abs_tol=1e-12) for k in a)
