"""Rebuilding a trained model from a checkpoint (for evaluation, export, queries)."""

import os
from dataclasses import replace

from kgclip.config import from_dict
from kgclip.errors import KgclipError
from kgclip.model.knowledge_clip import KnowledgeCLIP
from kgclip.training.checkpoint import first_line, load_checkpoint, resolve_checkpoint
from kgclip.training.config import RunConfig, uses_fusion

__all__ = ["load_trained", "uses_fusion"]


def load_trained(path_or_run: str | os.PathLike) -> tuple[KnowledgeCLIP, RunConfig, dict]:
    """(model in eval mode, its run config, the checkpoint) from a checkpoint file or a run folder.

    The towers are built without pretrained weights (the checkpoint holds them), so a model
    trained from a hub tag loads without network access.
    """
    path = resolve_checkpoint(path_or_run)
    ckpt = load_checkpoint(path)
    config = from_dict(RunConfig, ckpt["config"])
    model = KnowledgeCLIP(replace(config.model, pretrained=None), int(ckpt["num_relations"]))
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise KgclipError(f"{path}: weights do not fit the model of its own config ({first_line(exc)})") from None
    return model.eval(), config, ckpt
