"""Fine-tuning models: the fusion encoder with a head, the towers for retrieval, heads on one tower.

Each model names its parameters as :func:`kgclip.model.optim.parameter_groups` expects:
``tower_parameters()`` (CLIP tower weights, trained at ``optim.tower_lr``) and
``new_parameters()`` (fusion encoder, projections and heads, at ``optim.new_lr``). Parameters a
model never uses are frozen, so that DDP has nothing to wait for and the optimizer skips them.
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kgclip.model.clip import embed_dim, encode_image_tokens, encode_text_tokens
from kgclip.model.knowledge_clip import KnowledgeCLIP


def mlp_head(width: int, outputs: int, hidden: int = 2) -> nn.Module:
    """``Linear -> GELU -> LayerNorm -> Linear`` with ``hidden * width`` units (as VQA heads are
    usually made), or one ``Linear`` when ``hidden`` is 0."""
    if hidden <= 0:
        return nn.Linear(width, outputs)
    h = hidden * width
    return nn.Sequential(nn.Linear(width, h), nn.GELU(), nn.LayerNorm(h), nn.Linear(h, outputs))


def _freeze(*items) -> None:
    for x in items:
        if isinstance(x, nn.Module):
            x.requires_grad_(False)
        elif isinstance(x, nn.Parameter):
            x.requires_grad_(False)


def _clip_named(clip: nn.Module, prefix: str) -> list[tuple[str, nn.Parameter]]:
    return [(f"{prefix}{n}", p) for n, p in clip.named_parameters()]


class FusionClassifier(nn.Module):
    """VQA / SNLI-VE: the fusion Transformer over ``[<head>; image tokens; text tokens]`` and an MLP
    on the ``<head>`` output.

    The image takes the head-entity slot and the question (or hypothesis) the tail-entity slot of
    the Knowledge-CLIP input ``[<head>; x_h + PE_h; xbar_r + PE_r; x_t + PE_t]``, with the relation
    masked: the same view as Y(h, -, t) in knowledge training.

    Args:
        backbone: towers, token projections and fusion encoder (trained or fresh).
        num_outputs: answers (VQA) or classes (SNLI-VE).
        hidden: the head's hidden width as a multiple of the fusion width.
    """

    def __init__(self, backbone: KnowledgeCLIP, num_outputs: int, hidden: int = 2) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = mlp_head(backbone.config.fusion_width, num_outputs, hidden)
        c = backbone.clip
        # Unused here: the pooled CLIP embeddings, the temperatures, the relation and G2E heads.
        _freeze(backbone.relation_proj, backbone.relation_head, backbone.gnn, backbone.e2e_logit_scale, backbone.g2e_logit_scale,
                c.logit_scale, getattr(c, "logit_bias", None), c.visual.proj, c.text_projection)

    def tower_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return _clip_named(self.backbone.clip, "backbone.clip.")

    def new_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(n, p) for n, p in self.named_parameters() if not n.startswith("backbone.clip.")]

    def encode(self, images: Tensor, texts: Tensor, pad: bool = False) -> Tensor:
        """The fusion encoder's <head> output [B, width] for images [B, 3, H, W] and token ids [B, context].

        Padding tokens are never attended to, so the image and text sequences go in at their own
        lengths (``pad=True`` pads both to the entity length, as knowledge training lays them out:
        the same output, more work).
        """
        bb = self.backbone
        n = images.shape[0]
        tok, _ = encode_image_tokens(bb.clip, images)
        img = bb.image_proj(bb.fusion_image_tokens(tok))
        ttok, t_ok, _ = encode_text_tokens(bb.clip, texts, bb.text_tokens)
        txt = bb.text_proj(ttok).to(img.dtype)
        i_ok = torch.ones(n, img.shape[1], dtype=torch.bool, device=img.device)
        if pad:
            length = bb.entity_tokens
            img, i_ok = F.pad(img, (0, 0, 0, length - img.shape[1])), F.pad(i_ok, (0, length - i_ok.shape[1]))
            txt, t_ok = F.pad(txt, (0, 0, 0, length - txt.shape[1])), F.pad(t_ok, (0, length - t_ok.shape[1]))
        yes = torch.ones(n, dtype=torch.bool, device=img.device)
        relation = torch.zeros(n, img.shape[-1], dtype=img.dtype, device=img.device)
        y, _ = bb.fusion(img, i_ok, relation, txt, t_ok, yes, ~yes, yes)
        return y

    def forward(self, images: Tensor, texts: Tensor) -> Tensor:
        """Logits [B, num_outputs] for images [B, 3, H, W] and token ids [B, context]."""
        return self.head(self.encode(images, texts))


class DualEncoder(nn.Module):
    """Retrieval: the two towers, their CLIP embeddings and temperature."""

    def __init__(self, clip: nn.Module) -> None:
        super().__init__()
        self.clip = clip
        _freeze(getattr(clip, "logit_bias", None))

    def tower_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return _clip_named(self.clip, "clip.")

    def new_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return []

    def encode_images(self, images: Tensor) -> Tensor:
        return F.normalize(self.clip.encode_image(images), dim=-1)

    def encode_texts(self, texts: Tensor) -> Tensor:
        return F.normalize(self.clip.encode_text(texts), dim=-1)

    def forward(self, images: Tensor, texts: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Normalised image and text embeddings and the logit scale (exp, clamped at 100)."""
        return self.encode_images(images), self.encode_texts(texts), self.clip.logit_scale.exp().clamp(max=100)


class ImageClassifier(nn.Module):
    """A head on the image tower's CLIP embedding; ``linear`` freezes the tower (a linear probe),
    ``full`` trains it too."""

    def __init__(self, clip: nn.Module, num_classes: int, mode: str = "linear", hidden: int = 0) -> None:
        super().__init__()
        self.visual, self.mode = clip.visual, mode
        self.head = mlp_head(embed_dim(clip), num_classes, hidden)
        if mode == "linear":
            _freeze(self.visual)

    def tower_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(f"visual.{n}", p) for n, p in self.visual.named_parameters()]

    def new_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(f"head.{n}", p) for n, p in self.head.named_parameters()]

    def forward(self, images: Tensor) -> Tensor:
        if self.mode == "linear":
            with torch.no_grad():
                self.visual.eval()
                feats = self.visual(images)
        else:
            feats = self.visual(images)
        return self.head(feats)


class TextClassifier(nn.Module):
    """GLUE: a head on the text tower's pooled CLIP embedding (the image tower is frozen and unused)."""

    def __init__(self, clip: nn.Module, num_outputs: int, hidden: int = 2) -> None:
        super().__init__()
        self.clip = clip
        self.head = mlp_head(embed_dim(clip), num_outputs, hidden)
        _freeze(clip.visual, clip.logit_scale, getattr(clip, "logit_bias", None))

    def tower_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return _clip_named(self.clip, "clip.")

    def new_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(f"head.{n}", p) for n, p in self.head.named_parameters()]

    def forward(self, texts: Tensor) -> Tensor:
        return self.head(self.clip.encode_text(texts))
