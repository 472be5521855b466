import copy
import datetime
import math
import os
import socket
import time
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from kgclip.losses import (
    KnowledgeClipLoss,
    LossConfig,
    clip_pair_loss,
    e2e_loss,
    e2r_loss,
    found_negatives,
    g2e_loss,
    hard_negative_loss,
    info_nce,
    kd_loss,
)
from kgclip.model.knowledge_clip import EncodedEntities, KnowledgeOutput
from kgclip.model.optim import parameter_groups
from tests.model_fixtures import hand_batch


def test_info_nce_by_hand():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    k = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    scale = torch.tensor(2.0)
    # cos: row0 = [1, 1/sqrt2], row1 = [0, 1/sqrt2]; targets diagonal
    c = 1 / math.sqrt(2)
    l0 = -math.log(math.exp(2) / (math.exp(2) + math.exp(2 * c)))
    l1 = -math.log(math.exp(2 * c) / (math.exp(0) + math.exp(2 * c)))
    got = info_nce(q, k, scale, torch.eye(2, dtype=torch.bool))
    assert got.item() == pytest.approx((l0 + l1) / 2, rel=1e-6)
    # two positives in row 0: target spread 1/2, 1/2
    pos = torch.tensor([[True, True], [False, True]])
    p0 = torch.log_softmax(torch.tensor([2.0, 2 * c]), 0)
    want0 = -(0.5 * p0[0] + 0.5 * p0[1]).item()
    assert info_nce(q, k, scale, pos).item() == pytest.approx((want0 + l1) / 2, rel=1e-6)


def test_e2e_positives_are_same_tail(model, relation_tokens):
    from kgclip.losses import e2e_loss

    b = hand_batch(model)
    out = model(b, relation_tokens)
    scale = torch.tensor(10.0)
    got = e2e_loss(out, b, scale)
    q = out.y_t[out.tail_row]
    pos = b.tail[:, None] == b.tail[None, :]  # tails 1,2,1,2
    want = info_nce(q, out.y_hr, scale, pos)
    assert torch.allclose(got, want)
    logits = scale * F.normalize(q, dim=-1) @ F.normalize(out.y_hr, dim=-1).T
    by_hand = -0.5 * (logits.log_softmax(1)[0, 0] + logits.log_softmax(1)[0, 2])
    assert torch.allclose(-(pos[0].float() / 2 * logits.log_softmax(1)[0]).sum(), by_hand)


def test_e2r_is_cross_entropy(model, relation_tokens):
    b = hand_batch(model)
    out = model(b, relation_tokens)
    logits = out.relation_logits
    want = -torch.stack([logits.log_softmax(1)[i, r] for i, r in enumerate([0, 1, 2, 0])]).mean()
    assert torch.allclose(e2r_loss(out, b), want)


def test_clip_pair_loss_by_hand(model, relation_tokens):
    b = hand_batch(model)
    b.relation = torch.tensor([0, 2, 2, 0])  # relation 2 = "image of": triplets (0 -> 2) and (3 -> 1)
    out = model(b, relation_tokens)
    got = clip_pair_loss(out, b, torch.tensor([2]))
    emb = out.entities.embedding
    img, txt = emb[[0, 1]], emb[[2, 3]]  # pairs sorted by image: (0, 2), (1, 3)
    s = model.clip.logit_scale.exp()
    logits = s * F.normalize(img, dim=-1) @ F.normalize(txt, dim=-1).T
    want = (F.cross_entropy(logits, torch.arange(2)) + F.cross_entropy(logits.T, torch.arange(2))) / 2
    assert torch.allclose(got, want, atol=1e-6)


