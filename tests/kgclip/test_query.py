import pytest
import torch
from PIL import Image

from kgclip.errors import KgclipError
from kgclip.query import QueryEngine
from kgclip.training import train_loop
from tests.kgclip.training.test_loop import _config, _store


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("q")
    store = _store(tmp)
    cfg, _ = _config(tmp, store, **{"train.steps": 2})
    res = train_loop(cfg, quiet=True)
    return res.last_checkpoint, store, tmp


def test_tails_ranked_and_restricted_to_modality(trained):
    ckpt, _, _ = trained
    engine = QueryEngine(ckpt)
    df = engine.tails("t3", "relation 1", top=5, modality="image")
    assert len(df) == 5 and (df["modality"] == "image").all()
    assert df["score"].is_monotonic_decreasing
    both = engine.tails("word 3", "r1", top=70)
    assert set(both["modality"]) == {"image", "text"}
    # the scores are the fusion scores: recompute one by hand
    with torch.no_grad():
        enc = engine.encode("t3")
        y, _ = engine.model.fuse(enc, engine.scorer.rel[torch.tensor([1])], None)
        top = int(both["entity_id"].iloc[0])
        want = torch.nn.functional.cosine_similarity(y, engine.scorer.candidates(torch.tensor([top])))
    assert float(want) == pytest.approx(float(both["score"].iloc[0]), abs=1e-5)


def test_new_image_and_new_text(trained):
    ckpt, _, tmp = trained
    engine = QueryEngine(ckpt)
    Image.new("RGB", (30, 30), (0, 0, 255)).save(tmp / "new.png")
    assert len(engine.tails(str(tmp / "new.png"), "r0", top=3)) == 3
    assert len(engine.tails("a sentence never seen", "r0", top=3)) == 3
    rel = engine.relations("t1", "i2", top=4)
    assert rel["probability"].is_monotonic_decreasing and rel["probability"].sum() == pytest.approx(1.0, abs=1e-5)


def test_candidates_cached_per_checkpoint(trained):
    ckpt, _, _ = trained
    a = QueryEngine(ckpt).candidates()
    cache = ckpt.with_name(ckpt.name + ".candidates.pt")
    assert cache.is_file()
    b = QueryEngine(ckpt).candidates()
    assert torch.equal(a, b)


def test_checkpoint_store_mismatch(trained, tmp_path):
    ckpt, _, _ = trained
    from tests.conftest import write_toy_store

    write_toy_store(tmp_path / "other")
    with pytest.raises(KgclipError, match="relations do not match the store"):
        QueryEngine(ckpt, tmp_path / "other")
    with pytest.raises(KgclipError, match="unknown relation 'no such'"):
        QueryEngine(ckpt).tails("t1", "no such")
