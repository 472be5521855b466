"""VisualSem v2 (nodes.v2.json, tuples.v2.json, nodes.glosses.json) -> knowledge store.

- nodes.v2.json maps a BabelNet id (``bn:00000001n``) to ``{ms, se, ims, ...}``; ``ims`` lists
  image hashes, each stored as ``DIR/<first two characters>/<hash>.jpg``.
- tuples.v2.json maps a TAIL node id to a list of ``{s: head id, r: relation name, r_id}``.
- nodes.glosses.json is a JSON list whose first item is ``{"available_languages": [...]}`` and
  every later item ``{bn_id: {lang: [gloss, ...]}}``.

The paper shows each node by "a randomly chosen image or its text description". Here every
image and every gloss of a node is its own *view* entity whose ``concept`` is the node
(``visualsem:bn:...``), and each tuple is stored once, between the *canonical* views of its two
nodes (the first gloss, else the first image). The sampler draws a view per concept when it
draws a triplet; splits and filtered ranking work on concepts.
"""

import dataclasses
from collections.abc import Iterator
from typing import Any

from data_prep.base import Converter, option, resolved
from data_prep.common import IMAGE_ESCAPES, Conversion, ImageRoot, clean_text, iter_json, quoted, require_file
from kgclip import progress
from kgclip.errors import SourceError
from kgclip.store import StoreWriter

SOURCE = "visualsem"


def image_path(h: str) -> str:
    return f"{h[:2]}/{h}.jpg"


def concept_key(bn: str) -> str:
    """The concept of a node's views: the node id qualified by the source."""
    return f"{SOURCE}:{bn}"


def _tuples(items: Any) -> Iterator[tuple[str, int | None, Any]]:
    """(tail, tuple number, tuple) per tuple; (tail, None, value) for a tail whose value is not a list."""
    for tail, heads in items:
        if not isinstance(heads, list):
            yield tail, None, heads
            continue
        for j, tup in enumerate(heads):
            yield tail, j, tup


@dataclasses.dataclass
class VisualSem(Converter):
    """VisualSem v2; a *record* is one (head, relation, tail) tuple.

    A node's views (its glosses in ``lang``, then its images) are added when a kept tuple first
    names it; the tuple joins the canonical views of its head and tail.
    """

    name = "visualsem"
    description = "VisualSem v2 multi-modal knowledge graph (a node's glosses and images are views of it)"

    nodes: str = option(None, help="nodes.v2.json", required=True)
    tuples: str = option(None, help="tuples.v2.json", required=True)
    glosses: str = option(None, help="nodes.glosses.json", required=True)
    images: str = option(None, help="image folder (<2 chars>/<hash>.jpg)", required=True)
    lang: str = option("en", help="language of the glosses (default en)")
    check_images: bool = option(True, help="trust image paths without stat", flag="--no-check-images")

    def image_roots(self) -> dict[str, str]:
        return {SOURCE: resolved(self.images)}

    def convert(self, writer: StoreWriter, conv: Conversion) -> None:
        """Read the nodes' images and glosses, then stream the tuples."""
        lang, check_images = self.lang, self.check_images
        nodes, tuples, glosses = (require_file(p, n) for p, n in ((self.nodes, "nodes.v2.json"), (self.tuples, "tuples.v2.json"),
                                                                  (self.glosses, "nodes.glosses.json")))
        root = ImageRoot(self.images, check=check_images)

        node_images: dict[str, list[str]] = {}
        missing = 0
        for bn, info in progress.bar(iter_json(nodes, "", pairs=True), desc="visualsem nodes", unit=" nodes"):
            if not isinstance(info, dict):
                conv.skip("node is not a JSON object", f"{nodes}: node {bn}")
                node_images[bn] = []
                continue
            ims = info.get("ims")
            if not isinstance(ims, list):
                if ims is not None:
                    conv.skip("node's 'ims' is not a list", f"{nodes}: node {bn}")
                node_images[bn] = []
                continue
            kept = []
            for h in ims:
                if not isinstance(h, str) or not h:
                    conv.skip("image hash is not a string", f"{nodes}: node {bn}")
                elif not root.inside(image_path(h)):
                    conv.skip(IMAGE_ESCAPES, f"{nodes}: node {bn}, image {quoted(h)}")
                elif not root.is_file(image_path(h)):
                    missing += 1
                else:
                    kept.append(h)
            node_images[bn] = kept
        if missing:
            conv.note("image file missing", missing)

        node_glosses: dict[str, list[str]] = {}
        for k, item in enumerate(iter_json(glosses)):
            if k == 0:
                if not isinstance(item, dict) or "available_languages" not in item:
                    raise SourceError(f"{glosses}: first item must be {{\"available_languages\": [...]}}")
                continue
            if not isinstance(item, dict):
                conv.skip("gloss item is not a JSON object", f"{glosses}: item {k}")
                continue
            for bn, by_lang in item.items():
                texts = by_lang.get(lang, []) if isinstance(by_lang, dict) else None
                if not isinstance(texts, list):
                    conv.skip("glosses of a node are not {language: [gloss, ...]}", f"{glosses}: item {k}, node {bn}")
                    continue
                if not all(isinstance(g, str) for g in texts):
                    conv.skip("gloss is not a string", f"{glosses}: item {k}, node {bn}")
                node_glosses[bn] = [t for t in (clean_text(g, conv) for g in texts) if t]

        rel_ids: dict[str, int] = {}
        canonical: dict[str, int] = {}

        def canonical_view(bn: str) -> int:
            """Add the node's views on first use (it has at least one); its canonical view's id."""
            if bn not in canonical:
                concept = concept_key(bn)
                ids = [writer.add_entity(f"{SOURCE}:{bn}/gloss/{lang}/{i}", "text", text=g, source=SOURCE, concept=concept)
                       for i, g in enumerate(node_glosses.get(bn, []))]
                ids += [writer.add_entity(f"{SOURCE}:{bn}/image/{h}", "image", image=image_path(h), source=SOURCE, concept=concept)
                        for h in node_images.get(bn, [])]
                canonical[bn] = ids[0]
            return canonical[bn]

        items = progress.bar(iter_json(tuples, "", pairs=True), desc="visualsem tuples", unit=" tails")
        for tail, j, tup in conv.records(_tuples(items)):
            if j is None:
                conv.skip("tuple list is not a JSON list", f"{tuples}: tail {tail}")
                continue
            where = f"{tuples}: tail {tail}, tuple {j}"
            if not isinstance(tup, dict) or not isinstance(tup.get("s"), str) or not isinstance(tup.get("r"), str):
                conv.skip("tuple lacks 's' or 'r'", where)
                continue
            head, rel = tup["s"], tup["r"].strip()
            if head not in node_images or tail not in node_images:
                conv.skip("node not in nodes.v2.json", where)
                continue
            if not all(node_glosses.get(bn) or node_images.get(bn) for bn in (head, tail)):
                conv.skip("node without image or gloss", where, bad=False)
                continue
            h, t = canonical_view(head), canonical_view(tail)
            if rel not in rel_ids:
                rel_ids[rel] = writer.add_relation(f"{SOURCE}:{rel}", rel.replace("-", " ").replace("_", " "))
            writer.add_triplet(h, rel_ids[rel], t, source=SOURCE)
            if head == tail:
                conv.note("self-loop kept")
            conv.kept += 1
