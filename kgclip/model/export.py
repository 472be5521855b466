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
    if out.is_dir():
        raise KgclipError(f"{out}: is a folder; give the file to write (e.g. {out / 'towers.pt'})")
    if not out.parent.is_dir():
        raise KgclipError(f"{out.parent}: folder does not exist")
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        torch.save({"state_dict": model.clip.state_dict(), "kgclip_clip_model": model.config.clip_model}, tmp)
        os.replace(tmp, out)
    except OSError as exc:  # a full disk, no permission: one line, no temporary left
        tmp.unlink(missing_ok=True)
        raise KgclipError(f"{out}: cannot write ({exc.strerror or exc})") from None
    return out
