"""Image-caption pairs (COCO captions JSON, a Karpathy split JSON, or a CC3M-style TSV) -> knowledge store.

Each pair gives two triplets: (image, "image of", caption) and (caption, "caption of", image).
Splits are by image: every caption of an image, in both directions, lands in one split (the
Karpathy file's own split, or one drawn per image).
"""

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from data_prep.base import Converter, option, resolved
from data_prep.common import IMAGE_ESCAPES, Conversion, ImageRoot, as_int, clean_text, iter_json, iter_lines, quoted, require_file
from kgclip import progress
from kgclip.errors import SourceError
from kgclip.store import StoreWriter
from kgclip.vocabulary import CAPTION_OF, IMAGE_OF

KARPATHY_SPLITS = {"train": "train", "restval": "train", "val": "valid", "test": "test"}
"""The Karpathy split names -> store splits (``restval`` is training data, as in every paper since)."""


def _add_pair(writer: StoreWriter, conv: Conversion, image_key: str, image: str, caption_key: str, caption: str,
              rels: tuple[int, int], split: str | None = None) -> None:
    source = conv.source
    img = writer.add_entity(image_key, "image", image=image, source=source)
    cap = writer.add_entity(caption_key, "text", text=caption, source=source)
    writer.add_triplet(img, rels[0], cap, source=source, split=split, group=image_key)
    writer.add_triplet(cap, rels[1], img, source=source, split=split, group=image_key)
    conv.kept += 1


def karpathy_source(path: str | Path) -> str:
    """The source name of a Karpathy file: ``dataset_coco.json`` -> ``coco``, ``dataset_flickr30k.json`` -> ``flickr30k``."""
    stem = Path(path).name.split(".")[0]
    return stem.removeprefix("dataset_") or "karpathy"


