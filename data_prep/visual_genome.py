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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from data_prep.base import Converter, option, resolved
from data_prep.common import IMAGE_ESCAPES, Conversion, ImageRoot, as_int, as_number, clean_text, iter_json, require_file
from kgclip import progress
from kgclip.errors import SourceError
from kgclip.store import StoreWriter

SOURCE = "visual_genome"
IMAGE_DIRS = ("VG_100K", "VG_100K_2")
_FOLDER = {d: d for d in IMAGE_DIRS}
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
    folders are searched and a missing file gives None, as does a file whose symbolic link leads
    outside the image folder (its id is then in :attr:`escaping`). A record without an integer
    id and a positive integer width and height is a counted bad skip.
    """

    def __init__(self, image_data: Path, root: ImageRoot, conv: Conversion) -> None:
        self.root = root
        self.info: dict[int, tuple[str | None, int, int]] = {}
        self.escaping: set[int] = set()
        for k, item in enumerate(iter_json(image_data)):
            iid = as_int(item.get("image_id", item.get("id"))) if isinstance(item, dict) else None
            width, height = (as_int(item.get(f)) for f in ("width", "height")) if isinstance(item, dict) else (None, None)
            if iid is None or width is None or height is None or width <= 0 or height <= 0:
                conv.skip("image record lacks an integer image_id/id or a positive integer width and height", f"{image_data}: record {k}")
                continue
            url = item.get("url")
            m = re.search(r"(VG_100K(?:_2)?)/[^/]+$", url) if isinstance(url, str) else None
            self.info[iid] = (_FOLDER[m.group(1)] if m else None, width, height)  # one string per folder, not per image
        self._last: tuple[int, str | None] | None = None  # regions of an image come together: one image's path is kept

    def path(self, image_id: int) -> str | None:
        if self._last is not None and self._last[0] == image_id:
            return self._last[1]
        folder = self.info[image_id][0]
        candidates = ([folder] if folder else []) + [d for d in IMAGE_DIRS if d != folder] + [""]
        name = f"{image_id}.jpg"
        found: str | None = None
        if not self.root.check:
            found = f"{candidates[0]}/{name}" if candidates[0] else name
        else:
            for d in candidates:
                rel = f"{d}/{name}" if d else name
                if self.root.is_file(rel):
                    found = rel
                    break
        if found is not None and not self.root.inside(found):
            self.escaping.add(image_id)
            found = None
        self._last = (image_id, found)
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
        oid = as_int(obj.get("object_id"))
        if oid is None:
            self.conv.skip("object lacks an integer object_id", where)
            return None
        box = [as_number(obj.get(k)) for k in ("x", "y", "w", "h")]
        if None in box:
            self.conv.skip("object lacks a box of four finite numbers x, y, w, h", where)
            return None
        x, y, w, h = box
        key = f"{SOURCE}:object/{oid}"
        eid = self.w.entity_id(key)
        if eid is not None:
            return eid
        path = self.images.path(image_id)
        if path is None:
            if image_id in self.images.escaping:
                self.conv.skip(IMAGE_ESCAPES, f"{where} ({self.images.root.path}: link of image {image_id} leads outside)")
            else:
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


def _image_entry(item: Any, k: int, index: ImageIndex, field: str, path: Path) -> tuple[int, list, None] | tuple[None, None, tuple[str, str]]:
    """(image id, its list under ``field``, None) for entry ``k`` of relationships/objects/attributes.json,
    or (None, None, (skip reason, where)) when the entry lacks an integer image id, names an image
    not in image_data.json, or its ``field`` is not a list (a missing or null one is empty)."""
    iid = as_int(item.get("image_id", item.get("id"))) if isinstance(item, dict) else None
    if iid is None:
        return None, None, ("image entry lacks an integer image_id/id", f"{path}: entry {k}")
    if iid not in index.info:
        return None, None, ("image not in image_data.json", f"{path}: image {iid}")
    value = item.get(field)
    if value is not None and not isinstance(value, list):
        return None, None, (f"'{field}' is not a list", f"{path}: image {iid}")
    return iid, value or [], None


def _relationships(items: Any, index: ImageIndex, path: Path) -> Iterator[tuple[int | None, int | None, Any, tuple[str, str] | None]]:
    """(image id, relationship number, relationship, None) per relationship; (None, None, None, (reason, where))
    for an image entry that is bad as a whole (one record)."""
    for k, item in enumerate(items):
        iid, rels, problem = _image_entry(item, k, index, "relationships", path)
        if problem is not None:
            yield None, None, None, problem
            continue
        for j, rel in enumerate(rels):
            yield iid, j, rel, None


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

    def check(self) -> None:
        if self.min_predicate_count < 1:
            raise SourceError(f"--min-predicate-count must be at least 1, got {self.min_predicate_count}")

    def image_roots(self) -> dict[str, str]:
        return {SOURCE: resolved(self.images)}

    def convert(self, writer: StoreWriter, conv: Conversion) -> None:
        """Regions of each relationship (deduplicated by object_id), then objects and attributes."""
        image_data = require_file(self.image_data, "image_data.json")
        relationships = require_file(self.relationships, "relationships.json")
        index = ImageIndex(image_data, ImageRoot(self.images, check=self.check_images), conv)
        regions = _Regions(writer, conv, index, self.with_names)

        keep: set[str] | None = None
        if self.min_predicate_count > 1:
            counts: Counter[str] = Counter()
            for item in progress.bar(iter_json(relationships), desc="visual genome: counting predicates", unit=" images"):
                rels = item.get("relationships") if isinstance(item, dict) else None
                for rel in rels if isinstance(rels, list) else []:
                    if isinstance(rel, dict) and isinstance(rel.get("predicate"), str):
                        counts[normalise_predicate(rel["predicate"])] += 1
            keep = {p for p, n in counts.items() if n >= self.min_predicate_count}

        rel_ids: dict[str, int] = {}
        items = progress.bar(iter_json(relationships), desc="visual genome", unit=" images")
        for iid, j, rel, problem in conv.records(_relationships(items, index, relationships)):
            if problem is not None:
                conv.skip(*problem)
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
            for iid, objs in self._entries(objects, "objects", index, conv):
                for k, obj in enumerate(objs):
                    regions.entity(iid, obj, f"{objects}: image {iid}, object {k}")
        if self.attributes is not None:
            attributes = require_file(self.attributes, "attributes.json")
            has_attr = writer.add_relation(*HAS_ATTRIBUTE)
            for iid, objs in self._entries(attributes, "attributes", index, conv):
                for k, obj in enumerate(objs):
                    where = f"{attributes}: image {iid}, object {k}"
                    eid = regions.entity(iid, obj, where)
                    if eid is None:
                        continue
                    values = obj.get("attributes")
                    if values is not None and not isinstance(values, list):
                        conv.skip("an object's 'attributes' is not a list", where)
                        continue
                    for a in values or []:
                        if not isinstance(a, str):
                            conv.skip("attribute is not a string", where)
                            continue
                        text = clean_text(a, conv)
                        if text:
                            aid = writer.add_entity(f"{SOURCE}:attribute/{text.lower()}", "text", text=text.lower(), source=SOURCE)
                            writer.add_triplet(eid, has_attr, aid, source=SOURCE, group=image_group(iid))

    @staticmethod
    def _entries(path: Path, field: str, index: ImageIndex, conv: Conversion) -> Iterator[tuple[int, list]]:
        """(image id, list under ``field``) per entry of objects/attributes.json; an entry of an
        image not in image_data.json is passed over (its relationships were counted already)."""
        for k, item in enumerate(progress.bar(iter_json(path), desc=f"visual genome {field}", unit=" images")):
            iid, values, problem = _image_entry(item, k, index, field, path)
            if problem is not None:
                if problem[0] != "image not in image_data.json":
                    conv.skip(*problem)
                continue
            yield iid, values