def test_kd_by_hand(model, relation_tokens):
    b = hand_batch(model)
    out = model(b, relation_tokens)
    teacher = copy.deepcopy(model.clip).eval()
    t_emb = torch.randn(5, 128)
    got = kd_loss(teacher.logit_scale.exp(), t_emb, out)
    s_log = model.clip.logit_scale.exp() * F.normalize(out.entities.embedding[[0, 1]], dim=-1) @ F.normalize(out.entities.embedding[[2, 3, 4]], dim=-1).T
    t_log = teacher.logit_scale.exp() * F.normalize(t_emb[[0, 1]], dim=-1) @ F.normalize(t_emb[[2, 3, 4]], dim=-1).T
    rows = -(t_log.softmax(1) * s_log.log_softmax(1)).sum(1).mean()
    cols = -(t_log.T.softmax(1) * s_log.T.log_softmax(1)).sum(1).mean()
    assert torch.allclose(got, (rows + cols) / 2, atol=1e-6)
    # identical student and teacher: the loss equals the teacher's entropy (its minimum)
    same = kd_loss(model.clip.logit_scale.exp(), out.entities.embedding.detach(), out)
    ent = -(s_log.softmax(1) * s_log.log_softmax(1)).sum(1).mean()
    ent_c = -(s_log.T.softmax(1) * s_log.T.log_softmax(1)).sum(1).mean()
    assert torch.allclose(same, (ent + ent_c) / 2, atol=1e-5)


def test_total_is_weighted_sum_and_parts_switch_off(model, relation_tokens):
    b = hand_batch(model)
    out = model(b, relation_tokens)
    loss = KnowledgeClipLoss(LossConfig(e2e=2.0, e2r=0.5, g2e=0.0, kd=0.0, clip=0.0), torch.tensor([2]))
    total, parts = loss(out, b)
    assert set(parts) == {"e2e", "e2r"}
    assert torch.allclose(total, 2 * parts["e2e"] + 0.5 * parts["e2r"])


def test_overfit_one_batch(model, relation_tokens):
    b = hand_batch(model)
    teacher = copy.deepcopy(model.clip).eval().requires_grad_(False)
    before = {n: p.clone() for n, p in teacher.named_parameters()}
    loss = KnowledgeClipLoss(LossConfig(), torch.tensor([2]))
    opt = torch.optim.AdamW(parameter_groups(model, 1e-4, 1e-3, 0.01))
    totals = []
    for _ in range(15):
        out = model(b, relation_tokens)
        with torch.no_grad():
            t_emb = teacher.encode_image(b.inputs.images), teacher.encode_text(b.inputs.texts)
            temb = torch.zeros(5, 128)
            temb[b.inputs.image_pos], temb[b.inputs.text_pos] = t_emb
        total, _ = loss(out, b, teacher.logit_scale.exp(), temb)
        opt.zero_grad()
        total.backward()
        opt.step()
        totals.append(total.item())
    assert totals[-1] < 0.6 * totals[0]
    for n, p in teacher.named_parameters():
        assert torch.equal(p, before[n]) and p.grad is None


def test_parameter_groups(model):
    groups = {g["name"]: g for g in parameter_groups(model, 1e-5, 1e-3, 0.1)}
    assert groups["towers"]["lr"] == 1e-5 and groups["new"]["lr"] == 1e-3
    no_decay_ids = {id(p) for g in groups.values() if g["weight_decay"] == 0 for p in g["params"]}
    assert id(model.e2e_logit_scale) in no_decay_ids and id(model.clip.token_embedding.weight) in no_decay_ids
    assert id(model.fusion.blocks[0].ln1.weight) in no_decay_ids and id(model.fusion.blocks[0].qkv.bias) in no_decay_ids
    assert id(model.fusion.blocks[0].qkv.weight) not in no_decay_ids
    n_all = sum(1 for p in model.parameters())
    assert sum(len(g["params"]) for g in groups.values()) == n_all


# -- collectives: every rank takes part, also one with nothing to compare -----------------------

W = 4