@dataclasses.dataclass
class Pairs(Converter):
    """Image-caption pairs from exactly one of: COCO captions, a Karpathy split file, a TSV.

    Sources: ``coco`` (COCO captions), the Karpathy file's dataset (``coco``, ``flickr30k``,
    ``flickr8k``, from its name), ``pairs`` (TSV, image paths relative to the TSV's folder).
    """

    name = "pairs"
    description = "image-caption pairs (COCO captions, a Karpathy split JSON, or a TSV)"

    coco: str | None = option(None, help="COCO captions JSON (split by image)")
    karpathy: str | None = option(None, help="Karpathy split JSON (dataset_coco.json, dataset_flickr30k.json): its split is kept")
    images: str | None = option(None, help="image folder of --coco or --karpathy")
    tsv: str | None = option(None, help="CC3M-style TSV: image path <TAB> caption (split by image)")
    check_images: bool = option(True, help="trust image paths without stat", flag="--no-check-images")

    def check(self) -> None:
        if sum(map(bool, (self.coco, self.karpathy, self.tsv))) != 1:
            raise SourceError("give exactly one of --coco (with --images), --karpathy (with --images) or --tsv")
        if (self.coco or self.karpathy) and not self.images:
            raise SourceError(f"--{'coco' if self.coco else 'karpathy'} needs --images")

    @property
    def source(self) -> str:
        return "coco" if self.coco else karpathy_source(self.karpathy) if self.karpathy else "pairs"

    def image_roots(self) -> dict[str, str]:
        return {self.source: resolved(self.images) if self.images and not self.tsv else str(Path(resolved(self.tsv)).parent)}

    def convert(self, writer: StoreWriter, conv: Conversion) -> None:
        """A *record* is one caption (an annotation, a sentence, a line)."""
        rels = (writer.add_relation(IMAGE_OF, IMAGE_OF), writer.add_relation(CAPTION_OF, CAPTION_OF))  # key and text: the names training looks up
        if self.coco:
            self._coco(writer, conv, rels)
        elif self.karpathy:
            self._karpathy(writer, conv, rels)
        else:
            self._tsv(writer, conv, rels)

    def _coco(self, writer: StoreWriter, conv: Conversion, rels: tuple[int, int]) -> None:
        """COCO captions: ``images`` (``id``, ``file_name``) and ``annotations`` (``image_id``, ``caption``).

        An image record without an integer ``id`` and a ``file_name`` is a bad skip (its captions
        then name an unknown image); a ``file_name`` leading outside ``--images`` makes each of its
        captions a bad skip.
        """
        captions = require_file(self.coco, "COCO captions file")
        root = ImageRoot(self.images, check=self.check_images)
        files: dict[int, str | None] = {}
        escapes: dict[int, str] = {}
        n_images = 0
        for k, img in enumerate(iter_json(captions, "images.item")):
            n_images += 1
            iid = as_int(img.get("id")) if isinstance(img, dict) else None
            name = img.get("file_name") if isinstance(img, dict) else None
            if iid is None or not isinstance(name, str) or not name:
                conv.skip("image record lacks an integer id or a file_name", f"{captions}: image {k}")
                continue
            if iid in files or iid in escapes:
                conv.skip("image id seen before", f"{captions}: image {k} (id {iid})")
                continue
            if not root.inside(name):
                escapes[iid] = name
                continue
            files[iid] = name if root.is_file(name) else None
        if not n_images:
            raise SourceError(f"{captions}: no 'images' list (not a COCO captions file?)")
        annotations = progress.bar(iter_json(captions, "annotations.item"), desc="coco captions", unit=" captions")
        n_annotations = 0
        for k, ann in conv.records(enumerate(annotations)):
            n_annotations += 1
            where = f"{captions}: annotation {k}"
            if not isinstance(ann, dict) or "image_id" not in ann:
                conv.skip("annotation lacks image_id", where)
                continue
            iid = as_int(ann["image_id"])
            if iid is None:
                conv.skip("image_id is not an integer", f"{where} (image_id {quoted(ann['image_id'], 40)})")
                continue
            if iid in escapes:
                conv.skip(IMAGE_ESCAPES, f"{where} (image {iid}, file_name {quoted(escapes[iid])})")
                continue
            name = files.get(iid, "")
            if name == "":
                conv.skip("image_id not in images", where)
                continue
            if name is None:
                conv.skip("image file missing", where, bad=False)
                continue
            cid = ann.get("id", k)
            if isinstance(cid, bool) or not isinstance(cid, int | str):
                conv.skip("annotation id is not an integer or string", where)
                continue
            caption = clean_text(ann.get("caption"), conv)
            if not caption:
                conv.skip("empty caption", where)
                continue
            if writer.entity_id(f"{conv.source}:caption/{cid}") is not None:
                conv.skip("annotation id seen before", f"{where} (id {quoted(cid, 40)})")
                continue
            _add_pair(writer, conv, f"{conv.source}:{name}", name, f"{conv.source}:caption/{cid}", caption, rels)
        if not n_annotations and not conv.done():
            raise SourceError(f"{captions}: no 'annotations' list, or an empty one (not a COCO captions file?)")

    def _tsv(self, writer: StoreWriter, conv: Conversion, rels: tuple[int, int]) -> None:
        """``image path <TAB> caption`` lines; paths relative to the TSV's folder."""
        path = require_file(self.tsv, "pairs TSV")
        root = ImageRoot(path.parent, check=self.check_images)
        for lineno, line in progress.bar(iter_lines(path, conv), desc="pairs", unit=" lines"):
            fields = line.split("\t")
            if len(fields) != 2:
                if lineno == 1:
                    raise SourceError(f"{path}:1: expected 2 tab-separated columns (image path, caption), found {len(fields)}")
                conv.skip(f"{len(fields)} columns instead of 2", f"{path}:{lineno}")
                continue
            image, caption = fields[0].strip(), clean_text(fields[1], conv)
            if not image or not caption:
                conv.skip("empty image path or caption", f"{path}:{lineno}")
                continue
            if not root.inside(image):
                conv.skip(IMAGE_ESCAPES, f"{path}:{lineno} ({quoted(image)})")
                continue
            if not root.is_file(image):
                conv.skip("image file missing", f"{path}:{lineno}", bad=False)
                continue
            _add_pair(writer, conv, f"{conv.source}:{image}", image, f"{conv.source}:caption/{lineno}", caption, rels)

    def _karpathy(self, writer: StoreWriter, conv: Conversion, rels: tuple[int, int]) -> None:
        """A Karpathy split JSON (``dataset_coco.json``, ``dataset_flickr30k.json``, ``dataset_flickr8k.json``) as published.

        ``{"images": [{"filepath"?, "filename", "split", "sentences": [{"raw", "tokens", "sentid"}], ...}]}``;
        image files lie at ``images/[filepath/]filename``. The file's split is kept (``restval``
        as train, ``val`` as valid); an image without ``split`` is an error naming the file.
        """
        path = require_file(self.karpathy, "Karpathy split JSON")
        root = ImageRoot(self.images, check=self.check_images)
        n_images = 0

        def sentences(images: Any) -> Iterator[tuple[str, str, tuple[str, bool] | None, str, int, Any, Any]]:
            """(image path, split, (skip reason, bad) or None, where, sentence number, image, sentence) per sentence."""
            nonlocal n_images
            for i, img in enumerate(images):
                n_images += 1
                name, split = _karpathy_image(path, i, img)
                skip = None if root.inside(name) else (IMAGE_ESCAPES, True)
                if skip is None and not root.is_file(name):
                    skip = ("image file missing", False)
                sents = img.get("sentences")
                if sents is None:
                    continue
                if not isinstance(sents, list):
                    yield name, split, ("sentences is not a list", True), f"{path}: image {i} ({quoted(name)})", 0, img, None
                    continue
                for k, sent in enumerate(sents):
                    yield name, split, skip, f"{path}: image {i} ({quoted(name)}), sentence {k}", k, img, sent

        images = progress.bar(iter_json(path, "images.item"), desc=f"{conv.source} (Karpathy)", unit=" images")
        for name, split, skip, where, k, img, sent in conv.records(sentences(images)):
            if skip is not None:
                conv.skip(skip[0], where, bad=skip[1])
                continue
            if not isinstance(sent, dict):
                conv.skip("sentence is not a JSON object", where)
                continue
            raw = sent.get("raw")
            if not isinstance(raw, str) and isinstance(sent.get("tokens"), list):
                raw = " ".join(str(t) for t in sent["tokens"])
            caption = clean_text(raw, conv)
            if not caption:
                conv.skip("empty caption", where)
                continue
            sentid = sent.get("sentid", f"{img.get('imgid', name)}/{k}")
            if isinstance(sentid, bool) or not isinstance(sentid, int | str):
                conv.skip("sentid is not an integer or string", where)
                continue
            if writer.entity_id(f"{conv.source}:caption/{sentid}") is not None:
                conv.skip("sentid seen before", f"{where} (sentid {quoted(sentid, 40)})")
                continue
            _add_pair(writer, conv, f"{conv.source}:{name}", name, f"{conv.source}:caption/{sentid}", caption, rels, split=split)
        if n_images == 0:
            raise SourceError(f"{path}: no 'images' list, or an empty one (not a Karpathy split file?)")


def _karpathy_image(path: Path, i: int, img: Any) -> tuple[str, str]:
    """The image's path under the image folder and its store split; a record without them is an error."""
    if not isinstance(img, dict) or not isinstance(img.get("filename"), str) or not img["filename"]:
        raise SourceError(f"{path}: image {i} has no 'filename' (not a Karpathy split file?)")
    if "split" not in img:
        raise SourceError(f"{path}: image {i} ({quoted(img['filename'])}) has no 'split' field (not a Karpathy split file?)")
    split = KARPATHY_SPLITS.get(img["split"]) if isinstance(img["split"], str) else None
    if split is None:
        raise SourceError(f"{path}: image {i} ({quoted(img['filename'])}): unknown split {quoted(img['split'], 40)} "
                          f"(expected one of {sorted(KARPATHY_SPLITS)})")
    folder = img.get("filepath")
    return (f"{folder}/{img['filename']}" if isinstance(folder, str) and folder else img["filename"]), split
