"""How an image entity becomes pixels: its file and box, the decoded crop, and the model's
transform split where PIL work ends (the part that a pre-resized cache can do once)."""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torchvision import transforms as T

from kgclip.store.reader import KnowledgeStore

try:  # open_clip's ToTensor that passes tensors through (the same on arrays and PIL images)
    from open_clip.transform import MaybeToTensor

    _TO_TENSOR: tuple[type, ...] = (T.ToTensor, MaybeToTensor)
except ImportError:  # pragma: no cover - open_clip is a dependency
    _TO_TENSOR = (T.ToTensor,)


def entity_images(store: KnowledgeStore) -> tuple[np.ndarray, np.ndarray]:
    """Per entity id: the full image path (None for text entities) and the box (x, y, w, h) or None."""
    e = store.entities
    paths = store.image_paths()  # every path checked inside its image root (a path that escapes is an error naming the entity)
    return paths, e["bbox"].to_numpy(dtype=object)


def crop_box(box) -> tuple[int, int, int, int]:
    """The PIL crop rectangle (left, upper, right, lower) of a stored (x, y, w, h) box."""
    x, y, w, h = (float(v) for v in box)
    return int(x), int(y), round(x + w), round(y + h)


def decode(path: str) -> Image.Image:
    """The whole image as RGB (the file is closed on return)."""
    with Image.open(path) as im:
        return im.convert("RGB")


def load_crop(path: str, box) -> Image.Image:
    """The entity's pixels: the decoded image, cropped to ``box`` when it has one."""
    im = decode(path)
    return im if box is None else im.crop(crop_box(box))


@dataclass(frozen=True)
class ImageStages:
    """A model's image transform split in two at its ``ToTensor``.

    Attributes:
        pil: PIL image -> PIL image (resize, crop, mode): the part a cache stores the output of.
        tensor: HWC uint8 array -> tensor (``ToTensor`` and what follows, e.g. ``Normalize``).
        spec: a text naming every PIL step with its settings; a cache written for another spec is
            not used.
        size: (height, width) of every output of ``pil``.
        mean, std: set when ``tensor`` is exactly ``ToTensor`` + ``Normalize``: then a whole batch
            is converted at once, with the same elementwise operations (so the same values).
    """

    pil: Callable[[Image.Image], Image.Image]
    tensor: Callable[[np.ndarray], Tensor]
    spec: str
    size: tuple[int, int]
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def to_tensors(self, pixels: np.ndarray) -> Tensor:
        """[n, H, W, 3] uint8 -> [n, 3, H, W] model input, equal to ``tensor`` applied to each image."""
        if self.mean is None or self.std is None:
            return torch.stack([self.tensor(p) for p in pixels]) if len(pixels) else torch.empty(0)
        return normalize_pixels(torch.from_numpy(np.ascontiguousarray(pixels)), self.mean, self.std)


def normalize_pixels(pixels: Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    """[n, H, W, C] uint8 -> [n, C, H, W] float, on the pixels' device.

    The same elementwise operations as torchvision's ``ToTensor`` then ``Normalize`` (``/ 255``,
    ``- mean``, ``/ std``, each rounded once), so the same values as those applied image by image.
    """
    x = pixels.permute(0, 3, 1, 2).to(torch.get_default_dtype(), memory_format=torch.contiguous_format)
    x.div_(255)
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return x.sub_(m).div_(s)


def split_transform(transform: Callable) -> ImageStages | None:
    """Split a torchvision ``Compose`` (as open_clip's preprocessing) at its ``ToTensor``.

    Returns:
        The two stages, or None when the transform cannot be split (not a ``Compose``, no
        ``ToTensor``, or its PIL stage does not give one fixed size): such a transform is only
        ever applied whole, and no cache is used with it.
    """
    if not isinstance(transform, T.Compose):
        return None
    steps = list(transform.transforms)
    cut = next((i for i, s in enumerate(steps) if isinstance(s, T.ToTensor)), None)
    if cut is None:
        return None
    pil, tensor = T.Compose(steps[:cut]), T.Compose(steps[cut:])
    sizes = {pil(Image.new("RGB", wh)).size for wh in ((500, 375), (97, 211))}  # a fixed size whatever the input's shape
    if len(sizes) != 1:
        return None
    (w, h), = sizes
    spec = " | ".join(repr(s) for s in steps[:cut])
    mean = std = None
    rest = steps[cut:]
    if len(rest) == 2 and type(rest[0]) in _TO_TENSOR and type(rest[1]) is T.Normalize and not rest[1].inplace:
        mean, std = tuple(float(v) for v in rest[1].mean), tuple(float(v) for v in rest[1].std)
    return ImageStages(pil, tensor, spec, (h, w), mean, std)

