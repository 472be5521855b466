"""Image-caption pairs (COCO captions JSON, a Karpathy split JSON, or a CC3M-style TSV) -> knowledge store.

Each pair gives two triplets: (image, "image of", caption) and (caption, "caption of", image).
Splits are by image: every caption of an image, in both directions, lands in one split (the
Karpathy file's own split, or one drawn per image).
"""

from pathlib import Path

from data_prep.common import Conversion, clean_text, iter_json, iter_lines, require_file
from kgclip import progress
from kgclip.errors import SourceError
from kgclip.store import StoreWriter

IMAGE_OF = ("image of", "image of")
CAPTION_OF = ("caption of", "caption of")


KARPATHY_SPLITS = {"train": "train", "restval": "train", "val": "valid", "test": "test"}
"""The Karpathy split names -> store splits (``restval`` is training data, as in every paper since)."""


def _add_pair(writer: StoreWriter, conv: Conversion, source: str, image_key: str, image: str, caption_key: str, caption: str,
              rels: tuple[int, int], split: str | None = None) -> None:
    img = writer.add_entity(image_key, "image", image=image, source=source)
    cap = writer.add_entity(caption_key, "text", text=caption, source=source)
    writer.add_triplet(img, rels[0], cap, source=source, split=split, group=image_key)
    writer.add_triplet(cap, rels[1], img, source=source, split=split, group=image_key)
    conv.kept += 1


def convert_coco(captions: str | Path, images: str | Path, writer: StoreWriter, conv: Conversion, *, check_images: bool = True, source: str = "coco") -> None:
    """COCO captions: ``images`` (``id``, ``file_name``) and ``annotations`` (``image_id``, ``caption``)."""
    captions = require_file(captions, "COCO captions file")
    root = Path(images)
    files: dict[int, str | None] = {}
    for img in iter_json(captions, "images.item"):
        try:
            name = str(img["file_name"])
            files[int(img["id"])] = name if not check_images or (root / name).is_file() else None
        except (KeyError, TypeError, ValueError):
            raise SourceError(f"{captions}: an image record lacks id or file_name: {str(img)[:120]}") from None
    if not files:
        raise SourceError(f"{captions}: no 'images' list (not a COCO captions file?)")
    rels = (writer.add_relation(*IMAGE_OF), writer.add_relation(*CAPTION_OF))
    for k, ann in enumerate(progress.bar(iter_json(captions, "annotations.item"), desc="coco captions", unit=" captions")):
        if conv.done():
            break
        conv.read += 1
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
        _add_pair(writer, conv, source, f"{source}:{name}", name, f"{source}:caption/{ann.get('id', k)}", caption, rels)


def convert_tsv(path: str | Path, writer: StoreWriter, conv: Conversion, *, check_images: bool = True, source: str = "pairs") -> Path:
    """A TSV of ``image path <TAB> caption`` lines; paths relative to the TSV's folder. Returns that folder."""
    path = require_file(path, "pairs TSV")
    root = path.parent
    rels = (writer.add_relation(*IMAGE_OF), writer.add_relation(*CAPTION_OF))
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
        if check_images and not (root / image).is_file():
            conv.skip("image file missing", f"{path}:{lineno}", bad=False)
            continue
        _add_pair(writer, conv, source, f"{source}:{image}", image, f"{source}:caption/{lineno}", caption, rels)
    return root


def karpathy_source(path: str | Path) -> str:
    """The source name of a Karpathy file: ``dataset_coco.json`` -> ``coco``, ``dataset_flickr30k.json`` -> ``flickr30k``."""
    stem = Path(path).name.split(".")[0]
    return stem.removeprefix("dataset_") or "karpathy"


def convert_karpathy(path: str | Path, images: str | Path, writer: StoreWriter, conv: Conversion, *, check_images: bool = True,
                     source: str | None = None) -> None:
    """A Karpathy split JSON (``dataset_coco.json``, ``dataset_flickr30k.json``, ``dataset_flickr8k.json``) as published.

    ``{"images": [{"filepath"?, "filename", "split", "sentences": [{"raw", "tokens", "sentid"}], ...}]}``;
    image files lie at ``images/[filepath/]filename``. A *record* is one sentence. The file's
    split is kept (``restval`` as train, ``val`` as valid); an image without ``split`` is an error.
    """
    path = require_file(path, "Karpathy split JSON")
    source = source or karpathy_source(path)
    root = Path(images)
    if check_images and not root.is_dir():
        raise SourceError(f"{root}: image folder not found")
    rels = (writer.add_relation(*IMAGE_OF), writer.add_relation(*CAPTION_OF))
    n_images = 0
    for i, img in enumerate(progress.bar(iter_json(path, "images.item"), desc=f"{source} (Karpathy)", unit=" images")):
        if conv.done():
            break
        n_images += 1
        if not isinstance(img, dict) or not isinstance(img.get("filename"), str) or not img["filename"]:
            raise SourceError(f"{path}: image {i} has no 'filename' (not a Karpathy split file?)")
        if "split" not in img:
            raise SourceError(f"{path}: image {i} ({img['filename']}) has no 'split' field (not a Karpathy split file?)")
        split = KARPATHY_SPLITS.get(img["split"]) if isinstance(img["split"], str) else None
        if split is None:
            raise SourceError(f"{path}: image {i} ({img['filename']}): unknown split {img['split']!r} (expected one of {sorted(KARPATHY_SPLITS)})")
        name = f"{img['filepath']}/{img['filename']}" if isinstance(img.get("filepath"), str) and img["filepath"] else img["filename"]
        present = not check_images or (root / name).is_file()
        sentences = img.get("sentences") if isinstance(img.get("sentences"), list) else []
        for k, sent in enumerate(sentences):
            if conv.done():
                break
            conv.read += 1
            where = f"{path}: image {i} ({name}), sentence {k}"
            if not present:
                conv.skip("image file missing", where, bad=False)
                continue
            raw = sent.get("raw") if isinstance(sent, dict) else None
            if not isinstance(raw, str) and isinstance(sent, dict) and isinstance(sent.get("tokens"), list):
                raw = " ".join(str(t) for t in sent["tokens"])
            caption = clean_text(raw, conv)
            if not caption:
                conv.skip("empty caption", where)
                continue
            sentid = sent.get("sentid", f"{img.get('imgid', i)}/{k}")
            _add_pair(writer, conv, source, f"{source}:{name}", name, f"{source}:caption/{sentid}", caption, rels, split=split)
    if n_images == 0:
        raise SourceError(f"{path}: no 'images' list, or an empty one (not a Karpathy split file?)")
