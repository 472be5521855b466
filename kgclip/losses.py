"""Knowledge-CLIP's objectives: E2E, E2R, G2E, KD and the CLIP image-text loss, each weighted.

Every part is returned for logging; the total is their weighted sum. Contrastive parts accept a
``gather`` function (see :mod:`kgclip.training.distributed`) so that on several ranks the global
batch is the set of negatives, with gradients flowing through the gathered features (open_clip's
local loss + gather-with-grad).
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from kgclip.config import Range
from kgclip.model.clip import clip_logits
from kgclip.model.knowledge_clip import KnowledgeOutput
from kgclip.sampling.triplets import TripletBatch
from kgclip.typing import IMAGE, TEXT
from kgclip.vocabulary import PAIR_RELATIONS

Gather = Callable[[Tensor], tuple[Tensor, int]]
"""local tensor -> (concatenation over ranks, offset of this rank's rows)."""


def _local(x: Tensor) -> tuple[Tensor, int]:
    return x, 0


@dataclass
class LossConfig:
    """Weights (0 turns a part off) and the KD form.

    Attributes:
        e2e, e2r, g2e, kd, clip: weights of each part (paper: equal weights).
        kd_mode: ``"logits"`` (open_clip's DistillClipLoss: soft cross-entropy from the teacher's to
            the student's image-text logits) or ``"features"`` (KL between the teacher's and the
            student's feature distributions over the embedding dimension).
        kd_temperature: temperature of the ``"features"`` mode.
        pair_relations: relations (keys or texts, see :func:`kgclip.vocabulary.relation_ids`) whose
            triplets are image-caption pairs for the CLIP loss.
        hard_negatives: knowledge-derived corruptions per triplet (see
            :mod:`kgclip.sampling.negatives`); 0: none, the paper's recipe. With K > 0 the E2E
            objective adds ``e2e_hard`` (:func:`hard_negative_loss`, weighted by ``e2e``) and the
            CLIP loss gets each image's swapped captions as extra negatives (:func:`clip_pair_loss`).
    """

    e2e: Annotated[float, Range(ge=0)] = 1.0
    e2r: Annotated[float, Range(ge=0)] = 1.0
    g2e: Annotated[float, Range(ge=0)] = 1.0
    kd: Annotated[float, Range(ge=0)] = 1.0
    clip: Annotated[float, Range(ge=0)] = 1.0
    kd_mode: Literal["logits", "features"] = "logits"
    kd_temperature: Annotated[float, Range(gt=0)] = 0.1
    pair_relations: tuple[str, ...] = PAIR_RELATIONS
    hard_negatives: Annotated[int, Range(ge=0)] = 0


def _zero(out: KnowledgeOutput) -> Tensor:
    """A zero that keeps the graph connected (a part with nothing to compare this step)."""
    return out.entities.embedding.sum() * 0.0


def info_nce(query: Tensor, keys: Tensor, logit_scale: Tensor, positives: Tensor) -> Tensor:
    """InfoNCE of each query against all keys by cosine similarity times ``logit_scale``.

    Args:
        query: [Q, W]; keys: [K, W].
        positives: [Q, K] bool; a row may have several positives (same entity twice in a batch):
            its target is spread evenly over them.
    """
    logits = logit_scale * F.normalize(query, dim=-1) @ F.normalize(keys, dim=-1).T
    target = positives.float() / positives.float().sum(1, keepdim=True).clamp(min=1)
    return -(target * F.log_softmax(logits, dim=-1)).sum(1).mean()


def e2e_loss(out: KnowledgeOutput, batch: TripletBatch, scale: Tensor, gather: Gather = _local) -> Tensor:
    """Y(-,-,t_i) against Y(h_j, r_j, -) of the (global) batch; every j with t_j = t_i is a positive.

    Every rank gathers, even one with no triplets (a collective that one rank skips hangs the others).
    """
    keys, _ = gather(out.y_hr)
    key_tails, _ = gather(batch.tail.to(keys.device))
    if out.tail_row.numel() == 0:  # nothing to ask on this rank; stay in the graph (backward is a collective too)
        return _zero(out) + keys.sum() * 0.0
    query = out.y_t[out.tail_row]
    positives = batch.tail.to(keys.device)[:, None] == key_tails[None, :]
    return info_nce(query, keys, scale, positives)


def found_negatives(batch: TripletBatch) -> Tensor:
    """[B, K] which of the batch's negatives were found (a negative equal to its triplet holds the place of none)."""
    dev = batch.neg_head.device
    same = ((batch.neg_head == batch.head_index.to(dev)[:, None]) & (batch.neg_relation.to(dev) == batch.relation.to(dev)[:, None])
            & (batch.neg_tail == batch.tail_index.to(dev)[:, None]))
    return ~same


def hard_negative_loss(out: KnowledgeOutput, batch: TripletBatch, scale: Tensor) -> Tensor:
    """Each triplet against its own corruptions, scored by E2E's rule s(h, r, t) = scale * cos(Y(h, r, -), Y(-, -, t)).

    The cross-entropy of the true triplet among itself and its found negatives, averaged over the
    triplets that have one: for a negative (h', r', t') the query Y(h', r', -) must not find t'
    as well as Y(h, r, -) finds t (e.g. the exchanged (t, r, h): Y(t, r, -) must not find h).
    """
    if out.neg_y_hr is None or out.tail_row.numel() == 0:
        return _zero(out)
    found = found_negatives(batch).to(out.neg_y_hr.device)
    rows = found.any(1)
    if not bool(rows.any()):
        return _zero(out) + out.neg_y_hr.sum() * 0.0
    pos = scale * (F.normalize(out.y_hr, dim=-1) * F.normalize(out.y_t[out.tail_row], dim=-1)).sum(-1)
    neg = scale * (F.normalize(out.neg_y_hr, dim=-1) * F.normalize(out.y_t[out.neg_tail_row], dim=-1)).sum(-1)
    logits = torch.cat([pos[:, None], neg.masked_fill(~found, float("-inf"))], 1)[rows]
    return -F.log_softmax(logits, dim=1)[:, 0].mean()


def e2r_loss(out: KnowledgeOutput, batch: TripletBatch) -> Tensor:
    if out.relation_logits.shape[0] == 0:
        return _zero(out)
    return F.cross_entropy(out.relation_logits, batch.relation.to(out.relation_logits.device))


def g2e_loss(out: KnowledgeOutput, batch: TripletBatch, scale: Tensor, gather: Gather = _local) -> Tensor:
    """Y(-,-,t_i) against G^L(t_j) over the (global) batch's tails that have sampled in-edges.

    Every rank gathers, also one whose batch has no G2E rows: it contributes no keys and no
    queries, and its loss still depends on the gathered keys (times zero) so that the backward
    collective of the gather runs on every rank.
    """
    keys, offset = gather(out.g2e)
    n = out.g2e_row.numel()
    if n == 0 or keys.shape[0] == 0:
        return _zero(out) + keys.sum() * 0.0
    query = out.y_t[out.g2e_row]
    if keys.shape[0] == n:
        positives = torch.eye(n, dtype=torch.bool, device=keys.device)
    else:  # ranks may have different counts: gather pads; positives are this rank's own rows
        positives = torch.zeros(n, keys.shape[0], dtype=torch.bool, device=keys.device)
        positives[torch.arange(n), offset + torch.arange(n)] = True
    return info_nce(query, keys, scale, positives)


def _pairs(batch: TripletBatch, pair_relation_ids: Tensor) -> tuple[Tensor, Tensor]:
    """(image position, text position) of the batch's image-caption pair triplets, each pair once."""
    is_pair = torch.isin(batch.relation, pair_relation_ids.to(batch.relation.device))
    h, t = batch.head_index[is_pair], batch.tail_index[is_pair]
    img_first = batch.modality[h] == IMAGE
    img = torch.where(img_first, h, t)
    txt = torch.where(img_first, t, h)
    ok = batch.modality[img] != batch.modality[txt]
    pairs = torch.unique(torch.stack([img[ok], txt[ok]]), dim=1)
    return pairs[0], pairs[1]


def _swapped_captions(batch: TripletBatch, pair_relation_ids: Tensor) -> tuple[Tensor, Tensor]:
    """(image position, text position) of the found negatives of the batch's pair triplets that keep
    the image and the relation and put another text in the caption's place, each pair once."""
    ids = pair_relation_ids.to(batch.relation.device)
    is_pair = torch.isin(batch.relation, ids)
    h, r, t = batch.head_index[is_pair, None], batch.relation[is_pair, None], batch.tail_index[is_pair, None]
    nh, nr, nt = batch.neg_head[is_pair], batch.neg_relation[is_pair].to(r.device), batch.neg_tail[is_pair]
    img_first = batch.modality[h] == IMAGE
    img, txt = torch.where(img_first, h, t), torch.where(img_first, t, h)
    kept = torch.where(img_first, nh == h, nt == t) & (nr == r)
    other = torch.where(img_first, nt, nh)
    ok = (kept & (other != txt) & (batch.modality[img] == IMAGE) & (batch.modality[txt] == TEXT) & (batch.modality[other] == TEXT)
          & found_negatives(batch)[is_pair])
    pairs = torch.unique(torch.stack([img.expand_as(other)[ok], other[ok]]), dim=1)
    return pairs[0], pairs[1]


def clip_pair_loss(out: KnowledgeOutput, batch: TripletBatch, pair_relation_ids: Tensor, hard: bool = False) -> Tensor:
    """CLIP's symmetric image-text loss over the batch's "image of" / "caption of" pairs.

    With ``hard`` (and negatives in the batch), each image's swapped captions (negatives of its
    pair triplets that keep the image and put another text in the caption's place, e.g. the
    caption with its words reordered) are extra negatives of that image alone in the image-to-text
    direction (NegCLIP's extra columns); the text-to-image direction is unchanged.
    """
    img, txt = _pairs(batch, pair_relation_ids)
    if img.numel() < 2:
        return _zero(out)
    emb = out.entities.embedding
    logits = clip_logits(out.clip_scale, emb[img], emb[txt])
    # (image k, caption l) is a true pair when l's image is k's image or l's caption is k's caption.
    positives = (img[:, None] == img[None, :]) | (txt[:, None] == txt[None, :])
    target = positives.float() / positives.float().sum(1, keepdim=True)
    rows = logits
    if hard and batch.neg_head is not None:
        h_img, h_txt = _swapped_captions(batch, pair_relation_ids)
        if h_img.numel():
            extra = clip_logits(out.clip_scale, emb[img], emb[h_txt]).masked_fill(img[:, None] != h_img[None, :], float("-inf"))
            rows = torch.cat([logits, extra], 1)
    li = -(target * F.log_softmax(rows, 1)[:, : logits.shape[1]]).sum(1).mean()
    lt = -(target.T / target.T.sum(1, keepdim=True) * F.log_softmax(logits.T, 1)).sum(1).mean()
    return (li + lt) / 2


def kd_loss(teacher_scale: Tensor, teacher_emb: Tensor, out: KnowledgeOutput, mode: str = "logits", temperature: float = 0.1) -> Tensor:
    """Knowledge distillation from the frozen teacher over the batch's image and text entities.

    ``logits``: soft cross-entropy from the teacher's image-text logits to the student's, both
    directions (open_clip's DistillClipLoss). ``features``: KL(teacher || student) of the
    softmax over the embedding dimension of each entity's normalised feature.
    """
    emb = out.entities.embedding
    ip, tp = out.entities.image_pos, out.entities.text_pos
    if mode == "features":
        s = F.log_softmax(F.normalize(emb, dim=-1) / temperature, dim=-1)
        t = F.log_softmax(F.normalize(teacher_emb, dim=-1) / temperature, dim=-1)
        return F.kl_div(s, t, log_target=True, reduction="batchmean")
    if ip.numel() == 0 or tp.numel() == 0:
        return _zero(out)
    student = clip_logits(out.clip_scale, emb[ip], emb[tp])
    with torch.no_grad():
        teacher = clip_logits(teacher_scale, teacher_emb[ip], teacher_emb[tp])
    rows = -(teacher.softmax(1) * student.log_softmax(1)).sum(1).mean()
    cols = -(teacher.T.softmax(1) * student.T.log_softmax(1)).sum(1).mean()
    return (rows + cols) / 2


class KnowledgeClipLoss:
    """The weighted sum of the switched-on parts; ``__call__`` returns (total, parts)."""

    def __init__(self, config: LossConfig, pair_relation_ids: Tensor) -> None:
        self.config = config
        self.pair_relation_ids = pair_relation_ids

    def __call__(self, out: KnowledgeOutput, batch: TripletBatch, teacher_scale: Tensor | None = None, teacher_emb: Tensor | None = None,
                 gather: Gather = _local) -> tuple[Tensor, dict[str, Tensor]]:
        """Total and parts. KD runs when its weight is set and the teacher's scale and embeddings are given."""
        c = self.config
        if not any((c.e2e, c.e2r, c.g2e, c.kd, c.clip)):
            from kgclip.errors import ConfigError

            raise ConfigError("every loss part has weight 0: nothing to train")
        parts: dict[str, Tensor] = {}
        hard = bool(c.hard_negatives) and batch.neg_head is not None
        if c.e2e:
            parts["e2e"] = e2e_loss(out, batch, out.e2e_scale, gather)
            if hard:
                parts["e2e_hard"] = hard_negative_loss(out, batch, out.e2e_scale)
        if c.e2r:
            parts["e2r"] = e2r_loss(out, batch)
        if c.g2e:
            parts["g2e"] = g2e_loss(out, batch, out.g2e_scale, gather)
        if c.kd and teacher_scale is not None and teacher_emb is not None:
            parts["kd"] = kd_loss(teacher_scale, teacher_emb, out, c.kd_mode, c.kd_temperature)
        if c.clip:
            parts["clip"] = clip_pair_loss(out, batch, self.pair_relation_ids, hard)
        weights = {"e2e": c.e2e, "e2e_hard": c.e2e, "e2r": c.e2r, "g2e": c.g2e, "kd": c.kd, "clip": c.clip}
        total = sum(weights[k] * v for k, v in parts.items())
        return total, parts
