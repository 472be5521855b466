"""The relation vocabulary: relations looked up by key or text, and a checkpoint's vocabulary checked
against a store.

One place for what training (the image-caption relations of the CLIP loss), evaluation (retrieval
and binding use "image of") and queries (a relation the user names) all need.
"""

from collections.abc import Iterable, Sequence
from os import PathLike

import pandas as pd

from kgclip.errors import KgclipError
from kgclip.store.reader import KnowledgeStore

IMAGE_OF = "image of"
"""The relation from an image to its caption (key and text in stores made by ``kgclip prepare pairs``)."""
CAPTION_OF = "caption of"
"""The inverse relation, from a caption to its image."""
PAIR_RELATIONS: tuple[str, ...] = (IMAGE_OF, CAPTION_OF)
"""The image-caption relations (the CLIP loss's pairs)."""


class UnknownRelationError(KgclipError):
    """A relation named by the user is not in the store's vocabulary."""


def _table(relations: KnowledgeStore | pd.DataFrame) -> pd.DataFrame:
    return relations.relations if isinstance(relations, KnowledgeStore) else relations


def relation_ids(relations: KnowledgeStore | pd.DataFrame, names: str | Iterable[str]) -> list[int]:
    """Ids of the relations that ``names`` name, ascending; a name matches by key, else by text.

    A name that matches some relation's key takes only that relation (keys are unique); a name
    that matches no key takes every relation whose text it is. A name that matches nothing adds
    nothing (see :func:`relation_id` for a look-up that must succeed).

    Args:
        relations: a store or its ``relations`` table (``relation_id``, ``key``, ``text``).
        names: one name or several (e.g. :data:`PAIR_RELATIONS`).
    """
    r = _table(relations)
    wanted = [names] if isinstance(names, str) else list(names)
    keys, texts = r["key"].to_numpy(dtype=object), r["text"].to_numpy(dtype=object)
    ids = r["relation_id"].to_numpy()
    found: set[int] = set()
    for name in wanted:
        hit = ids[keys == name]
        found.update((hit if len(hit) else ids[texts == name]).tolist())
    return sorted(int(i) for i in found)


def relation_id(relations: KnowledgeStore | pd.DataFrame, name: str) -> int:
    """The id of one relation named by key or text (a key wins; of several equal texts, the first id).

    Raises:
        UnknownRelationError: no relation has that key or text; the message lists the vocabulary.
    """
    ids = relation_ids(relations, name)
    if not ids:
        r = _table(relations)
        shown = r["text"].tolist()
        more = f" (and {len(shown) - 20} more)" if len(shown) > 20 else ""
        raise UnknownRelationError(f"unknown relation {name!r}; relations: {', '.join(map(str, shown[:20]))}{more}")
    return ids[0]


def image_of_relation(relations: KnowledgeStore | pd.DataFrame) -> int | None:
    """The id of the "image of" relation, or None when the store has none."""
    ids = relation_ids(relations, IMAGE_OF)
    return ids[0] if ids else None


def check_relation_vocabulary(checkpoint_keys: Sequence[str] | None, store: KnowledgeStore, checkpoint: str | PathLike) -> None:
    """A model's E2R classes and relation vectors are indexed by relation id: its store must have the
    same relation keys in the same order.

    Args:
        checkpoint_keys: the ``relation_keys`` a checkpoint recorded (None: not recorded).
        store: the store the model is about to score.
        checkpoint: the checkpoint's path (named in the error).

    Raises:
        KgclipError: the vocabularies differ (one line naming both and the first difference).
    """
    ours = list(checkpoint_keys or [])
    theirs = store.relation_keys.tolist()
    if ours == theirs:
        return
    first = next((i for i, (a, b) in enumerate(zip(ours, theirs, strict=False)) if a != b), min(len(ours), len(theirs)))
    at = f"relation {first}: {ours[first] if first < len(ours) else 'none'!r} vs {theirs[first] if first < len(theirs) else 'none'!r}"
    raise KgclipError(f"{checkpoint}: the checkpoint's relations do not match the store {store.path} ({len(ours)} vs {len(theirs)} relations; "
                      f"{at}); use the store it was trained on")