def _rank_output(rank: int) -> tuple[KnowledgeOutput, SimpleNamespace, dict[str, torch.Tensor]]:
    """Rank 0: 2 triplets (tails 10, 11), 2 tails with G2E rows. Rank 1: 1 triplet (tail 11), no G2E rows."""
    g = torch.Generator().manual_seed(100 + rank)
    n_t, n_b = (3, 2) if rank == 0 else (1, 1)
    leaves = {"y_t": torch.randn(n_t, W, generator=g).requires_grad_(), "y_hr": torch.randn(n_b, W, generator=g).requires_grad_(),
              "emb": torch.randn(n_t, 8, generator=g).requires_grad_()}
    g2e_row = torch.tensor([1, 2]) if rank == 0 else torch.empty(0, dtype=torch.long)
    g2e = leaves["y_t"][g2e_row] * 1.5 + 0.1
    none = torch.empty(0, dtype=torch.long)
    ent = EncodedEntities(torch.empty(n_t, 1, W), torch.ones(n_t, 1, dtype=torch.bool), leaves["emb"], none, none)
    out = KnowledgeOutput(y_hr=leaves["y_hr"], y_t=leaves["y_t"], y_t_pos=torch.arange(n_t), tail_row=torch.arange(n_b), r_ht=torch.empty(0, W),
                          relation_logits=torch.empty(0, 3), g2e=g2e, g2e_row=g2e_row, entities=ent, e2e_scale=torch.tensor(5.0),
                          g2e_scale=torch.tensor(5.0), clip_scale=torch.tensor(5.0))
    batch = SimpleNamespace(tail=torch.tensor([10, 11]) if rank == 0 else torch.tensor([11]))
    return out, batch, leaves


def _collective_rank(rank: int, world: int, port: int, folder: str) -> None:
    from kgclip.training.distributed import gather_with_grad

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=60))
    out, batch, leaves = _rank_output(rank)
    g2e = g2e_loss(out, batch, out.g2e_scale, gather_with_grad)
    e2e = e2e_loss(out, batch, out.e2e_scale, gather_with_grad)
    (g2e + e2e).backward()
    torch.save({"g2e": g2e.detach(), "e2e": e2e.detach(), **{k: v.grad for k, v in leaves.items()}}, os.path.join(folder, f"rank{rank}.pt"))
    torch.distributed.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_rank_without_g2e_rows_takes_part_in_the_gather(tmp_path):
    """Two gloo processes; rank 1 has no G2E rows. Before the fix it returned before the all-gather
    and rank 0 waited forever: the timeout turns such a hang into a failure."""
    ctx = torch.multiprocessing.spawn(_collective_rank, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=False)
    deadline = time.monotonic() + 150
    while not ctx.join(timeout=1):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail("the two ranks did not finish within 150 s: a collective is missing on one rank (hang)")
    got = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    # The same losses in one process: rank 0's G2E rows are all the keys; E2E keys are both ranks' (h, r).
    (o0, b0, l0), (o1, b1, l1) = _rank_output(0), _rank_output(1)
    g2e0 = info_nce(o0.y_t[o0.g2e_row], o0.g2e, o0.g2e_scale, torch.eye(2, dtype=torch.bool))
    keys, key_tails = torch.cat([o0.y_hr, o1.y_hr]), torch.tensor([10, 11, 11])
    e2e0 = info_nce(o0.y_t[o0.tail_row], keys, o0.e2e_scale, b0.tail[:, None] == key_tails[None, :])
    e2e1 = info_nce(o1.y_t[o1.tail_row], keys, o1.e2e_scale, b1.tail[:, None] == key_tails[None, :])
    assert torch.allclose(got[0]["g2e"], g2e0.detach(), atol=1e-6) and got[1]["g2e"].item() == 0.0
    assert torch.allclose(got[0]["e2e"], e2e0.detach(), atol=1e-6) and torch.allclose(got[1]["e2e"], e2e1.detach(), atol=1e-6)
    # Gradients: each rank's keys get the sum over ranks of the losses' gradients (the gather's backward).
    (g2e0 + e2e0 + e2e1).backward()
    for name in ("y_t", "y_hr"):
        assert torch.allclose(got[0][name], l0[name].grad, atol=1e-6), name
        assert torch.allclose(got[1][name], l1[name].grad, atol=1e-6), name


