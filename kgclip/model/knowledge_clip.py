"""Knowledge-CLIP: CLIP towers with token outputs + fusion encoder + E2R / G2E heads."""

import math
from dataclasses import asdict, dataclass
from typing import Annotated

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.profiler import record_function

from kgclip.config import Range
from kgclip.errors import ConfigError
from kgclip.model.clip import ClipBundle, create_clip, embed_dim, encode_image_tokens, encode_text_tokens, image_widths, text_width
from kgclip.model.fusion import FusionEncoder
from kgclip.model.heads import G2EGraphNetwork, RelationClassifier
from kgclip.sampling.content import EntityInputs
from kgclip.sampling.triplets import TripletBatch


@dataclass
class FusionConfig:
    """The fusion encoder and what enters it (the paper's values are the defaults).

    Attributes:
        fusion_width, fusion_layers, fusion_heads, drop_path: the fusion Transformer.
        max_text_tokens: text entities keep at most this many tokens (the first ones and always the
            end-of-text token, the only one that has seen the whole text).
        image_token_pool: the image tower's patch grid goes to the fusion encoder average-pooled
            in windows of this many patches a side (class token kept first; 1: every patch). A
            64-px image in 8-px patches gives 1 + 64 tokens, pooled by 2 1 + 16: the fusion
            encoder's cost falls with the square of its sequence. The grid must divide by it.
        max_image_tokens: image entities keep this many tokens (class token first, after pooling); None: all.
    """

    fusion_width: Annotated[int, Range(ge=1)] = 1024
    fusion_layers: Annotated[int, Range(ge=1)] = 4
    fusion_heads: Annotated[int, Range(ge=1)] = 16
    drop_path: Annotated[float, Range(ge=0, lt=1)] = 0.1
    max_text_tokens: Annotated[int, Range(ge=1)] = 32
    image_token_pool: Annotated[int, Range(ge=1)] = 1
    max_image_tokens: Annotated[int, Range(ge=1)] | None = None

    def __post_init__(self) -> None:
        check_fusion_heads(self.fusion_width, self.fusion_heads)


@dataclass
class ModelConfig(FusionConfig):
    """What the model is made of: the towers, the fusion encoder (:class:`FusionConfig`'s fields) and the heads.

    Attributes:
        clip_model: open_clip model name or kgclip config (``kgclip-tiny``, ``ViT-B-32``, ``ViT-L-14``).
        pretrained: open_clip pretrained tag (``openai``) or a checkpoint file; None: random init.
        gnn_layers: layers of the G2E network.
        init_temperature: initial temperature of the E2E and G2E InfoNCE losses.
    """

    clip_model: str = "kgclip-tiny"
    pretrained: str | None = None
    gnn_layers: Annotated[int, Range(ge=0)] = 1
    init_temperature: Annotated[float, Range(gt=0)] = 0.07


