"""CLIP towers from open_clip, with unpooled token outputs.

Models come from open_clip by name (``ViT-B-32``), with a pretrained tag (``openai``) or a local
checkpoint file, or from kgclip's own configs in ``kgclip/model_configs/*.json`` (registered with
open_clip's ``add_model_config`` when this module is imported).
"""

import logging
import pickle
import pickletools
import warnings
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
    if pretrained and Path(pretrained).is_file():
        check_weights_file(pretrained)
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


_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default (zip) format
_PICKLE_MAGIC = b"\x80"  # a pickle of protocol 2 or later (torch.save's legacy format, pickle.dump)


def check_weights_file(path: str | Path) -> None:
    """Fail in one line, naming the file, unless ``path`` holds CLIP weights that a weights-only load reads.

    The file is read as open_clip will read it, with ``torch.load(weights_only=True)`` (memory-mapped
    for torch's zip format, so the check costs little), or as safetensors; it must hold a mapping
    of names to tensors, or ``{"state_dict": mapping}``. Nothing in the file is ever unpickled as
    code.

    Raises:
        ConfigError: the file is empty, truncated, not a checkpoint, holds pickled Python objects,
            or holds something other than weights.
    """
    path = Path(path)
    where = f"model.pretrained {path}"
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read ({exc.strerror or exc})") from None
    if not head:
        raise ConfigError(f"{where}: the file is empty (0 bytes), not a CLIP checkpoint")
    if path.suffix == ".safetensors":
        try:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                if not list(f.keys()):
                    raise ConfigError(f"{where}: the safetensors file holds no tensors")
        except ConfigError:
            raise
        except Exception as exc:  # safetensors raises its own error types for a damaged header
            raise ConfigError(f"{where}: not a readable safetensors file ({_first_line(exc)})") from None
        return
    try:
        with warnings.catch_warnings():  # a plain pickle's protocol draws a warning before the refusal below
            warnings.simplefilter("ignore", UserWarning)
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=head == _ZIP_MAGIC)
    except pickle.UnpicklingError as exc:
        # torch's zip archive or a whole pickle stream: Python objects the weights-only unpickler
        # refuses; random bytes after a pickle header ("Unsupported operand 68") are no checkpoint at all
        if head == _ZIP_MAGIC or (head.startswith(_PICKLE_MAGIC) and _is_pickle_stream(path)):
            raise ConfigError(f"{where}: the file holds pickled Python objects, not only weights; kgclip loads weights only "
                              f"(torch.load weights_only=True): save the state dict, torch.save({{'state_dict': model.state_dict()}}, FILE) "
                              f"({_weights_only_reason(exc)})") from None
        raise ConfigError(f"{where}: not a PyTorch checkpoint (unreadable by torch.load)") from None
    except EOFError:
        raise ConfigError(f"{where}: the checkpoint is truncated (it ends early)") from None
    except RuntimeError as exc:  # torch's zip reader: a damaged or cut archive (its first sentence says so)
        raise ConfigError(f"{where}: not a PyTorch checkpoint or damaged ({_first_line(exc)})") from None
    except Exception:  # the unpickler's bare KeyError (101), IndexError, ValueError for bytes that are no checkpoint
        raise ConfigError(f"{where}: not a PyTorch checkpoint (unreadable by torch.load)") from None
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else obj
    if not isinstance(state, dict) or not state or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        found = type(state).__name__ + (" (empty)" if isinstance(state, dict) and not state else "")
        raise ConfigError(f"{where}: holds a {found}, not CLIP weights (a state dict of tensors, or {{'state_dict': state dict}})")


def _first_line(exc: BaseException) -> str:
    """The first sentence of an exception's message (torch's run on for several lines)."""
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__).split(". ")[0][:200]


def _is_pickle_stream(path: Path) -> bool:
    """Whether the file reads as one whole pickle stream (its opcodes only: nothing is run)."""
    try:
        with open(path, "rb") as f:
            for _ in pickletools.genops(f):
                pass
    except Exception:
        return False
    return True


def _weights_only_reason(exc: BaseException) -> str:
    """What the weights-only unpickler refused, on one line (its message names it after a preamble)."""
    text = str(exc)
    if "WeightsUnpickler error:" in text:
        return text.split("WeightsUnpickler error:", 1)[1].strip().splitlines()[0][:200]
    named = [line.strip() for line in text.splitlines() if "unsupported" in line.lower() or "blocked" in line]
    return (named[0] if named else _first_line(exc))[:200]


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
