"""Views of concepts: an entity that is one of several views of a concept (a VisualSem node's
images and glosses) appears in a batch as a view drawn at random.

The store keeps each fact once, between one stored view of the head concept and one of the tail
concept; :class:`ViewIndex` maps any entity to the views of its concept (CSR-like, built once,
vectorised) and draws one per concept for a batch.
"""

import numpy as np
import torch
from torch import Tensor


class ViewIndex:
    """Concept -> views. The views of concept ``c`` are ``members[indptr[c]:indptr[c + 1]]``
    (ascending entity ids); an entity without a concept is its own only view.

    Args:
        concept: [num_entities] concept code of each entity, -1 for an entity that is no view
            (``KnowledgeGraph.concept``).
    """

    def __init__(self, concept: np.ndarray | Tensor) -> None:
        self.concept = torch.as_tensor(np.asarray(concept), dtype=torch.long)
        ids = (self.concept >= 0).nonzero().flatten()
        codes = self.concept[ids]
        num_concepts = int(codes.max()) + 1 if codes.numel() else 0
        self.members = ids[torch.sort(codes, stable=True).indices]
        counts = torch.bincount(codes, minlength=num_concepts)
        self.indptr = torch.zeros(num_concepts + 1, dtype=torch.long)
        torch.cumsum(counts, 0, out=self.indptr[1:])
        self.num_views = counts
        self._first = self.members[self.indptr[:-1].clamp(max=max(self.members.numel() - 1, 0))] if self.members.numel() else self.members  # codes without views are never looked up
        self.has_choice = bool((counts > 1).any())
        """Whether any concept has more than one view (if not, drawing changes nothing)."""

    @property
    def num_concepts(self) -> int:
        return int(self.indptr.numel()) - 1

    def views(self, entity: int) -> Tensor:
        """All views of ``entity``'s concept (``entity`` itself when it has none)."""
        c = int(self.concept[entity])
        return torch.tensor([entity]) if c < 0 else self.members[self.indptr[c] : self.indptr[c + 1]]

    def canonical(self, entities: Tensor) -> Tensor:
        """One fixed representative per concept (its lowest entity id); entities without a concept map to themselves."""
        if self.num_concepts == 0:
            return entities
        c = self.concept[entities]
        return torch.where(c >= 0, self._first[c.clamp(min=0)], entities)

    def draw(self, entities: Tensor, generator: torch.Generator) -> Tensor:
        """Replace each entity by a view of its concept, drawn uniformly: one draw per distinct
        concept, so every occurrence of a concept among ``entities`` gets the same view."""
        c = self.concept[entities]
        has = c >= 0
        if not bool(has.any()):
            return entities
        uc, inv = torch.unique(c[has], return_inverse=True)
        start = self.indptr[uc]
        pick = start + (torch.rand(uc.numel(), generator=generator, dtype=torch.float64) * self.num_views[uc]).long()
        out = entities.clone()
        out[has] = self.members[pick][inv]
        return out
