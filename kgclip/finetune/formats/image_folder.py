"""ImageFolder layout (``DIR/<class>/<image>``, as torchvision reads it) for classification."""

from dataclasses import dataclass
from pathlib import Path

from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

from kgclip.errors import KgclipError
from kgclip.skips import Skips


@dataclass
class LabelledImage:
    image: str
    label: int


def read_image_folder(path: str | Path, skips: Skips, classes: list[str] | None = None) -> tuple[list[LabelledImage], list[str]]:
    """The images of an ImageFolder tree and its class names (sorted folder names).

    Args:
        path: the root folder.
        skips: where files that are not images are counted.
        classes: the training classes, for an evaluation folder: its class folders must be among
            them and keep their training labels.
    """
    root = Path(path)
    if not root.is_dir():
        raise KgclipError(f"{root}: image folder not found")
    try:
        found, _ = find_classes(root)
    except FileNotFoundError:
        raise KgclipError(f"{root}: no class folders (ImageFolder layout: {root}/<class>/<image>)") from None
    if classes is None:
        classes = found
    else:
        unknown = sorted(set(found) - set(classes))
        if unknown:
            raise KgclipError(f"{root}: class folder(s) {', '.join(unknown[:5])} have no training folder; "
                              f"the evaluation classes must be among the {len(classes)} training classes")
    index = {c: i for i, c in enumerate(classes)}
    samples = make_dataset(root, {c: index[c] for c in found}, extensions=IMG_EXTENSIONS, allow_empty=True)
    for c in found:
        for f in sorted((root / c).rglob("*")):
            if f.is_file() and not f.name.lower().endswith(IMG_EXTENSIONS):
                skips.add(str(f), "not an image file name")
    if not samples:
        raise KgclipError(f"{root}: no images in its class folders (extensions {', '.join(IMG_EXTENSIONS)})")
    return [LabelledImage(p, y) for p, y in samples], classes
