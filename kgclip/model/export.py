"""Export the trained towers as an open_clip checkpoint."""

import os
from pathlib import Path

import torch

from kgclip.errors import KgclipError


def export_open_clip(model, out: str | os.PathLike) -> Path:
    """Write ``{"state_dict": towers}`` atomically; ``open_clip.create_model_and_transforms(NAME,
    pretrained=FILE)`` loads it unchanged (for kgclip's own configs, import kgclip.model first so
    that they are registered)."""
    out = Path(out)
    if not out.parent.is_dir():
        raise KgclipError(f"{out.parent}: folder does not exist")
    tmp = out.with_name(f".{out.name}.tmp")
    torch.save({"state_dict": model.clip.state_dict(), "kgclip_clip_model": model.config.clip_model}, tmp)
    os.replace(tmp, out)
    return out
