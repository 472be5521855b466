"""Knowledge-derived hard negatives: corruptions of a triplet that the graph makes plausible.

For a training triplet (h, r, t) a hard negative is one of these kinds:

- ``relation``: (h, r', t), r' a relation that shares an entity pair with r somewhere in the graph
  and is seen between h's and t's modalities (``left of`` -> ``right of`` between the same two
  objects; never ``image of`` -> ``has attribute``);
- ``exchange``: (t, r, h), head and tail exchanged (when r is seen from t's to h's modality);
- ``move``: (h', r, t) or (h, r, t'), one side replaced by a graph neighbour of the same modality
  that is seen in that role of r (an attribute moved to the other object of a scene);
- ``reorder``: a text side replaced by another text of the store made of the same words in
  another order (a caption's relation or attribute swap, when the store holds it).

A corruption that is a known triplet is never a negative. The kinds a triplet offers are tried in
an order drawn per triplet, so that K negatives cover K different kinds where it can; a slot for
which no kind gives a negative holds the triplet itself ("none found"; losses skip it).
"""

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from kgclip.sampling.views import ViewIndex
from kgclip.typing import MODALITIES, TEXT

KINDS = ("relation", "exchange", "move", "reorder")
"""The kinds of hard corruption, in the order of their codes."""
ATTEMPTS = 4
"""Draws per kind before the next kind is tried (a draw can hit a known triplet or a wrong type)."""

def _member(ref: Tensor, values: Tensor) -> Tensor:
    """Whether each of ``values`` is in the sorted, unique ``ref``."""
    if ref.numel() == 0:
        return torch.zeros_like(values, dtype=torch.bool)
    pos = torch.searchsorted(ref, values).clamp_(max=ref.numel() - 1)
    return ref[pos] == values


