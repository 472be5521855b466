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

from kgclip.losses import KnowledgeClipLoss, LossConfig, clip_pair_loss, e2e_loss, e2r_loss, g2e_loss, info_nce, kd_loss
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
