"""Typed aliases and shared constants (in the manner of torch_geometric.typing)."""

from typing import Literal

NodeType = str
"""A node type of the heterogeneous graph: one of :data:`MODALITIES`."""

EdgeType = tuple[str, str, str]
"""(source node type, ``"rel"``, destination node type)."""

Modality = Literal["image", "text"]
MODALITIES: tuple[str, str] = ("image", "text")
SPLITS: tuple[str, str, str] = ("train", "valid", "test")
EDGE_TYPES: tuple[EdgeType, ...] = tuple((s, "rel", d) for s in MODALITIES for d in MODALITIES)

IMAGE: int = 0
"""Modality code of an image entity (its index in :data:`MODALITIES`), as held in int tensors such
as ``TripletBatch.modality``."""
TEXT: int = 1
"""Modality code of a text entity."""
MODALITY_CODE: dict[str, int] = {"image": IMAGE, "text": TEXT}
"""Modality name -> code; ``MODALITIES[code]`` is the way back."""

ViewMode = Literal["random", "fixed"]
"""How an entity with views (a concept) appears in a batch: a view drawn at random each time, or the
stored entity itself."""
