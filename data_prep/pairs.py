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
from data_prep.common import Conversion, clean_text, iter_json, iter_lines, require_file
from kgclip import progress
from kgclip.errors import SourceError
from kgclip.store import StoreWriter

IMAGE_OF = ("image of", "image of")
CAPTION_OF = ("caption of", "caption of")
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
        rels = (writer.add_relation(*IMAGE_OF), writer.add_relation(*CAPTION_OF))
        if self.coco:
            self._coco(writer, conv, rels)
        elif self.karpathy:
            self._karpathy(writer, conv, rels)
        else:
            self._tsv(writer, conv, rels)

    def _coco(self, writer: StoreWriter, conv: Conversion, rels: tuple[int, int]) -> None:
        """COCO captions: ``images`` (``id``, ``file_name``) and ``annotations`` (``image_id``, ``caption``)."""
        captions = require_file(self.coco, "COCO captions file")
        root = Path(self.images)
        files: dict[int, str | None] = {}
        for img in iter_json(captions, "images.item"):
            try:
                name = str(img["file_name"])
                files[int(img["id"])] = name if not self.check_images or (root / name).is_file() else None
            except (KeyError, TypeError, ValueError):
                raise SourceError(f"{captions}: an image record lacks id or file_name: {str(img)[:120]}") from None
        if not files:
            raise SourceError(f"{captions}: no 'images' list (not a COCO captions file?)")
        annotations = progress.bar(iter_json(captions, "annotations.item"), desc="coco captions", unit=" captions")
        for k, ann in conv.records(enumerate(annotations)):
            where = f"{captions}: annotation {k}"
            if not isinstance(ann, dict) or "image_id" not in ann:
                conv.skip("annotation lacks image_id", where)
                continue
            name = files.get(int(ann["image_id"]), "")
            if name == "":
                conv.skip("image_id not in images", where)
                continue
            if name is None:
                conv.skip("image file missing", where, bad=False)
                continue
            caption = clean_text(ann.get("caption"), conv)
            if not caption:
                conv.skip("empty caption", where)
                continue
            _add_pair(writer, conv, f"{conv.source}:{name}", name, f"{conv.source}:caption/{ann.get('id', k)}", caption, rels)

    def _tsv(self, writer: StoreWriter, conv: Conversion, rels: tuple[int, int]) -> None:
        """``image path <TAB> caption`` lines; paths relative to the TSV's folder."""
        path = require_file(self.tsv, "pairs TSV")
        root = path.parent
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
            if self.check_images and not (root / image).is_file():
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
        root = Path(self.images)
        if self.check_images and not root.is_dir():
            raise SourceError(f"{root}: image folder not found")
        n_images = 0

        def sentences(images: Any) -> Iterator[tuple[str, str | None, str, int, Any]]:
            nonlocal n_images
            for i, img in enumerate(images):
                n_images += 1
                name, split = _karpathy_image(path, i, img)
                present = not self.check_images or (root / name).is_file()
                for k, sent in enumerate(img.get("sentences") if isinstance(img.get("sentences"), list) else []):
                    yield name, split if present else None, f"{path}: image {i} ({name}), sentence {k}", k, (img, sent)

        images = progress.bar(iter_json(path, "images.item"), desc=f"{conv.source} (Karpathy)", unit=" images")
        for name, split, where, k, (img, sent) in conv.records(sentences(images)):
            if split is None:
                conv.skip("image file missing", where, bad=False)
                continue
            raw = sent.get("raw") if isinstance(sent, dict) else None
            if not isinstance(raw, str) and isinstance(sent, dict) and isinstance(sent.get("tokens"), list):
                raw = " ".join(str(t) for t in sent["tokens"])
            caption = clean_text(raw, conv)
            if not caption:
                conv.skip("empty caption", where)
                continue
            sentid = sent.get("sentid", f"{img.get('imgid', name)}/{k}")
            _add_pair(writer, conv, f"{conv.source}:{name}", name, f"{conv.source}:caption/{sentid}", caption, rels, split=split)
        if n_images == 0:
            raise SourceError(f"{path}: no 'images' list, or an empty one (not a Karpathy split file?)")


def _karpathy_image(path: Path, i: int, img: Any) -> tuple[str, str]:
    """The image's path under the image folder and its store split; a record without them is an error."""
    if not isinstance(img, dict) or not isinstance(img.get("filename"), str) or not img["filename"]:
        raise SourceError(f"{path}: image {i} has no 'filename' (not a Karpathy split file?)")
    if "split" not in img:
        raise SourceError(f"{path}: image {i} ({img['filename']}) has no 'split' field (not a Karpathy split file?)")
    split = KARPATHY_SPLITS.get(img["split"]) if isinstance(img["split"], str) else None
    if split is None:
        raise SourceError(f"{path}: image {i} ({img['filename']}): unknown split {img['split']!r} (expected one of {sorted(KARPATHY_SPLITS)})")
    folder = img.get("filepath")
    return (f"{folder}/{img['filename']}" if isinstance(folder, str) and folder else img["filename"]), split
