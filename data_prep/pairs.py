"""Image-caption pairs (COCO captions JSON or a CC3M-style TSV) -> knowledge store.

Each pair gives two triplets: (image, "image of", caption) and (caption, "caption of", image).
"""

from pathlib import Path

from data_prep.common import Conversion, clean_text, iter_json, iter_lines, require_file
from kgclip import progress
from kgclip.errors import SourceError
from kgclip.store import StoreWriter

IMAGE_OF = ("image of", "image of")
CAPTION_OF = ("caption of", "caption of")


def _add_pair(writer: StoreWriter, conv: Conversion, source: str, image_key: str, image: str, caption_key: str, caption: str, rels: tuple[int, int]) -> None:
    img = writer.add_entity(image_key, "image", image=image, source=source)
    cap = writer.add_entity(caption_key, "text", text=caption, source=source)
    writer.add_triplet(img, rels[0], cap, source=source)
    writer.add_triplet(cap, rels[1], img, source=source)
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
