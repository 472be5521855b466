"""VisualSem v2 (nodes.v2.json, tuples.v2.json, nodes.glosses.json) -> knowledge store.

- nodes.v2.json maps a BabelNet id (``bn:00000001n``) to ``{ms, se, ims, ...}``; ``ims`` lists
  image hashes, each stored as ``DIR/<first two characters>/<hash>.jpg``.
- tuples.v2.json maps a TAIL node id to a list of ``{s: head id, r: relation name, r_id}``.
- nodes.glosses.json is a JSON list whose first item is ``{"available_languages": [...]}`` and
  every later item ``{bn_id: {lang: [gloss, ...]}}``.

As in the paper, each entity occurrence is shown as one of its images or one of its glosses,
chosen at random with the seed (``random``), or always as an image / a gloss, or ``both`` (every
combination of views of the two ends).
"""

from pathlib import Path

import numpy as np

from data_prep.common import Conversion, clean_text, iter_json, require_file
from kgclip import progress
from kgclip.errors import SourceError
from kgclip.store import StoreWriter

SOURCE = "visualsem"
VIEWS = ("random", "image", "gloss", "both")


def image_path(h: str) -> str:
    return f"{h[:2]}/{h}.jpg"


def convert_visualsem(
    *,
    nodes: str | Path,
    tuples: str | Path,
    glosses: str | Path,
    images: str | Path,
    writer: StoreWriter,
    conv: Conversion,
    entity_view: str = "random",
    lang: str = "en",
    seed: int = 0,
    check_images: bool = True,
) -> None:
    """Convert VisualSem; a *record* is one (head, relation, tail) tuple."""
    if entity_view not in VIEWS:
        raise SourceError(f"--entity-view must be one of {VIEWS}, got {entity_view!r}")
    nodes, tuples, glosses = (require_file(p, n) for p, n in ((nodes, "nodes.v2.json"), (tuples, "tuples.v2.json"), (glosses, "nodes.glosses.json")))
    root = Path(images)
    if check_images and not root.is_dir():
        raise SourceError(f"{root}: image folder not found")

    node_images: dict[str, list[str]] = {}
    missing = 0
    for bn, info in progress.bar(iter_json(nodes, "", pairs=True), desc="visualsem nodes", unit=" nodes"):
        ims = [h for h in (info.get("ims") or []) if isinstance(h, str) and h] if isinstance(info, dict) else []
        if check_images:
            present = [h for h in ims if (root / image_path(h)).is_file()]
            missing += len(ims) - len(present)
            ims = present
        node_images[bn] = ims
    if missing:
        conv.note("image file missing", missing)

    node_glosses: dict[str, list[str]] = {}
    for k, item in enumerate(iter_json(glosses)):
        if k == 0:
            if not isinstance(item, dict) or "available_languages" not in item:
                raise SourceError(f"{glosses}: first item must be {{\"available_languages\": [...]}}")
            continue
        if not isinstance(item, dict):
            continue
        for bn, by_lang in item.items():
            texts = [clean_text(g, conv) for g in (by_lang or {}).get(lang, [])] if isinstance(by_lang, dict) else []
            node_glosses[bn] = [t for t in texts if t]

    rng = np.random.default_rng(seed)
    rel_ids: dict[str, int] = {}

    def views(bn: str) -> list[int]:
        ims, gl = node_images.get(bn, []), node_glosses.get(bn, [])
        choice = entity_view
        if choice == "random":
            options = (["image"] if ims else []) + (["gloss"] if gl else [])
            choice = options[int(rng.integers(len(options)))] if options else ""
        out = []
        if choice in ("image", "both") and ims:
            h = ims[int(rng.integers(len(ims)))]
            out.append(writer.add_entity(f"{SOURCE}:{bn}/image/{h}", "image", image=image_path(h), source=SOURCE))
        if choice in ("gloss", "both") and gl:
            i = int(rng.integers(len(gl)))
            out.append(writer.add_entity(f"{SOURCE}:{bn}/gloss/{lang}/{i}", "text", text=gl[i], source=SOURCE))
        return out

    for tail, heads in progress.bar(iter_json(tuples, "", pairs=True), desc="visualsem tuples", unit=" tails"):
        if conv.done():
            break
        if not isinstance(heads, list):
            conv.read += 1
            conv.skip("tuple list is not a JSON list", f"{tuples}: tail {tail}")
            continue
        for j, tup in enumerate(heads):
            if conv.done():
                break
            conv.read += 1
            where = f"{tuples}: tail {tail}, tuple {j}"
            if not isinstance(tup, dict) or not isinstance(tup.get("s"), str) or not isinstance(tup.get("r"), str):
                conv.skip("tuple lacks 's' or 'r'", where)
                continue
            head, rel = tup["s"], tup["r"].strip()
            if head not in node_images or tail not in node_images:
                conv.skip("node not in nodes.v2.json", where)
                continue
            hs, ts = views(head), views(tail)
            if not hs or not ts:
                conv.skip("node without image or gloss", where, bad=False)
                continue
            if rel not in rel_ids:
                rel_ids[rel] = writer.add_relation(f"{SOURCE}:{rel}", rel.replace("-", " ").replace("_", " "))
            for h in hs:
                for t in ts:
                    writer.add_triplet(h, rel_ids[rel], t, source=SOURCE)
            if head == tail:
                conv.note("self-loop kept")
            conv.kept += 1