def _csr(rows: Tensor, cols: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """(indptr [n + 1], columns sorted by row) of the distinct (row, column) pairs."""
    width = int(cols.max()) + 1 if cols.numel() else 1
    keys = torch.unique(rows * width + cols)  # sorted by row, then column
    indptr = torch.zeros(n + 1, dtype=torch.long)
    torch.cumsum(torch.bincount(keys // width, minlength=n), 0, out=indptr[1:])
    return indptr, keys % width


def _pick(indptr: Tensor, cols: Tensor, rows: Tensor, g: torch.Generator) -> Tensor:
    """One column of each row, uniformly (rows must have at least one)."""
    start = indptr[rows]
    count = indptr[rows + 1] - start
    return cols[start + (torch.rand(rows.numel(), generator=g, dtype=torch.float64) * count).long()]


def reorder_groups(texts: list[str | None] | np.ndarray, is_text: np.ndarray) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Texts made of the same words in another order, as groups of distinct texts.

    Texts are compared lower-cased with runs of white space as one; a group holds the distinct
    texts (two or more) of one multiset of words, each represented by its lowest entity id.

    Args:
        texts: [N] each entity's text (None for images).
        is_text: [N] bool, which entities are texts.

    Returns:
        (group [N]: the group of each entity or -1, position [N]: the place of the entity's text in
        its group, indptr [G + 1], members: the representative entity of each distinct text, by group).
    """
    n = len(is_text)
    group, position = torch.full((n,), -1, dtype=torch.long), torch.zeros(n, dtype=torch.long)
    s = pd.Series(texts, dtype=object)
    ids = np.flatnonzero(np.asarray(is_text) & s.notna().to_numpy())
    norm = s.iloc[ids].str.lower().str.split().str.join(" ")
    several = norm.str.contains(" ", regex=False).to_numpy()
    ids, norm = ids[several], norm[several]
    if not len(ids):
        return group, position, torch.zeros(1, dtype=torch.long), torch.empty(0, dtype=torch.long)
    frame = pd.DataFrame({"id": ids, "norm": norm.to_numpy()})
    frame["bag"] = frame["norm"].str.split().map(sorted).str.join(" ")
    distinct = frame.sort_values("id").drop_duplicates("norm")  # each text once, by its lowest id
    sizes = distinct.groupby("bag")["norm"].transform("size")
    distinct = distinct[sizes >= 2].sort_values(["bag", "norm"])
    if not len(distinct):
        return group, position, torch.zeros(1, dtype=torch.long), torch.empty(0, dtype=torch.long)
    codes, _ = pd.factorize(distinct["bag"], sort=True)
    distinct = distinct.assign(group=codes, position=distinct.groupby("bag").cumcount().to_numpy())
    placed = frame.merge(distinct[["norm", "group", "position"]], on="norm")
    at = torch.tensor(placed["id"].to_numpy(np.int64))
    group[at] = torch.tensor(placed["group"].to_numpy(np.int64))
    position[at] = torch.tensor(placed["position"].to_numpy(np.int64))
    indptr = torch.zeros(int(codes.max()) + 2, dtype=torch.long)
    torch.cumsum(torch.bincount(torch.from_numpy(codes.astype(np.int64))), 0, out=indptr[1:])
    return group, position, indptr, torch.tensor(distinct["id"].to_numpy(np.int64))


class HardNegatives:
    """The graph's tables for knowledge-derived corruptions, built once; :meth:`draw` per batch.

    Args:
        head, relation, tail: [T] the training triplets (global ids).
        modality: [N] each entity's modality code.
        texts: [N] each entity's text (None for images), for ``reorder``.
        num_relations: size of the relation vocabulary.
        known: sorted keys ``(h * num_relations + r) * N + t`` of the triplets that are true (never
            negatives), with h and t as :meth:`canonical` gives them.
        views: the view index when views are drawn (facts hold between concepts: neighbours are
            concepts' and a moved-in entity is a view drawn at random), else None.
    """

    def __init__(self, head: Tensor, relation: Tensor, tail: Tensor, modality: Tensor, texts: list[str | None] | np.ndarray,
                 num_relations: int, known: Tensor, views: ViewIndex | None = None) -> None:
        self.n, self.r, self.m = modality.numel(), max(int(num_relations), 1), len(MODALITIES)
        self.modality, self.known, self.views = modality.long(), known, views
        h, t, r = self.canonical(head), self.canonical(tail), relation.long()
        mh, mt = self.modality[head], self.modality[tail]
        # relations seen per (head modality, tail modality) pair
        self.pair_relations = torch.unique((mh * self.m + mt) * self.r + r)
        # relations that share an (unordered) entity pair with another relation: "left of" ~ "right of", "bigger than"
        pair = torch.minimum(h, t) * self.n + torch.maximum(h, t)
        rel = pd.DataFrame({"pair": pair.numpy(), "r": r.numpy()}).drop_duplicates()
        rel = rel[rel.duplicated("pair", keep=False)]  # only pairs with two relations or more
        both = rel.merge(rel, on="pair")
        both = both[both["r_x"] != both["r_y"]]
        self.related_indptr, self.related = _csr(torch.tensor(both["r_x"].to_numpy(np.int64)), torch.tensor(both["r_y"].to_numpy(np.int64)), self.r)
        # (entity, relation) pairs seen in the head role and in the tail role
        self.head_role, self.tail_role = torch.unique(h * self.r + r), torch.unique(t * self.r + r)
        # neighbours of the same modality, both directions
        same = (mh == mt) & (h != t)
        self.nbr_indptr, self.nbr = _csr(torch.cat([h[same], t[same]]), torch.cat([t[same], h[same]]), self.n)
        self.group, self.position, self.group_indptr, self.group_members = reorder_groups(texts, self.modality.numpy() == TEXT)

    def canonical(self, entities: Tensor) -> Tensor:
        """The entity a fact is stored on: the concept's representative when views are drawn."""
        return entities if self.views is None else self.views.canonical(entities)

    def is_known(self, ch: Tensor, r: Tensor, ct: Tensor) -> Tensor:
        """Whether each (canonical head, relation, canonical tail) is a known triplet."""
        return _member(self.known, (ch * self.r + r) * self.n + ct)

    def _degree(self, c: Tensor) -> Tensor:
        return self.nbr_indptr[c + 1] - self.nbr_indptr[c]

    def _group_size(self, entities: Tensor) -> Tensor:
        g = self.group[entities]
        return torch.where(g >= 0, self.group_indptr[g + 1] - self.group_indptr[g.clamp(min=0)], 0)

    def available(self, h: Tensor, r: Tensor, t: Tensor) -> Tensor:
        """[B, len(KINDS)] which kinds each triplet can offer (a draw may still find none)."""
        ch, ct = self.canonical(h), self.canonical(t)
        relation = (self.related_indptr[r + 1] - self.related_indptr[r]) > 0
        exchange = _member(self.pair_relations, (self.modality[t] * self.m + self.modality[h]) * self.r + r) & (ch != ct)
        move = (self._degree(ch) > 0) | (self._degree(ct) > 0)
        reorder = (self._group_size(h) >= 2) | (self._group_size(t) >= 2)
        return torch.stack([relation, exchange, move, reorder], 1)

    # -- one proposal per kind: (head, relation, tail, their canonical head and tail, well-typed) --------
    def _relation(self, h: Tensor, r: Tensor, t: Tensor, ch: Tensor, ct: Tensor, g: torch.Generator) -> tuple[Tensor, ...]:
        r2 = _pick(self.related_indptr, self.related, r, g)
        ok = _member(self.pair_relations, (self.modality[h] * self.m + self.modality[t]) * self.r + r2)
        return h, r2, t, ch, ct, ok

    def _exchange(self, h: Tensor, r: Tensor, t: Tensor, ch: Tensor, ct: Tensor, g: torch.Generator) -> tuple[Tensor, ...]:
        return t, r, h, ct, ch, torch.ones_like(h, dtype=torch.bool)

    @staticmethod
    def _side(has_h: Tensor, has_t: Tensor, g: torch.Generator) -> Tensor:
        """True where the head side is taken: the one side that qualifies, or either at random."""
        coin = torch.rand(has_h.numel(), generator=g) < 0.5
        return has_h & (~has_t | coin)

    def _move(self, h: Tensor, r: Tensor, t: Tensor, ch: Tensor, ct: Tensor, g: torch.Generator) -> tuple[Tensor, ...]:
        on_head = self._side(self._degree(ch) > 0, self._degree(ct) > 0, g)
        c = _pick(self.nbr_indptr, self.nbr, torch.where(on_head, ch, ct), g)  # a neighbour (canonical)
        moved = c if self.views is None else self.views.draw(c, g)
        role = torch.where(on_head, _member(self.head_role, c * self.r + r), _member(self.tail_role, c * self.r + r))
        ok = role & (c != torch.where(on_head, ct, ch))
        return (torch.where(on_head, moved, h), r, torch.where(on_head, t, moved),
                torch.where(on_head, c, ch), torch.where(on_head, ct, c), ok)

    def _reorder(self, h: Tensor, r: Tensor, t: Tensor, ch: Tensor, ct: Tensor, g: torch.Generator) -> tuple[Tensor, ...]:
        on_head = self._side(self._group_size(h) >= 2, self._group_size(t) >= 2, g)
        side = torch.where(on_head, h, t)
        grp, own = self.group[side], self.position[side]
        start = self.group_indptr[grp]
        size = self.group_indptr[grp + 1] - start
        j = (torch.rand(side.numel(), generator=g, dtype=torch.float64) * (size - 1)).long()
        other = self.group_members[start + j + (j >= own).long()]  # any distinct text of the group but its own
        c = self.canonical(other)
        return (torch.where(on_head, other, h), r, torch.where(on_head, t, other),
                torch.where(on_head, c, ch), torch.where(on_head, ct, c), torch.ones_like(h, dtype=torch.bool))

    def draw(self, h: Tensor, r: Tensor, t: Tensor, k: int, g: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """K hard negatives per triplet, each [B, K]; a slot with none found holds the triplet itself.

        Slot j of a triplet tries its available kinds in a random order (drawn per triplet),
        starting at the j-th, each with up to :data:`ATTEMPTS` draws, until one gives a corruption
        that is well typed and not known. Every random choice comes from ``g``.
        """
        b = h.numel()
        avail = self.available(h, r, t)
        n_avail = avail.sum(1)
        keys = torch.rand(b, len(KINDS), generator=g)
        order = torch.where(avail, keys, 2.0).argsort(1)  # available kinds first, in random order
        row, slot = torch.arange(b).repeat_interleave(k), torch.arange(k).repeat(b)
        H0, R0, T0 = h[row], r[row], t[row]
        C0 = torch.stack([self.canonical(h), self.canonical(t)])[:, row]
        H, R, T = H0.clone(), R0.clone(), T0.clone()
        done = torch.zeros(b * k, dtype=torch.bool)
        proposals = (self._relation, self._exchange, self._move, self._reorder)
        for step in range(len(KINDS)):
            kind = order[row, (slot + step) % n_avail[row].clamp(min=1)]
            todo = ~done & (step < n_avail[row])
            if not bool(todo.any()):
                break
            for code, propose in enumerate(proposals):
                idx = (todo & (kind == code)).nonzero().flatten()
                for _ in range(1 if KINDS[code] == "exchange" else ATTEMPTS):  # the only kind without a random choice
                    if idx.numel() == 0:
                        break
                    nh, nr, nt, ch, ct, ok = propose(H0[idx], R0[idx], T0[idx], C0[0, idx], C0[1, idx], g)
                    ok &= ~self.is_known(ch, nr, ct)
                    hit = idx[ok]
                    H[hit], R[hit], T[hit] = nh[ok], nr[ok], nt[ok]
                    done[hit] = True
                    idx = idx[~ok]
        return H.view(b, k), R.view(b, k), T.view(b, k)
