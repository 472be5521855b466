"""CLIP towers from open_clip, with unpooled token outputs.

Models come from open_clip by name (``ViT-B-32``), with a pretrained tag (``openai``) or a local
checkpoint file, or from kgclip's own configs in ``kgclip/model_configs/*.json`` (registered with
open_clip's ``add_model_config`` when this module is imported).
"""

import logging
from dataclasses import dataclass
from pathlib import Path

import open_clip
import torch
import torch.nn.functional as F
from open_clip.model import CLIP
from open_clip.transformer import VisionTransformer
from torch import Tensor, nn

from kgclip.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "model_configs"
open_clip.add_model_config(CONFIG_DIR)


class _DropMessage(logging.Filter):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


@dataclass
class ClipBundle:
    """A CLIP model with its preprocessing and tokenizer."""

    model: CLIP
    preprocess_train: object
    preprocess_val: object
    tokenizer: object
    name: str


def create_clip(name: str, pretrained: str | None = None, *, device: str | torch.device = "cpu") -> ClipBundle:
    """Create an open_clip CLIP model.

    Args:
        name: an open_clip model name (``ViT-B-32``, ``ViT-L-14``) or one of kgclip's configs
            (``kgclip-tiny``).
        pretrained: an open_clip pretrained tag (``openai``, ``laion2b_s34b_b79k``), a local
            checkpoint file, or None for random initialisation.
        device: where to put the model.
    """
    if name not in open_clip.list_models():
        raise ConfigError(f"unknown CLIP model {name!r}; known: kgclip configs {sorted(p.stem for p in CONFIG_DIR.glob('*.json'))} and open_clip's own (open_clip.list_models())")
    if pretrained and not Path(pretrained).is_file() and pretrained not in open_clip.list_pretrained_tags_by_model(name):
        raise ConfigError(f"pretrained {pretrained!r} is neither a file nor a tag of {name} (tags: {open_clip.list_pretrained_tags_by_model(name)})")
    quiet = _DropMessage("No pretrained weights loaded")  # random init is asked for, not a problem
    logging.getLogger().addFilter(quiet)
    try:
        model, pre_train, pre_val = open_clip.create_model_and_transforms(name, pretrained=pretrained or None, device=device)
    except RuntimeError as exc:
        raise ConfigError(f"cannot load {name} weights from {pretrained!r}: {str(exc).splitlines()[0]}") from None
    finally:
        logging.getLogger().removeFilter(quiet)
    if not isinstance(model, CLIP) or not isinstance(model.visual, VisionTransformer):
        raise ConfigError(f"{name}: kgclip needs an open_clip CLIP with a ViT image tower and the built-in text tower (got {type(model).__name__} / {type(model.visual).__name__})")
    return ClipBundle(model, pre_train, pre_val, open_clip.get_tokenizer(name), name)


def image_widths(model: CLIP) -> tuple[int, int]:
    """(token width, number of tokens incl. the class token) of the image tower."""
    v = model.visual
    return v.transformer.width, int(v.positional_embedding.shape[0])


def text_width(model: CLIP) -> int:
    return model.transformer.width


def embed_dim(model: CLIP) -> int:
    return int(model.text_projection.shape[1]) if not isinstance(model.text_projection, nn.Linear) else model.text_projection.out_features


def encode_image_tokens(model: CLIP, images: Tensor) -> tuple[Tensor, Tensor]:
    """Every token after the final layer norm (class token first) and the projected CLIP embedding.

    Returns:
        tokens [n, 1 + patches, width], embedding [n, embed_dim] (not normalised).
    """
    v = model.visual
    x = v.transformer(v._embeds(images))
    pooled, tokens = v._pool(x)
    emb = pooled @ v.proj if v.proj is not None else pooled
    return torch.cat([pooled.unsqueeze(1), tokens], dim=1), emb


def encode_text_tokens(model: CLIP, text: Tensor, max_tokens: int) -> tuple[Tensor, Tensor, Tensor]:
    """Text tokens up to the end-of-text token, at most ``max_tokens`` of them, with their padding mask.

    CLIP's text transformer is causal: only the end-of-text (EOT) token has seen the whole text.
    A text longer than ``max_tokens`` therefore keeps its first ``max_tokens - 1`` tokens plus its
    EOT token (never a cut that loses it); shorter texts keep every token up to and including EOT.

    Returns:
        tokens [n, max_tokens, width], valid [n, max_tokens] (True for real tokens),
        embedding [n, embed_dim] (the CLIP text embedding, not normalised).
    """
    cast = model.transformer.get_cast_dtype()
    x = model.token_embedding(text).to(cast) + model.positional_embedding.to(cast)
    x = model.ln_final(model.transformer(x, attn_mask=model.attn_mask))
    eot = eot_positions(model, text)
    rows = torch.arange(x.shape[0], device=x.device)
    pooled = x[rows, eot]
    emb = model.text_projection(pooled) if isinstance(model.text_projection, nn.Linear) else pooled @ model.text_projection
    n = min(max_tokens, x.shape[1])
    keep = kept_text_positions(eot, n)
    tokens = x.gather(1, keep[:, :, None].expand(-1, -1, x.shape[2]))
    valid = torch.arange(n, device=text.device)[None, :] <= eot[:, None]
    return tokens, valid, emb


def eot_positions(model: CLIP, text: Tensor) -> Tensor:
    """Position of each row's end-of-text token: [n] (the pooling position of the CLIP text embedding)."""
    return text.argmax(dim=-1) if model.text_pool_type == "argmax" else (text == model.text_eos_id).int().argmax(dim=-1)


def kept_text_positions(eot: Tensor, n: int) -> Tensor:
    """Which token positions a text keeps when cut to ``n`` tokens: [len(eot), n].

    Positions ``0 .. n-2``, then the EOT position when the text is longer than ``n`` tokens (else
    ``n-1``, which is EOT or padding).
    """
    keep = torch.arange(n, device=eot.device).repeat(eot.shape[0], 1)
    keep[:, n - 1] = torch.clamp(eot, min=n - 1)
    return keep


def clip_logits(scale: Tensor, image_emb: Tensor, text_emb: Tensor) -> Tensor:
    """CLIP's image-text logits: scale * cos (scale = logit_scale.exp())."""
    return scale * F.normalize(image_emb, dim=-1) @ F.normalize(text_emb, dim=-1).T
