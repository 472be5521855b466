import copy
import math

import pytest
import torch
import torch.nn.functional as F

from kgclip.losses import KnowledgeClipLoss, LossConfig, clip_pair_loss, e2r_loss, info_nce, kd_loss
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
