"""Typed aliases shared across the package (in the manner of torch_geometric.typing)."""

from typing import Literal

NodeType = str
"""A node type of the heterogeneous graph: one of :data:`MODALITIES`."""

EdgeType = tuple[str, str, str]
"""(source node type, ``"rel"``, destination node type)."""

Modality = Literal["image", "text"]
MODALITIES: tuple[str, str] = ("image", "text")
SPLITS: tuple[str, str, str] = ("train", "valid", "test")
EDGE_TYPES: tuple[EdgeType, ...] = tuple((s, "rel", d) for s in MODALITIES for d in MODALITIES)
