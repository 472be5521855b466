"""Where fine-tuning starts (INIT): a kgclip run or checkpoint, or an open_clip model.

- A kgclip run folder (its latest checkpoint) or checkpoint file. A run that trained the fusion
  encoder (an E2E, E2R or G2E loss) is a *Knowledge-CLIP* init: its towers, projections and
  fusion encoder are kept. A run that did not is a *CLIP* init: its towers are kept and the fusion
  encoder is made afresh at the run's own size.
- ``MODEL:TAG`` (``ViT-B-32:openai``) or ``MODEL:FILE.pt``: open_clip towers with pretrained
  weights, a CLIP init.
- ``MODEL`` alone (``kgclip-tiny``): randomly initialised towers, a CLIP init (for tests).

A CLIP init's fresh fusion encoder has the size of the fine-tuning config's ``model`` section
(the paper's by default), so the comparison with a Knowledge-CLIP init of the same size isolates
what knowledge training gave. A kgclip run keeps its own fusion settings: a ``model.*`` key set to
other than its default is then ignored, with a warning naming it.
"""

import logging
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from kgclip.config import field_defaults
from kgclip.errors import ConfigError, KgclipError
from kgclip.model.clip import ClipBundle, create_clip
from kgclip.model.knowledge_clip import KnowledgeCLIP, ModelConfig
from kgclip.training.restore import load_trained, uses_fusion

KNOWLEDGE_CLIP = "knowledge-clip"
CLIP = "clip"

log = logging.getLogger("kgclip.finetune")


@dataclass
class Backbone:
    """The starting model of a fine-tuning run.

    Attributes:
        model: towers + token projections + fusion encoder (trained or fresh).
        kind: ``knowledge-clip`` (trained fusion encoder) or ``clip`` (fresh fusion encoder).
        source: what INIT named, resolved (a checkpoint path or an open_clip spec).
    """

    model: KnowledgeCLIP
    kind: str
    source: str


def _looks_like_path(spec: str) -> bool:
    return Path(spec).exists() or "/" in spec or spec.endswith((".pt", ".pth", ".bin", ".safetensors"))


def load_backbone(init: str, fusion: dict | None = None, seed: int = 0) -> Backbone:
    """Build the starting model named by ``init`` (see the module docstring).

    Args:
        init: a run folder, a checkpoint file, ``MODEL:TAG``, ``MODEL:FILE`` or ``MODEL``.
        fusion: the fresh fusion encoder's :class:`ModelConfig` fields (``fusion_width``, ...) for
            an open_clip init; a kgclip run uses its own config's.
        seed: seeds the fresh fusion encoder (and random towers).
    """
    spec = str(init)
    name, sep, tag = spec.partition(":")
    if not sep and _looks_like_path(spec):
        from kgclip.training.checkpoint import resolve_checkpoint

        path = resolve_checkpoint(spec)
        try:
            trained, config, _ = load_trained(path)
        except ConfigError as exc:
            raise KgclipError(f"{path}: not a Knowledge-CLIP or CLIP training checkpoint ({exc}); "
                              f"for an open_clip checkpoint file write MODEL:{spec}") from None
        _warn_ignored(fusion, config.model, uses_fusion(config))
        if uses_fusion(config):
            return Backbone(trained.train(), KNOWLEDGE_CLIP, str(path))
        bundle = ClipBundle(trained.clip, trained.preprocess_train, trained.preprocess_val, trained.tokenizer, config.model.clip_model)
        torch.manual_seed(seed)
        return Backbone(KnowledgeCLIP(replace(config.model, pretrained=None), trained.num_relations, clip=bundle), CLIP, str(path))
    torch.manual_seed(seed)  # random towers (no pretrained weights) are seeded too
    bundle = create_clip(name, tag or None)
    cfg = ModelConfig(clip_model=name, pretrained=tag or None, **(fusion or {}))
    torch.manual_seed(seed)
    return Backbone(KnowledgeCLIP(cfg, 1, clip=bundle), CLIP, spec)


def ignored_fusion_keys(fusion: dict | None, kept: ModelConfig) -> dict[str, object]:
    """The ``fusion`` fields set to other than their :class:`ModelConfig` default and to other than ``kept``'s value."""
    defaults = field_defaults(ModelConfig)
    return {k: v for k, v in (fusion or {}).items() if k in defaults and v != defaults[k] and v != getattr(kept, k)}


def _warn_ignored(fusion: dict | None, kept: ModelConfig, knowledge_clip: bool) -> None:
    """Log one warning naming the ``model.*`` keys a kgclip run init ignores (it keeps ``kept``'s)."""
    ignored = ignored_fusion_keys(fusion, kept)
    if not ignored:
        return
    asked = ", ".join(f"model.{k}={v}" for k, v in ignored.items())
    own = ", ".join(f"{k} {getattr(kept, k)}" for k in ignored)
    why = "a Knowledge-CLIP init keeps its own fusion encoder" if knowledge_clip else "a kgclip run init makes its fusion encoder at the run's own settings"
    log.warning("%s %s ignored: %s (%s)", asked, "is" if len(ignored) == 1 else "are", why, own)


def backbone_config(backbone: Backbone) -> dict:
    """The backbone's model config as plain values (saved in fine-tuning checkpoints)."""
    return {"kind": backbone.kind, "source": backbone.source, **asdict(backbone.model.config)}
