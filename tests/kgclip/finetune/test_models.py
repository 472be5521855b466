import torch

from kgclip.finetune.init import load_backbone
from kgclip.finetune.models import DualEncoder, FusionClassifier, ImageClassifier, TextClassifier
from kgclip.model.optim import parameter_groups

FUSION = {"fusion_width": 16, "fusion_layers": 1, "fusion_heads": 2, "drop_path": 0.0, "max_text_tokens": 8}


def _inputs(bb, n=3):
    return torch.rand(n, 3, 64, 64, generator=torch.Generator().manual_seed(0)), bb.model.tokenizer(["what is it?", "a red one", "no"][:n])


def test_fusion_classifier_sees_image_and_text():
    bb = load_backbone("kgclip-tiny", FUSION)
    m = FusionClassifier(bb.model, 5).eval()
    images, texts = _inputs(bb)
    out = m(images, texts)
    assert out.shape == (3, 5)
    other_text = bb.model.tokenizer(["something else entirely"] * 3)
    assert not torch.allclose(out, m(images, other_text))
    assert not torch.allclose(out, m(images.flip(0), texts))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the GPU path (bf16 autocast) runs too
        assert m(images, texts).shape == (3, 5)


def test_unpadded_sequences_give_the_padded_layouts_output():
    bb = load_backbone("kgclip-tiny", {**FUSION, "max_text_tokens": 4})
    m = FusionClassifier(bb.model, 5).eval()
    images, texts = _inputs(bb)
    assert bb.model.entity_tokens == 17  # 16 patches + class token; texts are 4
    assert torch.allclose(m.encode(images, texts), m.encode(images, texts, pad=True), atol=1e-5)


def test_fusion_classifier_trains_what_it_uses_and_freezes_the_rest():
    bb = load_backbone("kgclip-tiny", FUSION)
    m = FusionClassifier(bb.model, 4)
    images, texts = _inputs(bb)
    m(images, texts).sum().backward()
    trainable = {n for n, p in m.named_parameters() if p.requires_grad}
    no_grad = {n for n, p in m.named_parameters() if p.requires_grad and p.grad is None}
    assert not no_grad, no_grad
    assert "backbone.fusion.head_token" in trainable and "head.0.weight" in trainable
    assert not any(n.startswith(("backbone.gnn", "backbone.relation_head")) for n in trainable)
    groups = {g["name"]: g for g in parameter_groups(m, 1e-5, 1e-4, 0.1)}
    tower_ids = {id(p) for _, p in m.tower_parameters()}
    assert all(id(p) in tower_ids for p in groups["towers"]["params"])
    assert groups["new"]["lr"] == 1e-4 and groups["towers"]["lr"] == 1e-5


def test_linear_probe_freezes_the_tower_full_trains_it():
    bb = load_backbone("kgclip-tiny", FUSION)
    lin = ImageClassifier(bb.model.clip, 3, "linear")
    assert not any(p.requires_grad for _, p in lin.tower_parameters())
    full = ImageClassifier(load_backbone("kgclip-tiny", FUSION).model.clip, 3, "full")
    images, _ = _inputs(bb)
    full(images).sum().backward()
    assert all(p.grad is not None for _, p in full.tower_parameters() if p.requires_grad)


def test_text_classifier_and_dual_encoder_shapes():
    bb = load_backbone("kgclip-tiny", FUSION)
    images, texts = _inputs(bb)
    t = TextClassifier(bb.model.clip, 1)
    assert t(texts).shape == (3, 1)
    assert not any(p.requires_grad for p in t.clip.visual.parameters())
    img, txt, scale = DualEncoder(bb.model.clip)(images, texts)
    assert img.shape == txt.shape == (3, 128) and torch.allclose(img.norm(dim=-1), torch.ones(3)) and scale.ndim == 0


def test_fusion_classifier_honours_image_token_pool():
    """The fine-tuning model feeds the fusion encoder the same pooled grid as knowledge training."""
    from kgclip.model.clip import encode_image_tokens
    from kgclip.model.knowledge_clip import pool_image_tokens

    bb = load_backbone("kgclip-demo", {**FUSION, "image_token_pool": 2})
    m = FusionClassifier(bb.model, 5).eval()
    images, texts = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)), bb.model.tokenizer(["what?", "no"])
    seen = []
    hook = bb.model.fusion.register_forward_pre_hook(lambda mod, args: seen.append(args[0]))
    with torch.no_grad():
        m(images, texts)
        tok, _ = encode_image_tokens(bb.model.clip, images)
        want = bb.model.image_proj(pool_image_tokens(tok, 2))
    hook.remove()
    assert seen[0].shape == (2, 17, 16) and torch.allclose(seen[0], want, atol=1e-6)  # 8x8 patches pooled to 4x4, class token first
    assert torch.allclose(m.encode(images, texts), m.encode(images, texts, pad=True), atol=1e-5)
