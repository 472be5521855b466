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
    """Concept -> views, as a CSR over view groups: every entity is in exactly one group (the views
    of its concept, or itself alone when it has no concept); the views of group ``g`` are
    ``members[indptr[g]:indptr[g + 1]]`` in ascending entity id.

    Args:
        concept: [num_entities] concept code of each entity, -1 for an entity that is no view
            (``KnowledgeGraph.concept``).
    """

    def __init__(self, concept: np.ndarray | Tensor) -> None:
        concept = torch.as_tensor(np.asarray(concept), dtype=torch.long)
        n = concept.numel()
        num_concepts = int(concept.max()) + 1 if n else 0
        # group ids: concepts first (0 .. num_concepts - 1), then one group per concept-less entity
        alone = concept < 0
        self.group = concept.clone()
        self.group[alone] = num_concepts + torch.arange(int(alone.sum()))
        order = torch.sort(self.group, stable=True).indices
        self.members = order  # entity ids grouped by group, ascending within a group
        counts = torch.bincount(self.group, minlength=int(self.group.max()) + 1 if n else 0)
        self.indptr = torch.zeros(counts.numel() + 1, dtype=torch.long)
        torch.cumsum(counts, 0, out=self.indptr[1:])
        self.has_choice = bool((counts > 1).any())
        """Whether any concept has more than one view (if not, drawing changes nothing)."""

    def views(self, entity: int) -> Tensor:
        """All views of ``entity``'s concept (``entity`` itself when it has none)."""
        g = int(self.group[entity])
        return self.members[self.indptr[g] : self.indptr[g + 1]]

    def canonical(self, entities: Tensor) -> Tensor:
        """One fixed representative per concept (its lowest entity id); entities without a concept map to themselves."""
        return self.members[self.indptr[self.group[entities]]]

    def draw(self, entities: Tensor, generator: torch.Generator) -> Tensor:
        """Replace each entity by a view of its concept, drawn uniformly: one draw per distinct
        concept, so every occurrence of a concept among ``entities`` gets the same view."""
        groups, inv = torch.unique(self.group[entities], return_inverse=True)
        start = self.indptr[groups]
        count = self.indptr[groups + 1] - start
        pick = start + (torch.rand(groups.numel(), generator=generator, dtype=torch.float64) * count).long()
        return self.members[pick][inv]
