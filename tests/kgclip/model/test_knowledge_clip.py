import open_clip
import torch

from kgclip.model import export_open_clip
from kgclip.model.clip import encode_image_tokens, encode_text_tokens
from kgclip.sampling.content import EntityInputs
from tests.model_fixtures import hand_batch


def test_entity_tokens_shapes_and_masks(model):
    b = hand_batch(model)
    ent = model.encode_entities(b.inputs, len(b.entities))
    L = model.entity_tokens
    assert L == max(17, 8)  # 64 px / 16 px patches + class token; texts cut to 8
    assert ent.tokens.shape == (5, L, 32) and ent.embedding.shape == (5, 128)
    assert ent.valid[0].all() and ent.valid[1].all()  # images: every token real
    # "a red circle" = <sot> a red circle <eot> -> 5 real tokens, the rest padding
    assert ent.valid[2].tolist() == [True] * 5 + [False] * (L - 5)
    assert (ent.tokens[2, 8:] == 0).all()  # padded past the text length


def test_encode_entities_rows_are_the_count_and_unnamed_rows_stay_empty(model):
    """``count`` rows come back, each entity in the row its position names; a row no input names is empty."""
    b = hand_batch(model)
    texts = b.inputs.texts[:2]
    inputs = EntityInputs(b.inputs.images[:1], torch.tensor([3]), texts, torch.tensor([0, 2]))
    with torch.no_grad():
        ent = model.encode_entities(inputs, 4)
        alone = model.encode_entities(EntityInputs(torch.empty(0), torch.empty(0, dtype=torch.long), texts, torch.tensor([0, 1])), 2)
        img = model.encode_entities(EntityInputs(b.inputs.images[:1], torch.tensor([0]), torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long)), 1)
    assert ent.tokens.shape[0] == ent.valid.shape[0] == ent.embedding.shape[0] == 4
    assert not ent.valid[1].any() and (ent.tokens[1] == 0).all() and (ent.embedding[1] == 0).all()
    assert torch.allclose(ent.tokens[[0, 2]], alone.tokens, atol=1e-6) and torch.equal(ent.valid[[0, 2]], alone.valid)
    assert torch.allclose(ent.embedding[3], img.embedding[0], atol=1e-6) and ent.valid[3].all()


def test_image_tokens_match_open_clip(model):
    images = hand_batch(model).inputs.images
    tokens, emb = encode_image_tokens(model.clip, images)
    assert tokens.shape == (2, 17, 128)
    assert torch.allclose(emb, model.clip.encode_image(images), atol=1e-5)
    texts = model.tokenizer(["a red circle"])
    _, _, temb = encode_text_tokens(model.clip, texts, 8)
    assert torch.allclose(temb, model.clip.encode_text(texts), atol=1e-5)


def test_forward_views_for_all_modality_pairs(model, relation_tokens):
    b = hand_batch(model)
    out = model(b, relation_tokens)
    assert out.y_hr.shape == (4, 32) and out.r_ht.shape == (4, 32)
    assert out.relation_logits.shape == (4, 3)
    assert torch.equal(out.y_t_pos[out.tail_row], b.tail_index)
    assert out.g2e.shape == (2, 32)  # both distinct tails have an in-edge
    assert torch.isfinite(out.y_hr).all() and torch.isfinite(out.g2e).all()


def _view(model, ent, rel, head, relation, tail, use):
    """Fusion input with every slot filled (even masked ones), to show masked content is ignored."""
    flags = [torch.full((len(head),), u, dtype=torch.bool) for u in use]
    return model.fusion(ent.tokens[head], ent.valid[head], rel[relation], ent.tokens[tail], ent.valid[tail], *flags)


def test_masked_element_contributes_nothing(model, relation_tokens):
    model.eval()
    b = hand_batch(model)
    ent = model.encode_entities(b.inputs, len(b.entities))
    rel = model.encode_relations(relation_tokens)
    h, r = torch.tensor([0, 3]), torch.tensor([0, 2])
    y1, _ = _view(model, ent, rel, h, r, torch.tensor([1, 2]), (True, True, False))
    y2, _ = _view(model, ent, rel, h, r, torch.tensor([4, 0]), (True, True, False))  # other tails, masked
    assert torch.allclose(y1, y2, atol=1e-6)
    _, r1 = _view(model, ent, rel, h, torch.tensor([0, 0]), torch.tensor([1, 2]), (True, False, True))
    _, r2 = _view(model, ent, rel, h, torch.tensor([2, 1]), torch.tensor([1, 2]), (True, False, True))
    assert torch.allclose(r1, r2, atol=1e-6)
    y3, _ = _view(model, ent, rel, torch.tensor([1, 2]), r, torch.tensor([1, 2]), (True, True, False))  # another head
    assert not torch.allclose(y1, y3)
    # model.fuse with None for the masked tail is the same view
    sub = type(ent)(ent.tokens[h], ent.valid[h], ent.embedding[h], torch.empty(0), torch.empty(0))
    y4, _ = model.fuse(sub, rel[r], None)
    assert torch.allclose(y1, y4, atol=1e-6)


