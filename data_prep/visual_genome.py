"""Visual Genome 1.2 / 1.4 scene graphs -> knowledge store of (region, predicate, region) triplets.

``relationships.json`` is a JSON list with one item per image (``image_id``, ``relationships``);
it is over 700 MB, so it is streamed item by item with ijson, never loaded whole. Each object is
an image entity: the image file plus its box, clamped to the image. The same ``object_id`` is one
entity however often it appears. Optional: ``--with-names`` adds (region, "is a", name) text
triplets, a name whose object carries a WordNet synset having it as concept (``wordnet:man.n.01``:
the names of one synset are its views, and ``kgclip prepare merge --link text`` joins them with
the other sources' entities of the synset's lemma); ``attributes.json`` adds (region, "has
attribute", attribute). Splits made by kgclip are by image: every triplet of a scene lands in one
split.
"""

import dataclasses
import re
from collections import Counter
from pathlib import Path
from typing import Any

from data_prep.base import Converter, option, resolved
from data_prep.common import Conversion, clean_text, iter_json, require_file
from kgclip import progress
from kgclip.errors import SourceError
from kgclip.store import StoreWriter

SOURCE = "visual_genome"
IMAGE_DIRS = ("VG_100K", "VG_100K_2")
IS_A = ("/r/IsA", "is a")
HAS_ATTRIBUTE = ("/r/HasProperty", "has attribute")


def image_group(image_id: int) -> str:
    """The split group of every triplet of one image."""
    return f"{SOURCE}:image/{image_id}"


def normalise_predicate(p: str) -> str:
    return " ".join(p.lower().split())


class ImageIndex:
    """image_id -> (relative path, width, height), from image_data.json.

    The file lies in ``VG_100K/`` or ``VG_100K_2/`` (the url names which); with ``check`` the
    folders are searched and a missing file gives None.
    """

    def __init__(self, image_data: Path, root: Path, check: bool) -> None:
        self.root, self.check = root, check
        self.info: dict[int, tuple[str | None, int, int]] = {}
        for item in iter_json(image_data):
            iid = item.get("image_id", item.get("id"))
            if iid is None or "width" not in item or "height" not in item:
                raise SourceError(f"{image_data}: an image record lacks image_id/id, width or height: {str(item)[:120]}")
            url = item.get("url") or ""
            m = re.search(r"(VG_100K(?:_2)?)/[^/]+$", url)
            self.info[int(iid)] = (m.group(1) if m else None, int(item["width"]), int(item["height"]))
        self._resolved: dict[int, str | None] = {}

    def path(self, image_id: int) -> str | None:
        if image_id in self._resolved:
            return self._resolved[image_id]
        folder = self.info[image_id][0]
        candidates = ([folder] if folder else []) + [d for d in IMAGE_DIRS if d != folder] + [""]
        name = f"{image_id}.jpg"
        found: str | None = None
        if not self.check:
            found = f"{candidates[0]}/{name}" if candidates[0] else name
        else:
            for d in candidates:
                rel = f"{d}/{name}" if d else name
                if (self.root / rel).is_file():
                    found = rel
                    break
        self._resolved[image_id] = found
        return found


def _name(obj: dict) -> str | None:
    if isinstance(obj.get("name"), str):
        return obj["name"]
    names = obj.get("names")
    if isinstance(names, list) and names and isinstance(names[0], str):
        return names[0]
    return None


_SYNSET = re.compile(r"^[^.\s]+\.[nvasr]\.\d+$")


def _synset(obj: dict) -> str | None:
    """The object's first WordNet synset (``man.n.01``), when the file carries one."""
    synsets = obj.get("synsets")
    if isinstance(synsets, list) and synsets and isinstance(synsets[0], str) and _SYNSET.match(synsets[0]):
        return synsets[0]
    return None


class _Regions:
    """Adds region entities (deduplicated by object_id) with clamped boxes."""

    def __init__(self, writer: StoreWriter, conv: Conversion, images: ImageIndex, with_names: bool) -> None:
        self.w, self.conv, self.images, self.with_names = writer, conv, images, with_names
        self.is_a = writer.add_relation(*IS_A) if with_names else None

    def entity(self, image_id: int, obj: Any, where: str) -> int | None:
        if not isinstance(obj, dict):
            self.conv.skip("object is not a JSON object", where)
            return None
        try:
            oid = int(obj["object_id"])
            x, y, w, h = (float(obj[k]) for k in ("x", "y", "w", "h"))
        except (KeyError, TypeError, ValueError) as exc:
            self.conv.skip(f"object lacks a valid {exc.args[0] if isinstance(exc, KeyError) else 'box'}", where)
            return None
        key = f"{SOURCE}:object/{oid}"
        eid = self.w.entity_id(key)
        if eid is not None:
            return eid
        path = self.images.path(image_id)
        if path is None:
            self.conv.skip("image file missing", where, bad=False)
            return None
        _, width, height = self.images.info[image_id]
        x0, y0 = max(0.0, x), max(0.0, y)
        x1, y1 = min(float(width), x + w), min(float(height), y + h)
        if x1 - x0 <= 0 or y1 - y0 <= 0:
            self.conv.skip("box of non-positive area after clamping", where, bad=False)
            return None
        if (x0, y0, x1, y1) != (x, y, x + w, y + h):
            self.conv.note("box clamped to the image")
        eid = self.w.add_entity(key, "image", source=SOURCE, image=path, bbox=(x0, y0, x1 - x0, y1 - y0), image_size=(width, height))
        if self.with_names:
            name = clean_text(_name(obj), self.conv)
            if name:
                synset = _synset(obj)
                nid = self.w.add_entity(f"{SOURCE}:name/{name.lower()}", "text", text=name.lower(), source=SOURCE,
                                        concept=f"wordnet:{synset}" if synset else None)
                self.w.add_triplet(eid, self.is_a, nid, source=SOURCE, group=image_group(image_id))
            else:
                self.conv.note("object without a name: no name triplet")
        return eid