def test_parts_with_nothing_to_compare_are_zero_and_keep_the_graph():
    out, batch, leaves = _rank_output(1)  # no G2E rows
    assert g2e_loss(out, batch, out.g2e_scale).item() == 0.0
    empty = SimpleNamespace(tail=torch.empty(0, dtype=torch.long))
    out.tail_row, out.y_hr = torch.empty(0, dtype=torch.long), leaves["y_hr"][:0]
    loss = e2e_loss(out, empty, out.e2e_scale)
    assert loss.item() == 0.0
    loss.backward()  # connected to the graph: no error, zero gradients
    assert not leaves["emb"].grad.any()


# -- knowledge-derived hard negatives (loss.hard_negatives) --------------------------------------


def _hand_output(y_hr, y_t, tail_row, neg_y_hr=None, neg_tail_row=None, emb=None, scale=2.0):
    none = torch.empty(0, dtype=torch.long)
    emb = torch.zeros(len(y_t), 2) if emb is None else emb
    ent = EncodedEntities(torch.empty(len(emb), 1, 2), torch.ones(len(emb), 1, dtype=torch.bool), emb, none, none)
    return KnowledgeOutput(y_hr=y_hr, y_t=y_t, y_t_pos=torch.arange(len(y_t)), tail_row=tail_row, r_ht=torch.empty(0, 2),
                           relation_logits=torch.empty(0, 3), g2e=torch.empty(0, 2), g2e_row=none, entities=ent, e2e_scale=torch.tensor(scale),
                           g2e_scale=torch.tensor(scale), clip_scale=torch.tensor(scale), neg_y_hr=neg_y_hr, neg_tail_row=neg_tail_row)


def test_hard_negative_loss_by_hand():
    """Three triplets, K = 2. Row 0: two negatives; row 1: one (slot 1 is the triplet itself: none
    found); row 2: none at all (left out of the mean). Scale 2, score = 2 cos(Y(h,r,-), Y(-,-,t))."""
    y_hr = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    y_t = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    neg_y_hr = torch.tensor([[[0.0, 1.0], [1.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]], [[5.0, 1.0], [1.0, 5.0]]]).requires_grad_()
    out = _hand_output(y_hr, y_t, torch.tensor([0, 1, 0]), neg_y_hr, torch.tensor([[0, 2], [1, 1], [0, 0]]))
    batch = SimpleNamespace(head_index=torch.tensor([3, 4, 5]), relation=torch.tensor([0, 1, 2]), tail_index=torch.tensor([0, 1, 0]),
                            neg_head=torch.tensor([[4, 3], [3, 4], [5, 5]]), neg_relation=torch.tensor([[0, 1], [1, 1], [2, 2]]),
                            neg_tail=torch.tensor([[0, 2], [1, 1], [0, 0]]))
    # row 0: positive cos 1; negatives cos([0,1],[1,0]) = 0 and cos([1,1],[-1,0]) = -1/sqrt2
    l0 = -math.log(math.exp(2) / (math.exp(2) + math.exp(0) + math.exp(-2 / math.sqrt(2))))
    # row 1: positive cos 1; slot 0 cos([1,0],[0,1]) = 0; slot 1 (cos 1 if it counted) is none
    l1 = -math.log(math.exp(2) / (math.exp(2) + math.exp(0)))
    got = hard_negative_loss(out, batch, out.e2e_scale)
    assert got.item() == pytest.approx((l0 + l1) / 2, rel=1e-6)
    assert found_negatives(batch).tolist() == [[True, True], [True, False], [False, False]]
    got.backward()
    assert torch.isfinite(neg_y_hr.grad).all() and not neg_y_hr.grad[2].any() and not neg_y_hr.grad[1, 1].any()


