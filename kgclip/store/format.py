"""The on-disk format of a knowledge store (see DESIGN.md, "Knowledge store")."""

import pyarrow as pa

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
"""Version 1 stores lack the entity ``concept`` column; they are read with it null."""
MANIFEST = "manifest.json"
ENTITIES_DIR = "entities"
TRIPLETS_DIR = "triplets"
RELATIONS = "relations.parquet"
ALIASES = "aliases.parquet"

BBOX_TYPE = pa.list_(pa.float64(), 4)

ENTITY_SCHEMA = pa.schema(
    [
        ("entity_id", pa.int64()),
        ("key", pa.string()),
        ("modality", pa.string()),
        ("text", pa.string()),
        ("image", pa.string()),
        ("bbox", BBOX_TYPE),
        ("image_width", pa.int64()),
        ("image_height", pa.int64()),
        ("source", pa.string()),
        ("concept", pa.string()),
    ]
)
"""Entities. ``image_width`` / ``image_height`` (nullable) are the full image's size when the
source states it; they let validation check that a bbox lies inside its image.

``concept`` (nullable) is the key of the source node whose *view* the entity is: a VisualSem
synset shown by several images and glosses gives each of them its own entity with the same
concept (``visualsem:bn:00000001n``). Entities without views leave it null. Views of one concept
share its facts: splits group them, filtered ranking filters siblings, the sampler may draw any
view of the concept."""

RELATION_SCHEMA = pa.schema(
    [("relation_id", pa.int64()), ("key", pa.string()), ("text", pa.string())]
)

TRIPLET_SCHEMA = pa.schema(
    [
        ("head_id", pa.int64()),
        ("relation_id", pa.int64()),
        ("tail_id", pa.int64()),
        ("source", pa.string()),
        ("split", pa.string()),
        ("weight", pa.float64()),
        ("dataset", pa.string()),
    ]
)
"""Triplets. ``weight`` and ``dataset`` are optional attributes (ConceptNet keeps both)."""

ALIAS_SCHEMA = pa.schema([("key", pa.string()), ("entity_id", pa.int64())])
"""Aliases (optional file): the keys of entities merged into another one by ``kgclip prepare merge
--link`` (e.g. ``conceptnet:/c/en/circle`` -> the entity ``visual_genome:name/circle``). An alias
is never an entity key; a store without the file has no aliases."""
