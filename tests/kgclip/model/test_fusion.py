import pytest
import torch
import torch.nn.functional as F

from kgclip.model.fusion import FusionEncoder, pack_views


def padded_reference(f: FusionEncoder, head, head_valid, relation, tail, tail_valid, use_head, use_relation, use_tail):
    """The computation before packing: every view at all 2L + 2 positions, masked keys, the same weights."""
    v = head.shape[0]
    uh, ur, ut = use_head[:, None, None], use_relation[:, None], use_tail[:, None, None]
    x = torch.cat([f.head_token.expand(v, 1, -1), torch.where(uh, head, 0.0) + f.role[0],
                   (torch.where(ur, relation, 0.0) + f.role[1]).unsqueeze(1), torch.where(ut, tail, 0.0) + f.role[2]], dim=1)
    ones = torch.ones(v, 1, dtype=torch.bool)
    key_ok = torch.cat([ones, head_valid & use_head[:, None], use_relation[:, None], tail_valid & use_tail[:, None]], dim=1)
    for blk in f.blocks:
        b, n, w = x.shape
        q, k, val = blk.qkv(blk.ln1(x)).view(b, n, 3, blk.heads, w // blk.heads).permute(2, 0, 3, 1, 4)
        scores = (q @ k.transpose(-1, -2)) / (w // blk.heads) ** 0.5
        a = scores.masked_fill(~key_ok[:, None, None, :], float("-inf")).softmax(-1) @ val

        def drop(y, p=blk.drop.p, training=blk.training):
            if not training or p == 0:
                return y
            return y * (torch.rand(y.shape[0], 1, 1, dtype=y.dtype) >= p) / (1 - p)

        x = x + drop(blk.out(a.transpose(1, 2).reshape(b, n, w)))
        x = x + drop(blk.mlp(blk.ln2(x)))
    x = f.ln(x)
    return x[:, 0], x[:, f.relation_position]


def _views(v=12, L=6, w=32, seed=0, full=False):
    g = torch.Generator().manual_seed(seed)
    head, tail, rel = torch.randn(v, L, w, generator=g), torch.randn(v, L, w, generator=g), torch.randn(v, w, generator=g)
    if full:
        hv = tv = torch.ones(v, L, dtype=torch.bool)
        flags = [torch.ones(v, dtype=torch.bool)] * 3
    else:
        hn, tn = torch.randint(0, L + 1, (v,), generator=g), torch.randint(1, L + 1, (v,), generator=g)
        hn[0] = 0  # a head with no valid token at all
        hv, tv = torch.arange(L) < hn[:, None], torch.arange(L) < tn[:, None]
        # the four kinds of view of a training step: (h, r, -), (-, -, t), (h, -, t), and all three
        kinds = torch.tensor([[1, 1, 0], [0, 0, 1], [1, 0, 1], [1, 1, 1]], dtype=torch.bool)[torch.arange(v) % 4]
        flags = list(kinds.T)
    return head, hv, rel, tail, tv, *flags


@pytest.mark.parametrize("layers", [1, 3])
def test_packed_equals_padded_reference_outputs_and_gradients(layers):
    torch.manual_seed(0)
    f = FusionEncoder(32, layers, 4, 0.0, 6).eval()
    views = _views()
    y, r = f(*views)
    y0, r0 = padded_reference(f, *views)
    assert y.shape == r.shape == (12, 32)
    torch.testing.assert_close(y, y0, atol=1e-5, rtol=1e-5)  # float32: equal up to rounding
    torch.testing.assert_close(r, r0, atol=1e-5, rtol=1e-5)
    # in float64 the two computations agree to 1e-10: the same function, gradients included
    f = f.double()
    args = [a.double().requires_grad_() if a.is_floating_point() else a for a in views]
    (y, r), (y0, r0) = f(*args), padded_reference(f, *args)
    w = torch.randn(2, 12, 32, dtype=torch.float64)
    grads = torch.autograd.grad((y * w[0]).sum() + (r * w[1]).sum(), [*f.parameters(), args[0], args[2], args[3]])
    ref = torch.autograd.grad((y0 * w[0]).sum() + (r0 * w[1]).sum(), [*f.parameters(), args[0], args[2], args[3]])
    torch.testing.assert_close(y, y0, atol=1e-10, rtol=1e-10)
    for a, b in zip(grads, ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-8)
    assert any(g.abs().sum() > 0 for g in grads[-3:])


def test_drop_path_draws_as_the_padded_computation():
    f = FusionEncoder(32, 3, 4, 0.5, 6).train()
    args = _views(seed=1)
    torch.manual_seed(7)
    y, r = f(*args)
    torch.manual_seed(7)
    y0, r0 = padded_reference(f, *args)
    torch.testing.assert_close(y, y0, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(r, r0, atol=1e-5, rtol=1e-5)
    torch.manual_seed(8)
    assert not torch.allclose(f(*args)[0], y)  # the draws do matter


def test_masked_content_changes_nothing():
    f = FusionEncoder(32, 2, 4, 0.0, 6).eval()
    head, hv, rel, tail, tv, uh, ur, ut = _views(seed=2)
    y, r = f(head, hv, rel, tail, tv, uh, ur, ut)
    junk = torch.randn_like(head) * 100
    head2 = torch.where(hv[..., None] & uh[:, None, None], head, junk)  # change only padding and masked heads
    rel2 = torch.where(ur[:, None], rel, torch.randn_like(rel))
    y2, r2 = f(head2, hv, rel2, tail, tv, uh, ur, ut)
    torch.testing.assert_close(y, y2, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(r, r2, atol=1e-6, rtol=1e-6)


def test_pack_layout_by_hand():
    # view 0: <head>, 1 head token, relation (query only), 2 tail tokens; view 1: <head>, relation only
    key_ok = torch.tensor([[1, 1, 0, 0, 1, 1, 0], [1, 0, 0, 1, 0, 0, 0]], dtype=torch.bool)
    keep, pk = pack_views(key_ok, (0, 3))
    assert keep.int().tolist() == [[1, 1, 0, 1, 1, 1, 0], [1, 0, 0, 1, 0, 0, 0]]
    assert pk.length == 5 and pk.view.tolist() == [0, 0, 0, 0, 0, 1, 1]
    assert pk.slot.tolist() == [0, 1, 2, 3, 4, 5, 6]
    assert pk.key_mask.view(2, 5).int().tolist() == [[1, 1, 0, 1, 1], [1, 1, 0, 0, 0]]
    assert pk.outputs.tolist() == [0, 5, 2, 6] and pk.relation_rank.tolist() == [2, 1]


def test_full_views_pass_no_mask(monkeypatch):
    seen = []
    sdpa = F.scaled_dot_product_attention

    def spy(q, k, v, attn_mask=None, **kw):
        seen.append(attn_mask)
        return sdpa(q, k, v, attn_mask=attn_mask, **kw)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    f = FusionEncoder(32, 2, 4, 0.0, 6).eval()
    args = _views(full=True)
    y, r = f(*args)
    assert seen == [None, None]
    y0, r0 = padded_reference(f, *args)
    torch.testing.assert_close(y, y0, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(r, r0, atol=1e-5, rtol=1e-5)
    f(*_views())
    assert seen[2] is not None and seen[2].dtype == torch.bool and seen[2].shape[1:3] == (1, 1)


def test_bf16_autocast_and_no_views():
    f = FusionEncoder(32, 2, 4, 0.1, 6).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, r = f(*_views())
    assert y.shape == (12, 32) and torch.isfinite(y.float()).all()
    y, r = f(*[a[:0] for a in _views()])
    assert y.shape == r.shape == (0, 32)