def test_hard_negative_loss_with_nothing_found_is_zero_in_the_graph():
    y_hr = torch.tensor([[1.0, 0.0]])
    neg = torch.tensor([[[0.0, 1.0]]]).requires_grad_()
    out = _hand_output(y_hr, torch.tensor([[1.0, 0.0]]), torch.tensor([0]), neg, torch.tensor([[0]]))
    batch = SimpleNamespace(head_index=torch.tensor([1]), relation=torch.tensor([0]), tail_index=torch.tensor([0]),
                            neg_head=torch.tensor([[1]]), neg_relation=torch.tensor([[0]]), neg_tail=torch.tensor([[0]]))
    loss = hard_negative_loss(out, batch, out.e2e_scale)
    assert loss.item() == 0.0
    loss.backward()
    assert neg.grad is not None and not neg.grad.any()


def _caption_batch():
    """Images 0, 1; captions 2, 3; swapped texts 4, 5. Pairs (0 image-of 2) and (3 caption-of 1).
    Negatives: (0 r 4) a swapped caption of image 0; (0 r' 2) another relation (not a caption swap);
    (5 caption-of 1) a swapped caption of image 1; (3 caption-of 1) none found."""
    return SimpleNamespace(relation=torch.tensor([0, 1]), head_index=torch.tensor([0, 3]), tail_index=torch.tensor([2, 1]),
                           modality=torch.tensor([0, 0, 1, 1, 1, 1]), neg_head=torch.tensor([[0, 0], [5, 3]]),
                           neg_relation=torch.tensor([[0, 2], [1, 1]]), neg_tail=torch.tensor([[4, 2], [1, 1]]))


def test_clip_loss_takes_each_images_swapped_captions_as_its_own_extra_negatives():
    emb = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 1.0], [1.0, 0.0], [-1.0, 1.0]])
    out = _hand_output(torch.empty(0, 2), torch.empty(0, 2), torch.empty(0, dtype=torch.long), emb=emb, scale=3.0)
    batch, ids = _caption_batch(), torch.tensor([0, 1])
    c = 1 / math.sqrt(2)
    # image-text logits 3 cos: image 0 vs captions (2, 3) = (c, 0); image 1 = (c, 1)
    # extra: image 0 vs its swap 4 = 1; image 1 vs its swap 5 = c (image 1 never sees 4, image 0 never sees 5)
    li0 = -math.log(math.exp(3 * c) / (math.exp(3 * c) + math.exp(0) + math.exp(3)))
    li1 = -math.log(math.exp(3) / (math.exp(3 * c) + math.exp(3) + math.exp(3 * c)))
    lt0 = -math.log(math.exp(3 * c) / (math.exp(3 * c) + math.exp(3 * c)))  # caption 2 vs images (0, 1)
    lt1 = -math.log(math.exp(3) / (math.exp(0) + math.exp(3)))  # caption 3 vs images (0, 1)
    want = ((li0 + li1) / 2 + (lt0 + lt1) / 2) / 2
    assert clip_pair_loss(out, batch, ids, hard=True).item() == pytest.approx(want, rel=1e-6)
    plain = ((-math.log(math.exp(3 * c) / (math.exp(3 * c) + 1)) - math.log(math.exp(3) / (math.exp(3 * c) + math.exp(3)))) / 2 + (lt0 + lt1) / 2) / 2
    assert clip_pair_loss(out, batch, ids).item() == pytest.approx(plain, rel=1e-6)  # without hard: CLIP's loss as before