def _relationships(items: Any, index: ImageIndex) -> Any:
    """(image id, relationship number, relationship) per relationship; (id, None, None) for an image not in image_data.json."""
    for item in items:
        iid = item.get("image_id", item.get("id")) if isinstance(item, dict) else None
        if iid is None or int(iid) not in index.info:
            yield iid, None, None
            continue
        for j, rel in enumerate(item.get("relationships") or []):
            yield int(iid), j, rel


@dataclasses.dataclass
class VisualGenome(Converter):
    """Visual Genome scene graphs; a *record* is one relationship."""

    name = "visual-genome"
    description = "Visual Genome scene graphs"
    source_name = SOURCE

    image_data: str = option(None, help="image_data.json", required=True)
    relationships: str = option(None, help="relationships.json", required=True)
    images: str = option(None, help="folder holding VG_100K/ and VG_100K_2/", required=True)
    objects: str | None = option(None, help="objects.json (optional)")
    attributes: str | None = option(None, help="attributes.json (optional): (region, has attribute, a) triplets")
    min_predicate_count: int = option(1, help="drop predicates seen fewer times", type=int)
    with_names: bool = option(False, help="add (region, is a, name) text triplets")
    check_images: bool = option(True, help="trust image paths without stat", flag="--no-check-images")

    def image_roots(self) -> dict[str, str]:
        return {SOURCE: resolved(self.images)}

    def convert(self, writer: StoreWriter, conv: Conversion) -> None:
        """Regions of each relationship (deduplicated by object_id), then objects and attributes."""
        image_data = require_file(self.image_data, "image_data.json")
        relationships = require_file(self.relationships, "relationships.json")
        root = Path(self.images)
        if self.check_images and not root.is_dir():
            raise SourceError(f"{root}: image folder not found")
        index = ImageIndex(image_data, root, self.check_images)
        regions = _Regions(writer, conv, index, self.with_names)

        keep: set[str] | None = None
        if self.min_predicate_count > 1:
            counts: Counter[str] = Counter()
            for item in progress.bar(iter_json(relationships), desc="visual genome: counting predicates", unit=" images"):
                for rel in item.get("relationships") or []:
                    if isinstance(rel, dict) and isinstance(rel.get("predicate"), str):
                        counts[normalise_predicate(rel["predicate"])] += 1
            keep = {p for p, n in counts.items() if n >= self.min_predicate_count}

        rel_ids: dict[str, int] = {}
        items = progress.bar(iter_json(relationships), desc="visual genome", unit=" images")
        for iid, j, rel in conv.records(_relationships(items, index)):
            if j is None:
                conv.skip("image not in image_data.json", f"{relationships}: image {iid}")
                continue
            where = f"{relationships}: image {iid}, relationship {j}"
            if not isinstance(rel, dict) or not isinstance(rel.get("predicate"), str):
                conv.skip("relationship without a predicate", where)
                continue
            pred = normalise_predicate(rel["predicate"])
            if not pred:
                conv.skip("empty predicate", where)
                continue
            if keep is not None and pred not in keep:
                conv.skip("predicate below --min-predicate-count", bad=False)
                continue
            h = regions.entity(iid, rel.get("subject"), where)
            t = regions.entity(iid, rel.get("object"), where) if h is not None else None
            if h is None or t is None:
                continue
            if pred not in rel_ids:
                rel_ids[pred] = writer.add_relation(f"{SOURCE}:{pred}", pred)
            if h == t:
                conv.note("self-loop kept")
            writer.add_triplet(h, rel_ids[pred], t, source=SOURCE, group=image_group(iid))
            conv.kept += 1

        if self.objects is not None:
            objects = require_file(self.objects, "objects.json")
            for item in progress.bar(iter_json(objects), desc="visual genome objects", unit=" images"):
                iid = int(item.get("image_id", item.get("id", -1)))
                if iid in index.info:
                    for k, obj in enumerate(item.get("objects") or []):
                        regions.entity(iid, obj, f"{objects}: image {iid}, object {k}")
        if self.attributes is not None:
            attributes = require_file(self.attributes, "attributes.json")
            has_attr = writer.add_relation(*HAS_ATTRIBUTE)
            for item in progress.bar(iter_json(attributes), desc="visual genome attributes", unit=" images"):
                iid = int(item.get("image_id", item.get("id", -1)))
                if iid not in index.info:
                    continue
                for k, obj in enumerate(item.get("attributes") or []):
                    eid = regions.entity(iid, obj, f"{attributes}: image {iid}, object {k}")
                    if eid is None:
                        continue
                    for a in obj.get("attributes") or []:
                        text = clean_text(a, conv)
                        if text:
                            aid = writer.add_entity(f"{SOURCE}:attribute/{text.lower()}", "text", text=text.lower(), source=SOURCE)
                            writer.add_triplet(eid, has_attr, aid, source=SOURCE, group=image_group(iid))