def test_head_and_tail_roles_differ(model):
    model.eval()
    seen = []
    hook = model.fusion.blocks[0].register_forward_pre_hook(lambda mod, args: seen.append(args[0]))
    b = hand_batch(model)
    ent = model.encode_entities(b.inputs, len(b.entities))
    e = type(ent)(ent.tokens[[2]], ent.valid[[2]], ent.embedding[[2]], torch.empty(0), torch.empty(0))
    model.fuse(e, None, None)
    model.fuse(None, None, e)
    hook.remove()
    n = int(ent.valid[2].sum())  # the fusion computes packed tokens: <head>, head tokens, relation, tail tokens
    as_head, as_tail = seen[0][1 : 1 + n], seen[1][2 : 2 + n]
    assert as_head.shape == (n, model.config.fusion_width) and n > 0
    assert torch.allclose(as_head - model.fusion.role[0], as_tail - model.fusion.role[2], atol=1e-6)  # same content
    assert not torch.allclose(as_head, as_tail)  # different role embeddings


def test_export_loads_in_open_clip_with_same_embeddings(model, tmp_path):
    with torch.no_grad():
        for p in model.clip.parameters():
            p.add_(0.01 * torch.randn_like(p))  # "trained" towers
    path = export_open_clip(model, tmp_path / "towers.pt")
    loaded, _, _ = open_clip.create_model_and_transforms("kgclip-tiny", pretrained=str(path))
    loaded.eval()
    model.clip.eval()
    b = hand_batch(model)
    with torch.no_grad():
        assert torch.allclose(loaded.encode_image(b.inputs.images), model.clip.encode_image(b.inputs.images), atol=1e-5)
        assert torch.allclose(loaded.encode_text(b.inputs.texts), model.clip.encode_text(b.inputs.texts), atol=1e-5)


def test_export_to_a_folder_or_an_unwritable_place_is_one_line_and_leaves_nothing(model, tmp_path, monkeypatch):
    import pytest

    from kgclip.errors import KgclipError

    (tmp_path / "d").mkdir()
    with pytest.raises(KgclipError, match=r"d: is a folder; give the file to write \(e.g. .*d/towers.pt\)"):
        export_open_clip(model, tmp_path / "d")  # before: IsADirectoryError from os.replace, and .d.tmp left beside it

    def full_disk(obj, f, *a, **k):
        open(f, "wb").write(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(KgclipError, match=r"towers.pt: cannot write \(No space left on device\)"):
        export_open_clip(model, tmp_path / "towers.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_pretrained_checkpoint_file_loads(tiny_clip, tmp_path):
    from kgclip.model.clip import create_clip

    path = tmp_path / "ckpt.pt"
    torch.save({"state_dict": tiny_clip.model.state_dict()}, path)
    bundle = create_clip("kgclip-tiny", str(path))
    for (n, a), (_, b) in zip(bundle.model.state_dict().items(), tiny_clip.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), n


def test_unknown_model_and_tag_are_config_errors():
    import pytest

    from kgclip.errors import ConfigError
    from kgclip.model.clip import create_clip

    with pytest.raises(ConfigError, match="unknown CLIP model 'ViT-X'"):
        create_clip("ViT-X")
    with pytest.raises(ConfigError, match="neither a file nor a tag"):
        create_clip("kgclip-tiny", "no-such-tag")


# A VisualSem-style gloss of 27 words: longer than any max_text_tokens used here.
LONG_GLOSS = ("The domestic cat is a small, typically furry, carnivorous mammal that is often kept as an indoor pet "
              "and valued by humans for companionship and for its ability to hunt vermin.")


def test_long_text_keeps_its_end_of_text_token(model):
    assert len(LONG_GLOSS.split()) >= 26
    text = model.tokenizer([LONG_GLOSS, "a red circle"])
    eot = text.argmax(dim=-1)  # CLIP's EOT token has the largest id
    n = model.text_tokens  # 8 in the tiny config
    assert int(eot[0]) > n  # the gloss is longer than the kept tokens: a plain cut would lose EOT
    with torch.no_grad():
        full, _, emb = encode_text_tokens(model.clip, text, model.clip.context_length)  # nothing cut
        kept, valid, emb_cut = encode_text_tokens(model.clip, text, n)
    assert kept.shape == (2, n, full.shape[2])
    # the gloss: its first n-1 tokens, then the token at the EOT (argmax) position
    assert torch.equal(kept[0, : n - 1], full[0, : n - 1])
    assert torch.equal(kept[0, n - 1], full[0, int(eot[0])])
    assert not torch.equal(kept[0, n - 1], full[0, n - 1])
    assert valid[0].all()
    # a short text is unchanged: every token up to EOT, padding after it
    assert torch.equal(kept[1], full[1, :n]) and valid[1].tolist() == [True] * 5 + [False] * (n - 5)
    assert torch.equal(emb, emb_cut)  # the pooled embedding never depended on the cut
    # the last kept token of the fused entity is the EOT token's (projected to fusion width)
    inputs = EntityInputs(torch.empty(0), torch.empty(0, dtype=torch.long), text, torch.tensor([0, 1]))
    with torch.no_grad():
        ent = model.encode_entities(inputs, 2)
        assert torch.allclose(ent.tokens[0, n - 1], model.text_proj(full[0, int(eot[0])]), atol=1e-6)
    assert ent.valid[0, :n].all() and not ent.valid[0, n:].any()


def test_forward_under_bf16_autocast_matches_fp32(model, relation_tokens):
    """Under autocast the towers return bf16; the entity buffers must take them (GPU training runs this way)."""
    b = hand_batch(model)
    ref = model(b, relation_tokens)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(b, relation_tokens)
    assert out.y_hr.shape == ref.y_hr.shape and torch.isfinite(out.y_hr.float()).all()
    assert torch.allclose(out.y_hr.float(), ref.y_hr, atol=0.1, rtol=0.1)


def test_pool_image_tokens_keeps_the_class_token_and_averages_each_window():
    import pytest

    from kgclip.errors import ConfigError
    from kgclip.model.knowledge_clip import pool_image_tokens, pooled_token_count

    # one image, a 4x4 grid of patches whose single feature is its row-major index, after a class token of -1
    tokens = torch.cat([torch.tensor([-1.0]), torch.arange(16.0)]).view(1, 17, 1)
    pooled = pool_image_tokens(tokens, 2)
    # windows (0,1,4,5) (2,3,6,7) (8,9,12,13) (10,11,14,15)
    assert pooled.flatten().tolist() == [-1.0, 2.5, 4.5, 10.5, 12.5]
    assert pool_image_tokens(tokens, 1) is tokens
    assert pooled_token_count(17, 2) == 5 and pooled_token_count(65, 2) == 17 and pooled_token_count(65, 1) == 65
    with pytest.raises(ConfigError, match=r"image_token_pool 3 does not divide the image tower's 4 x 4 patch grid \(16 patches\)"):
        pooled_token_count(17, 3)
    # 1 + 24 tokens (a 4 x 6 grid) and 16 tokens (a 4 x 4 grid with no class token) are no square grid after a class token
    for tokens in (25, 16, 1):
        with pytest.raises(ConfigError, match=rf"ViT-X tower's {tokens} tokens do not form a square patch grid after a class token, .*"
                                              r"set model.image_token_pool 1"):
            pooled_token_count(tokens, 2, "ViT-X")


def test_image_token_pool_shortens_the_fusion_input():
    from kgclip.model.knowledge_clip import KnowledgeCLIP, ModelConfig

    base = dict(clip_model="kgclip-demo", fusion_width=32, fusion_layers=1, fusion_heads=2, max_text_tokens=8)
    full, pooled = KnowledgeCLIP(ModelConfig(**base), 3), KnowledgeCLIP(ModelConfig(**base, image_token_pool=2), 3)
    assert full.image_tokens == 65 and pooled.image_tokens == 17 and pooled.entity_tokens == 17
    tok = torch.randn(2, 65, 128)
    assert pooled.fusion_image_tokens(tok).shape == (2, 17, 128)
    assert torch.equal(pooled.fusion_image_tokens(tok)[:, 0], tok[:, 0])


def test_encode_entities_gives_the_fusion_encoder_the_pooled_grid():
    """An image entity's tokens are image_proj of the class token and the 2x2-pooled patch grid, 1 + 16 of them valid."""
    from kgclip.model.knowledge_clip import KnowledgeCLIP, ModelConfig, pool_image_tokens

    torch.manual_seed(0)
    model = KnowledgeCLIP(ModelConfig(clip_model="kgclip-demo", fusion_width=32, fusion_layers=1, fusion_heads=2, max_text_tokens=8,
                                      image_token_pool=2), 3).eval()
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ent = model.encode_entities(EntityInputs(images, torch.tensor([1, 0]), torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long)), 2)
        tok, _ = encode_image_tokens(model.clip, images)
        want = model.image_proj(pool_image_tokens(tok, 2))
    assert tok.shape[1] == 65 and want.shape[1] == 17 == model.entity_tokens
    assert torch.allclose(ent.tokens[[1, 0]], want, atol=1e-6) and ent.valid.all()
