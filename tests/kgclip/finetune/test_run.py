"""End to end through the library entry point (``kgclip.finetune.run``): inits, resume, records."""

import json
import shutil

import pytest
import torch

from kgclip.errors import KgclipError
from kgclip.finetune import run
from kgclip.finetune.init import load_backbone
from kgclip.skips import Skips
from kgclip.training.checkpoint import load_checkpoint
from tests.kgclip.finetune.fixtures import FAST, image_folder, trained_run, vqa_files


@pytest.fixture
def vqa_data(tmp_path):
    tq, ta = vqa_files(tmp_path, "train2014", [1, 2, 3, 4])
    eq, ea = vqa_files(tmp_path, "val2014", [5, 6], coco_names=False)
    return {"data": {"train_questions": str(tq), "train_annotations": str(ta), "eval_questions": str(eq), "eval_annotations": str(ea),
                     "images": str(tmp_path / "images")}}


def _ckpt(run_dir, step):
    return load_checkpoint(run_dir / "checkpoints" / f"step-{step:07d}.pt")


@pytest.mark.parametrize(("fusion", "kind"), [(True, "knowledge-clip"), (False, "clip")])
def test_knowledge_clip_init_keeps_its_fusion_encoder_clip_init_gets_a_fresh_one(tmp_path, vqa_data, fusion, kind):
    init = trained_run(tmp_path / f"pre-{kind}", fusion=fusion)
    # lr 0 everywhere: the weights stay where the init put them
    res = run("vqa", str(init), tmp_path / "runs" / kind, vqa_data, [*FAST, "lr=0", "tower_lr=0"], quiet=True, skips=Skips(echo=None))
    ckpt = _ckpt(res.run_dir, 3)
    assert ckpt["finetune"]["init"]["kind"] == kind and ckpt["finetune"]["task"] == "vqa"
    head_token = ckpt["model"]["backbone.fusion.head_token"]
    assert torch.all(head_token == 0.5) == fusion
    assert torch.all(ckpt["model"]["backbone.clip.visual.class_embedding"] == 0.25)  # the towers come from the run either way
    note = "its trained fusion encoder" if fusion else "a fresh fusion encoder"
    assert f"({kind}: {note};" in (res.run_dir / "report.md").read_text()


def test_resume_continues_exactly(tmp_path, vqa_data):
    straight = run("vqa", "kgclip-tiny", tmp_path / "straight", vqa_data, [*FAST, "steps=4", "train.keep_last=0"], quiet=True,
                   skips=Skips(echo=None))
    # the same run, stopped after its step-2 checkpoint
    shutil.copytree(straight.run_dir, tmp_path / "parts")
    (tmp_path / "parts" / "checkpoints" / "step-0000004.pt").unlink()
    with pytest.raises(KgclipError, match="exists"):
        run("vqa", "kgclip-tiny", tmp_path / "parts", vqa_data, [*FAST, "steps=4"], quiet=True, skips=Skips(echo=None))
    resumed = run("vqa", "kgclip-tiny", tmp_path / "parts", vqa_data, [*FAST, "steps=4", "train.keep_last=0", "resume=latest"], quiet=True,
                  skips=Skips(echo=None))
    assert resumed.train.steps == 4
    a, b = _ckpt(straight.run_dir, 4)["model"], _ckpt(resumed.run_dir, 4)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.metrics == straight.metrics
    assert json.loads((resumed.run_dir / "predictions.json").read_text()) == json.loads((straight.run_dir / "predictions.json").read_text())
    rows = (resumed.run_dir / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3", "4"]


def test_resume_refuses_another_init_or_vocabulary(tmp_path, vqa_data):
    run("vqa", "kgclip-tiny", tmp_path / "r", vqa_data, [*FAST, "steps=2"], quiet=True, skips=Skips(echo=None))
    with pytest.raises(KgclipError, match="started from 'kgclip-tiny'"):
        run("vqa", str(trained_run(tmp_path / "kg")), tmp_path / "r", vqa_data, [*FAST, "steps=4", "resume=latest"], quiet=True,
            skips=Skips(echo=None))
    with pytest.raises(KgclipError, match="answer_vocabulary differs"):
        run("vqa", "kgclip-tiny", tmp_path / "r", vqa_data, [*FAST, "steps=4", "resume=latest", "num_answers=2"], quiet=True,
            skips=Skips(echo=None))


def test_bad_data_fails_before_a_run_folder_exists(tmp_path, vqa_data):
    bad = dict(vqa_data["data"], train_annotations=str(tmp_path / "nope.json"))
    with pytest.raises(KgclipError, match=r"nope\.json: no such file"):
        run("vqa", "kgclip-tiny", tmp_path / "runs" / "x", {"data": bad}, FAST, quiet=True)
    with pytest.raises(KgclipError, match="--images not given"):
        run("vqa", "kgclip-tiny", tmp_path / "runs" / "x", {"data": dict(vqa_data["data"], images="")}, FAST, quiet=True)
    with pytest.raises(KgclipError, match="unknown config key 'stepz'"):
        run("vqa", "kgclip-tiny", tmp_path / "runs" / "x", vqa_data, [*FAST, "stepz=3"], quiet=True)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("mode", ["linear", "full"])
def test_classification_modes(tmp_path, mode):
    data = {"data": {"train": str(image_folder(tmp_path / "train")), "eval": str(image_folder(tmp_path / "val", per_class=1))}, "mode": mode}
    res = run("classification", "kgclip-tiny", tmp_path / mode, data, [*FAST, "steps=2"], quiet=True, skips=Skips(echo=None))
    assert set(res.metrics) == {"top1", "top5"} and res.metrics["top5"] == 1.0  # 3 classes: always in the top 5
    trained = _ckpt(res.run_dir, 2)["model"]
    start = load_backbone("kgclip-tiny", seed=0).model.clip.visual.state_dict()
    unchanged = all(torch.equal(trained[f"visual.{k}"], v) for k, v in start.items())
    assert unchanged == (mode == "linear")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, world: int, port: int, out: str, data: dict, overrides: list[str]) -> None:
    import os

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    run("vqa", "kgclip-tiny", out, data, overrides, quiet=True, skips=Skips(echo=None))
    torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_processes_match_one_process_with_double_batch(tmp_path, vqa_data):
    over = [*FAST, "batch_size=2"]
    torch.multiprocessing.spawn(_rank_main, args=(2, _free_port(), str(tmp_path / "two"), vqa_data, over), nprocs=2, join=True)
    one = run("vqa", "kgclip-tiny", tmp_path / "one", vqa_data, [*FAST, "batch_size=4"], quiet=True, skips=Skips(echo=None))
    rows = [[r.split(",") for r in (tmp_path / name / "metrics.csv").read_text().splitlines()] for name in ("two", "one")]
    col = rows[0][0].index("bce")
    for a, b in zip(rows[0][1:], rows[1][1:], strict=True):
        assert float(a[col]) == pytest.approx(float(b[col]), rel=1e-4)
    two_metrics = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert two_metrics == pytest.approx(one.metrics)
    assert len(json.loads((tmp_path / "two" / "predictions.json").read_text())) == 4  # every eval question once, gathered from both ranks
