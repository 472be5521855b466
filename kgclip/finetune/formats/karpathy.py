"""Karpathy split JSON (``dataset_coco.json``, ``dataset_flickr30k.json``) for image-text retrieval.

``{"dataset": "coco", "images": [{"filepath": "val2014" (COCO only), "filename": "...jpg",
"split": "train|restval|val|test", "sentences": [{"raw": "...", "tokens": [...]}], ...}]}``.
An image is found at ``DIR/filepath/filename`` or ``DIR/filename``; a ``filepath`` or ``filename``
that is absolute or climbs out with ``..`` is a counted skip (it would read outside ``DIR``). ``train`` and ``restval``
train; ``val`` is for model selection; ``test`` is the reported split.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath

from kgclip.errors import KgclipError
from kgclip.skips import Skips

SPLITS = {"train": "train", "restval": "train", "val": "val", "test": "test"}


@dataclass
class CaptionedImage:
    image: str
    captions: list[str]
    name: str


@dataclass
class KarpathySplits:
    """Images with their captions by split (``train`` holds train + restval)."""

    train: list[CaptionedImage] = field(default_factory=list)
    val: list[CaptionedImage] = field(default_factory=list)
    test: list[CaptionedImage] = field(default_factory=list)


def _caption(s) -> str | None:
    if not isinstance(s, dict):
        return None
    raw = s.get("raw")
    if isinstance(raw, str) and raw.strip():
        return raw.strip()
    toks = s.get("tokens")
    if isinstance(toks, list) and toks and all(isinstance(t, str) for t in toks):
        return " ".join(toks)
    return None


def _escapes(relative: str) -> bool:
    """Whether a path from the file is absolute or climbs with ``..`` (it must stay under ``--images``)."""
    parts = PurePosixPath(relative.replace("\\", "/")).parts
    return relative.startswith(("/", "\\")) or PureWindowsPath(relative).drive != "" or ".." in parts


def read_karpathy(path: str | Path, images: str | Path, skips: Skips) -> KarpathySplits:
    """The images of a Karpathy split file that exist under ``images``, by split."""
    path, root = Path(path), Path(images)
    if not root.is_dir():
        raise KgclipError(f"{root}: images folder not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise KgclipError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise KgclipError(f"{path}: not a readable JSON file ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise KgclipError(f"{path}: not a Karpathy split file (expected an object with an 'images' list)")
    if data["images"] and not any(isinstance(im, dict) and "split" in im for im in data["images"]):
        raise KgclipError(f"{path}: no image has a 'split' field; a Karpathy split file names each image's split (train/restval/val/test)")
    out = KarpathySplits()
    for i, im in enumerate(data["images"]):
        if not isinstance(im, dict):
            skips.add(f"{path}:images[{i}]", "not an object")
            continue
        name = im.get("filename")
        where = f"{path}:images[{i}]" + (f"({name})" if isinstance(name, str) else "")
        split = im.get("split")
        sub = im.get("filepath")
        if not isinstance(name, str) or not name:
            skips.add(where, "filename missing")
        elif _escapes(name) or (isinstance(sub, str) and _escapes(sub)):
            skips.add(where, f"filename/filepath leaves the images folder ({sub}/{name})")
        elif split not in SPLITS:
            skips.add(where, f"split {split!r} is not one of {', '.join(SPLITS)}" if split is not None else "split missing")
        else:
            caps = [c for c in (_caption(s) for s in im.get("sentences") or []) if c]
            file = root / sub / name if isinstance(sub, str) and (root / sub / name).is_file() else root / name
            if not caps:
                skips.add(where, "no sentences")
            elif not file.is_file():
                skips.add(where, f"image not found under {root}")
            else:
                getattr(out, SPLITS[split]).append(CaptionedImage(str(file), caps, name))
    if not out.train:
        raise KgclipError(f"{path}: no usable train/restval image; {skips.summary() or 'the file lists none'}")
    if not out.test:
        raise KgclipError(f"{path}: no usable test image; {skips.summary() or 'the file lists none'}")
    return out
