"""Finding benchmark images on disk and loading them (a failed decode is reported, never a crash)."""

import os
import re
from pathlib import Path

from PIL import Image, UnidentifiedImageError
from torchvision.datasets.folder import IMG_EXTENSIONS

from kgclip.errors import KgclipError

_COCO_NAME = re.compile(r"^(?:COCO_([A-Za-z0-9]+)_)?(\d{12})\.(?:jpg|jpeg|png)$", re.IGNORECASE)


def image_folder(path: str | Path, what: str = "images") -> Path:
    """``path`` as a folder, or a one-line error."""
    p = Path(path)
    if not p.is_dir():
        raise KgclipError(f"{p}: {what} folder not found")
    return p


def index_by_name(root: str | Path) -> dict[str, Path]:
    """Every image file under ``root`` (recursively) by file name; the first found (in sorted walk
    order) wins when names repeat."""
    out: dict[str, Path] = {}
    for folder, dirs, files in os.walk(image_folder(root)):
        dirs.sort()
        for name in sorted(files):
            if name.lower().endswith(IMG_EXTENSIONS) and name not in out:
                out[name] = Path(folder) / name
    return out


def coco_index(root: str | Path, subtype: str | None = None) -> dict[int, Path]:
    """COCO images under ``root`` by image id, from file names ``COCO_<subtype>_<12-digit id>.jpg``
    or ``<12-digit id>.jpg``; names of ``subtype`` (e.g. ``train2014``) are preferred when an id
    appears more than once."""
    out: dict[int, Path] = {}
    preferred: set[int] = set()
    for name, path in index_by_name(root).items():
        m = _COCO_NAME.match(name)
        if not m:
            continue
        iid = int(m.group(2))
        better = subtype is not None and m.group(1) == subtype
        if iid not in out or (better and iid not in preferred):
            out[iid] = path
            if better:
                preferred.add(iid)
    return out


def load_image(path: str | Path) -> Image.Image:
    """The image as RGB; raises :class:`ImageLoadError` when it is missing or does not decode."""
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except FileNotFoundError:
        raise ImageLoadError(path, "image file missing") from None
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageLoadError(path, f"image does not decode ({exc.__class__.__name__})") from None


class ImageLoadError(Exception):
    """An image that does not exist or does not decode (counted as a skip by the loaders).

    Attributes:
        path: the image file. reason: a short reason (the same for every file that fails alike).
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason
