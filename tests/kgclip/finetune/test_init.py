import pytest
import torch

from kgclip.errors import KgclipError
from kgclip.finetune.init import CLIP, KNOWLEDGE_CLIP, load_backbone
from tests.kgclip.finetune.fixtures import trained_run

FUSION = {"fusion_width": 16, "fusion_layers": 1, "fusion_heads": 2, "drop_path": 0.0, "max_text_tokens": 8}


def test_open_clip_name_is_a_clip_init_with_a_fresh_fusion_encoder_of_the_asked_size():
    b = load_backbone("kgclip-tiny", FUSION, seed=3)
    assert b.kind == CLIP and b.source == "kgclip-tiny"
    assert b.model.config.fusion_width == 16 and len(b.model.fusion.blocks) == 1
    again = load_backbone("kgclip-tiny", FUSION, seed=3)
    assert torch.equal(b.model.fusion.head_token, again.model.fusion.head_token)  # seeded


def test_knowledge_clip_run_keeps_its_trained_fusion_encoder(tmp_path):
    run = trained_run(tmp_path / "kg", fusion=True)
    b = load_backbone(str(run), FUSION)
    assert b.kind == KNOWLEDGE_CLIP and b.source.endswith("step-0000001.pt")
    assert b.model.config.fusion_width == 32  # its own size, not the fine-tuning config's
    assert torch.all(b.model.fusion.head_token == 0.5)
    assert torch.all(b.model.clip.visual.class_embedding == 0.25)


def test_clip_run_keeps_its_towers_and_gets_a_fresh_fusion_encoder_of_its_size(tmp_path):
    run = trained_run(tmp_path / "clip", fusion=False)
    b = load_backbone(str(run / "checkpoints" / "step-0000001.pt"), FUSION)
    assert b.kind == CLIP
    assert torch.all(b.model.clip.visual.class_embedding == 0.25)
    assert not torch.all(b.model.fusion.head_token == 0.5)
    assert b.model.config.fusion_width == 32


def test_bad_inits_are_one_line_errors(tmp_path):
    with pytest.raises(KgclipError, match="no such checkpoint or run folder"):
        load_backbone(str(tmp_path / "missing"), FUSION)
    with pytest.raises(KgclipError, match="unknown CLIP model 'NoSuchModel'"):
        load_backbone("NoSuchModel", FUSION)
    with pytest.raises(KgclipError, match="neither a file nor a tag"):
        load_backbone("kgclip-tiny:nosuchtag", FUSION)
    other = tmp_path / "other.pt"
    torch.save({"model": {}, "config": {"task": "vqa"}}, other)
    with pytest.raises(KgclipError, match="not a Knowledge-CLIP or CLIP training checkpoint"):
        load_backbone(str(other), FUSION)


def test_open_clip_checkpoint_file_is_a_clip_init_with_its_weights(tmp_path):
    from kgclip.model.clip import create_clip

    torch.manual_seed(7)
    bundle = create_clip("kgclip-tiny")
    with torch.no_grad():
        bundle.model.visual.class_embedding.fill_(0.125)
    torch.save(bundle.model.state_dict(), tmp_path / "tiny.pt")
    b = load_backbone(f"kgclip-tiny:{tmp_path / 'tiny.pt'}", FUSION)
    assert b.kind == CLIP and torch.all(b.model.clip.visual.class_embedding == 0.125)
    assert b.model.config.pretrained == str(tmp_path / "tiny.pt")


def test_a_kgclip_run_init_warns_once_about_the_model_keys_it_ignores(tmp_path, caplog):
    run = trained_run(tmp_path / "kg", fusion=True)  # fusion width 32, image_token_pool 1
    with caplog.at_level("WARNING", logger="kgclip.finetune"):
        load_backbone(str(run), {"image_token_pool": 2, "fusion_width": 32, "max_text_tokens": 32})
    # fusion_width 32 is the run's own and max_text_tokens 32 the default: neither is ignored
    assert [r.getMessage() for r in caplog.records] == [
        "model.image_token_pool=2 is ignored: a Knowledge-CLIP init keeps its own fusion encoder (image_token_pool 1)"]
    caplog.clear()
    with caplog.at_level("WARNING", logger="kgclip.finetune"):
        load_backbone(str(run), {"image_token_pool": 1, "fusion_width": 1024})  # the defaults: nothing said
        load_backbone("kgclip-tiny", {**FUSION, "image_token_pool": 2})  # an open_clip init uses them: nothing said
    assert caplog.records == []
    clip = trained_run(tmp_path / "clip", fusion=False)
    with caplog.at_level("WARNING", logger="kgclip.finetune"):
        load_backbone(str(clip), {"fusion_layers": 3, "drop_path": 0.2})
    assert [r.getMessage() for r in caplog.records] == [
        "model.fusion_layers=3, model.drop_path=0.2 are ignored: a kgclip run init makes its fusion encoder at the run's own settings "
        "(fusion_layers 1, drop_path 0.0)"]