def test_hard_negatives_zero_is_todays_loss_and_k_adds_only_the_hard_terms(model, relation_tokens):
    """K = 0 (the default): the parts and the total are today's, even if a batch carries negatives.
    K > 0: E2E, E2R and G2E are unchanged; ``e2e_hard`` joins with E2E's weight."""
    model.eval()
    b = hand_batch(model)
    b.relation = torch.tensor([0, 2, 2, 0])  # two "image of" pairs: (0, 2) and (3 -> 1)
    pairs = torch.tensor([2])
    teacher_emb = torch.randn(5, 128, generator=torch.Generator().manual_seed(1))
    scale = model.clip.logit_scale.exp().detach()
    cfg = LossConfig(e2e=1.0, e2r=0.5, g2e=2.0, kd=0.3, clip=0.7)
    out = model(b, relation_tokens)
    total, parts = KnowledgeClipLoss(cfg, pairs)(out, b, scale, teacher_emb)
    assert set(parts) == {"e2e", "e2r", "g2e", "kd", "clip"}
    today = (e2e_loss(out, b, out.e2e_scale) + 0.5 * e2r_loss(out, b) + 2.0 * g2e_loss(out, b, out.g2e_scale)
             + 0.3 * kd_loss(scale, teacher_emb, out) + 0.7 * clip_pair_loss(out, b, pairs))
    assert torch.equal(total, today)
    # the same batch with negatives: (0 r1 4) swaps the caption of image 0; (1 r0 0) exchanges triplet 0
    neg = copy.copy(b)
    neg.neg_head, neg.neg_relation, neg.neg_tail = torch.tensor([[1], [0], [3], [4]]), torch.tensor([[0], [2], [2], [0]]), torch.tensor([[0], [4], [1], [2]])
    out_neg = model(neg, relation_tokens)
    total0, parts0 = KnowledgeClipLoss(cfg, pairs)(out_neg, neg, scale, teacher_emb)
    assert set(parts0) == set(parts) and torch.allclose(total0, total, atol=1e-6)
    total2, parts2 = KnowledgeClipLoss(LossConfig(**{**cfg.__dict__, "hard_negatives": 1}), pairs)(out_neg, neg, scale, teacher_emb)
    assert set(parts2) == set(parts) | {"e2e_hard"}
    for name in ("e2e", "e2r", "g2e", "kd"):
        assert torch.allclose(parts2[name], parts[name], atol=1e-6), name
    assert torch.allclose(parts2["e2e_hard"], hard_negative_loss(out_neg, neg, out_neg.e2e_scale))
    assert parts2["e2e_hard"] > 0 and not torch.allclose(parts2["clip"], parts["clip"])
    assert torch.allclose(total2, total - 0.7 * parts["clip"] + 0.7 * parts2["clip"] + parts2["e2e_hard"], atol=1e-5)


def test_negative_views_are_the_fusion_of_the_corrupted_triplet(model, relation_tokens):
    model.eval()
    b = hand_batch(model)
    b.neg_head, b.neg_relation, b.neg_tail = torch.tensor([[1], [0], [3], [2]]), torch.tensor([[0], [2], [2], [1]]), torch.tensor([[0], [4], [1], [4]])
    out = model(b, relation_tokens)
    ent = model.encode_entities(b.inputs, len(b.entities))
    rel = model.encode_relations(relation_tokens)
    h = b.neg_head.flatten()
    head = EncodedEntities(ent.tokens[h], ent.valid[h], ent.embedding[h], h[:0], h[:0])
    want, _ = model.fuse(head, rel[b.neg_relation.flatten()], None)
    assert out.neg_y_hr.shape == (4, 1, 32) and torch.allclose(out.neg_y_hr.flatten(0, 1), want, atol=1e-5)
    assert torch.equal(out.y_t_pos[out.neg_tail_row], b.neg_tail)


def test_hard_negatives_config_is_checked():
    from kgclip.config import from_dict
    from kgclip.errors import ConfigError

    assert from_dict(LossConfig, {"hard_negatives": 2}).hard_negatives == 2
    with pytest.raises(ConfigError, match="hard_negatives"):
        from_dict(LossConfig, {"hard_negatives": -1})
    with pytest.raises(ConfigError, match="hard_negatives"):
        from_dict(LossConfig, {"hard_negatives": 1.5})


@pytest.mark.parametrize("name", ["paper_vitb32.yaml", "paper_vitl14.yaml"])
def test_paper_configs_keep_the_papers_recipe(name):
    import yaml

    from kgclip.config import from_dict
    from kgclip.training import RunConfig

    path = os.path.join(os.path.dirname(__file__), "..", "..", "experiments", "configs", name)
    raw = yaml.safe_load(open(path))
    assert raw["loss"]["hard_negatives"] == 0  # said explicitly: the paper has no hard negatives
    assert from_dict(RunConfig, raw).loss.hard_negatives == 0