def pooled_token_count(tokens: int, pool: int, model_name: str = "") -> int:
    """Tokens (class token included) of an image tower with ``tokens`` after pooling its square
    patch grid in ``pool`` x ``pool`` windows; a ConfigError when the grid does not divide."""
    if pool == 1:
        return tokens
    tower = f"the {model_name or 'image'} tower"
    side = math.isqrt(max(tokens - 1, 0))
    if tokens < 2 or side * side != tokens - 1:
        raise ConfigError(f"model.image_token_pool {pool}: {tower}'s {tokens} tokens do not form a square patch grid after a class token, "
                          f"so its tokens cannot be pooled; set model.image_token_pool 1")
    if side % pool:
        raise ConfigError(f"model.image_token_pool {pool} does not divide {tower}'s {side} x {side} patch grid ({tokens - 1} patches)")
    return 1 + (side // pool) ** 2


def pool_image_tokens(tokens: Tensor, pool: int) -> Tensor:
    """[n, 1 + g * g, w] -> [n, 1 + (g / pool)^2, w]: the class token, then the patch grid average-pooled
    in ``pool`` x ``pool`` windows (row-major, as the tower lays patches out)."""
    if pool == 1:
        return tokens
    n, t, w = tokens.shape
    side = math.isqrt(t - 1)
    grid = tokens[:, 1:].transpose(1, 2).reshape(n, w, side, side)
    pooled = F.avg_pool2d(grid, pool).flatten(2).transpose(1, 2)
    return torch.cat([tokens[:, :1], pooled], dim=1)


def check_fusion_heads(width: int, heads: int, prefix: str = "model.") -> None:
    """A ConfigError unless the fusion width divides among the attention heads."""
    if isinstance(width, int) and isinstance(heads, int) and heads > 0 and width % heads:
        raise ConfigError(f"{prefix}fusion_width ({width}) must be a multiple of {prefix}fusion_heads ({heads})")


@dataclass
class EncodedEntities:
    """Each unique entity of a batch, encoded once.

    Attributes:
        tokens: [N, L, W] tokens at fusion width; valid: [N, L].
        embedding: [N, D] CLIP embedding (image or text space by modality).
        image_pos, text_pos: positions of image / text entities.
    """

    tokens: Tensor
    valid: Tensor
    embedding: Tensor
    image_pos: Tensor
    text_pos: Tensor


@dataclass
class KnowledgeOutput:
    """Everything the losses need from one step.

    Attributes:
        y_hr: [B, W] Y(h, r, -) per triplet.
        y_t: [U, W] Y(-, -, x) for each entity position in ``y_t_pos`` (tails and G2E nodes).
        tail_row: [B] row of each triplet's tail in ``y_t``.
        r_ht: [B, W] R(h, -, t) per triplet; relation_logits: [B, num_relations].
        g2e: [T, W] G^L of the batch's distinct tails that have sampled in-edges; g2e_row: [T]
            their rows in ``y_t``.
        entities: the encoded entities (CLIP embeddings for KD and the image-text loss).
        e2e_scale, g2e_scale, clip_scale: the exponentiated logit scales (computed inside forward so
            that DistributedDataParallel sees every parameter the losses use).
        neg_y_hr: [B, K, W] Y(h', r', -) of each triplet's corrupted negatives (``batch.neg_*``);
            neg_tail_row: [B, K] the row of each negative's tail in ``y_t``. None when the batch
            has no negatives.
    """

    y_hr: Tensor
    y_t: Tensor
    y_t_pos: Tensor
    tail_row: Tensor
    r_ht: Tensor
    relation_logits: Tensor
    g2e: Tensor
    g2e_row: Tensor
    entities: EncodedEntities
    e2e_scale: Tensor
    g2e_scale: Tensor
    clip_scale: Tensor
    neg_y_hr: Tensor | None = None
    neg_tail_row: Tensor | None = None


class KnowledgeCLIP(nn.Module):
    """The student: CLIP towers (trained at a low lr) and the new modules (trained at a high lr).

    Args:
        config: the model configuration.
        num_relations: size of the relation vocabulary (E2R classes).
        clip: an already created CLIP bundle (else created from the config).
    """

    def __init__(self, config: ModelConfig, num_relations: int, clip: ClipBundle | None = None) -> None:
        super().__init__()
        self.config = config
        self.num_relations = num_relations
        bundle = clip or create_clip(config.clip_model, config.pretrained)
        self.clip = bundle.model
        self.tokenizer, self.preprocess_train, self.preprocess_val = bundle.tokenizer, bundle.preprocess_train, bundle.preprocess_val
        w = config.fusion_width
        img_w, img_n = image_widths(self.clip)
        img_n = pooled_token_count(img_n, config.image_token_pool, config.clip_model)
        self.image_tokens = img_n if config.max_image_tokens is None else min(img_n, config.max_image_tokens)
        self.text_tokens = min(config.max_text_tokens, self.clip.context_length)
        self.entity_tokens = max(self.image_tokens, self.text_tokens)
        self.image_proj = nn.Linear(img_w, w)
        self.text_proj = nn.Linear(text_width(self.clip), w)
        self.relation_proj = nn.Linear(embed_dim(self.clip), w)
        self.fusion = FusionEncoder(w, config.fusion_layers, config.fusion_heads, config.drop_path, self.entity_tokens)
        self.relation_head = RelationClassifier(w, num_relations)
        self.gnn = G2EGraphNetwork(w, config.gnn_layers)
        init = torch.log(torch.tensor(1.0 / config.init_temperature))
        self.e2e_logit_scale = nn.Parameter(init.clone())
        self.g2e_logit_scale = nn.Parameter(init.clone())

    # -- parameter groups ---------------------------------------------------------------------
    def tower_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(f"clip.{n}", p) for n, p in self.clip.named_parameters()]

    def new_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(n, p) for n, p in self.named_parameters() if not n.startswith("clip.")]

    def config_dict(self) -> dict:
        return {"model": asdict(self.config), "num_relations": self.num_relations}

    # -- encoders -----------------------------------------------------------------------------
    def encode_entities(self, inputs: EntityInputs, count: int) -> EncodedEntities:
        """Encode each entity once: tokens at fusion width (padded to the entity length) and CLIP embeddings.

        Args:
            inputs: images and token ids of the entities, each with its row (``image_pos`` / ``text_pos``).
            count: how many rows come back; a row that ``inputs`` does not name stays empty (zero
                tokens, none valid, a zero embedding).
        """
        n = count
        dev = self.image_proj.weight.device
        L, W, D = self.entity_tokens, self.config.fusion_width, embed_dim(self.clip)
        tokens = torch.zeros(n, L, W, device=dev)
        valid = torch.zeros(n, L, dtype=torch.bool, device=dev)
        emb = torch.zeros(n, D, device=dev)
        if inputs.images.numel():
            tok, e = encode_image_tokens(self.clip, inputs.images)
            tok = self.image_proj(self.fusion_image_tokens(tok))
            tokens = tokens.index_put((inputs.image_pos,), F.pad(tok, (0, 0, 0, L - tok.shape[1])).to(tokens.dtype))
            valid[inputs.image_pos, : tok.shape[1]] = True
            emb = emb.index_put((inputs.image_pos,), e.to(emb.dtype))
        if inputs.texts.numel():
            tok, ok, e = encode_text_tokens(self.clip, inputs.texts, self.text_tokens)
            tok = self.text_proj(tok)
            tokens = tokens.index_put((inputs.text_pos,), F.pad(tok, (0, 0, 0, L - tok.shape[1])).to(tokens.dtype))
            valid = valid.index_put((inputs.text_pos,), F.pad(ok, (0, L - ok.shape[1])))
            emb = emb.index_put((inputs.text_pos,), e.to(emb.dtype))
        return EncodedEntities(tokens, valid, emb, inputs.image_pos, inputs.text_pos)

    def fusion_image_tokens(self, tokens: Tensor) -> Tensor:
        """The image tower's tokens [n, 1 + g * g, width] as the fusion encoder takes them: the
        patch grid pooled by ``image_token_pool`` and cut to ``max_image_tokens``."""
        return pool_image_tokens(tokens, self.config.image_token_pool)[:, : self.image_tokens]

    def encode_relations(self, relation_tokens: Tensor) -> Tensor:
        """The whole relation vocabulary, pooled by the text tower and projected: [R, W]."""
        return self.relation_proj(self.clip.encode_text(relation_tokens))

    # -- views --------------------------------------------------------------------------------
    def fuse(self, head: EncodedEntities | None, relation: Tensor | None, tail: EncodedEntities | None) -> tuple[Tensor, Tensor]:
        """Y and R of aligned views; None masks that element (e.g. ``fuse(h, r, None)`` is Y(h, r, -)).

        Args:
            head, tail: encoded entities, one row per view, or None.
            relation: [V, W] relation vectors (rows of :meth:`encode_relations`), or None.
        """
        given = next(x for x in (head, tail) if x is not None) if head is not None or tail is not None else None
        n = given.tokens.shape[0] if given is not None else relation.shape[0]
        dev = self.image_proj.weight.device
        L, W = self.entity_tokens, self.config.fusion_width
        z_tok, z_val = torch.zeros(n, L, W, device=dev), torch.zeros(n, L, dtype=torch.bool, device=dev)
        flags = [torch.full((n,), x is not None, dtype=torch.bool, device=dev) for x in (head, relation, tail)]
        return self.fusion(
            head.tokens if head is not None else z_tok, head.valid if head is not None else z_val,
            relation if relation is not None else torch.zeros(n, W, device=dev),
            tail.tokens if tail is not None else z_tok, tail.valid if tail is not None else z_val, *flags,
        )

    def forward(self, batch: TripletBatch, relation_tokens: Tensor, fusion: bool = True) -> KnowledgeOutput:
        """Encode the batch. With ``fusion=False`` (only tower losses are on: CLIP, KD) the fusion
        encoder and the heads are skipped and their outputs are empty."""
        with record_function("kgclip.encoders"):
            ent = self.encode_entities(batch.inputs, len(batch.entities))
        scales = {"e2e_scale": self.e2e_logit_scale.exp().clamp(max=100), "g2e_scale": self.g2e_logit_scale.exp().clamp(max=100),
                  "clip_scale": self.clip.logit_scale.exp().clamp(max=100)}
        if not fusion:
            w, dev = self.config.fusion_width, ent.tokens.device
            empty = torch.empty(0, w, device=dev)
            none = torch.empty(0, dtype=torch.long, device=dev)
            return KnowledgeOutput(y_hr=empty, y_t=empty, y_t_pos=none, tail_row=none, r_ht=empty,
                                   relation_logits=torch.empty(0, self.num_relations, device=dev), g2e=empty, g2e_row=none, entities=ent, **scales)
        with record_function("kgclip.encoders"):
            rel = self.encode_relations(relation_tokens)
        b = len(batch)
        ei = batch.g2e_edge_index
        # Negatives (h', r', t') add the views Y(h', r', -), and their tails join the tail role.
        has_neg = batch.neg_head is not None
        neg_h = batch.neg_head.flatten() if has_neg else batch.head_index[:0]
        neg_r = batch.neg_relation.flatten().to(neg_h.device) if has_neg else batch.relation[:0].to(neg_h.device)
        neg_t = batch.neg_tail.flatten() if has_neg else batch.tail_index[:0]
        # Entities needed in the tail role: the batch's tails, every G2E node and the negatives' tails, each once.
        y_t_pos, inv = torch.unique(torch.cat([batch.tail_index, ei.flatten(), neg_t]), return_inverse=True)
        tail_row, edge_rows, neg_tail_row = inv[:b], inv[b : b + 2 * ei.shape[1]].view(2, -1), inv[b + 2 * ei.shape[1] :]
        zero = torch.zeros_like
        n_hr, n_t, n_ht, n_e, n_neg = b, y_t_pos.numel(), b, ei.shape[1], neg_h.numel()
        # One fusion call for all kinds of view, packed by concatenation (no loop over triplets).
        heads = torch.cat([batch.head_index, zero(y_t_pos), batch.head_index, ei[0], neg_h])
        tails = torch.cat([zero(batch.tail_index), y_t_pos, batch.tail_index, ei[1], zero(neg_h)])
        rels = torch.cat([batch.relation.to(heads.device), zero(y_t_pos), zero(batch.relation).to(heads.device), zero(ei[0]), neg_r])
        dev = heads.device
        use_h = torch.cat([torch.ones(n_hr, dtype=torch.bool, device=dev), torch.zeros(n_t, dtype=torch.bool, device=dev),
                           torch.ones(n_ht + n_e + n_neg, dtype=torch.bool, device=dev)])
        use_r = torch.cat([torch.ones(n_hr, dtype=torch.bool, device=dev), torch.zeros(n_t + n_ht + n_e, dtype=torch.bool, device=dev),
                           torch.ones(n_neg, dtype=torch.bool, device=dev)])
        use_t = torch.cat([torch.zeros(n_hr, dtype=torch.bool, device=dev), torch.ones(n_t + n_ht + n_e, dtype=torch.bool, device=dev),
                           torch.zeros(n_neg, dtype=torch.bool, device=dev)])
        with record_function("kgclip.fusion"):
            y, r = self.fusion(ent.tokens[heads], ent.valid[heads], rel[rels], ent.tokens[tails], ent.valid[tails], use_h, use_r, use_t)
        y_hr, y_t = y[:n_hr], y[n_hr : n_hr + n_t]
        r_ht, r_edge = r[n_hr + n_t : n_hr + n_t + n_ht], r[n_hr + n_t + n_ht : n_hr + n_t + n_ht + n_e]
        negs = {}
        if has_neg:
            k = batch.neg_head.shape[1]
            negs = {"neg_y_hr": y[n_hr + n_t + n_ht + n_e :].view(b, k, -1), "neg_tail_row": neg_tail_row.view(b, k)}
        with record_function("kgclip.gnn"):
            g = self.gnn(y_t, edge_rows, r_edge) if n_e else y_t
        tails_with_in = torch.unique(edge_rows[1][batch.g2e_hop.to(dev) == 1]) if n_e else torch.empty(0, dtype=torch.long, device=dev)
        return KnowledgeOutput(
            y_hr=y_hr, y_t=y_t, y_t_pos=y_t_pos, tail_row=tail_row, r_ht=r_ht,
            relation_logits=self.relation_head(r_ht), g2e=g[tails_with_in], g2e_row=tails_with_in, entities=ent, **scales, **negs,
        )
