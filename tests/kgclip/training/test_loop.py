import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

from kgclip.config import apply_overrides, from_dict
from kgclip.errors import ConfigError
from kgclip.training import RunConfig, TrainingError, load_checkpoint, train_loop
from tests.kgclip.sampling.conftest import random_store

REPO = Path(__file__).resolve().parents[3]


def _store(tmp_path):
    for i in range(3):
        Image.new("RGB", (70, 60), (80 * i, 100, 0)).save(tmp_path / f"img{i}.png")
    random_store(tmp_path / "store", n_tri=300, image_root=tmp_path)
    return tmp_path / "store"


def _config(tmp_path, store, **over):
    base = {
        "name": "t", "run_dir": str(tmp_path / "runs"), "seed": 0,
        "data": {"store": str(store), "batch_size": 16, "fanouts": [2]},
        "model": {"fusion_width": 32, "fusion_layers": 1, "fusion_heads": 4, "max_text_tokens": 8, "drop_path": 0.1},
        "optim": {"warmup_steps": 2},
        "train": {"steps": 4, "checkpoint_every": 2, "log_every": 1, "keep_last": 2},
    }
    data = apply_overrides(base, [f"{k}={v}" for k, v in over.items()])
    return from_dict(RunConfig, data), data


@pytest.fixture
def store(tmp_path):
    return _store(tmp_path)


def _metrics(run):
    with open(run / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_trains_a_few_steps_and_leaves_a_record(tmp_path, store):
    cfg, _ = _config(tmp_path, store)
    res = train_loop(cfg, quiet=True)
    run = tmp_path / "runs" / "t"
    rows = _metrics(run)
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert {"e2e", "e2r", "g2e", "kd", "clip", "lr_towers", "lr_new", "examples_per_s", "data_wait_share", "skipped_examples"} <= set(rows[0])
    assert float(rows[0]["lr_new"]) == pytest.approx(0.5e-3)  # warm-up: step 1 of 2
    assert yaml.safe_load((run / "config.yaml").read_text())["data"]["batch_size"] == 16
    assert "step 4" in (run / "train.log").read_text()
    ckpt = load_checkpoint(res.last_checkpoint)
    assert ckpt["step"] == 4 and len(ckpt["entity_keys"]) == 70 and ckpt["relation_keys"] == ["r0", "r1", "r2", "r3"]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-0000002.pt", "step-0000004.pt"]


def test_hard_negatives_knob_reaches_the_loader_and_the_loss(tmp_path, store):
    cfg, _ = _config(tmp_path, store, **{"loss.hard_negatives": 2, "train.steps": 2, "train.checkpoint_every": 2})
    train_loop(cfg, quiet=True)
    rows = _metrics(tmp_path / "runs" / "t")
    assert all(float(r["e2e_hard"]) > 0 for r in rows)
    cfg0, _ = _config(tmp_path, store, **{"name": "t0", "train.steps": 1})
    train_loop(cfg0, quiet=True)
    assert _metrics(tmp_path / "runs" / "t0")[0]["e2e_hard"] == ""  # K = 0: the paper's loss, no such part


def test_the_store_is_opened_once(tmp_path, store, monkeypatch):
    from kgclip.store import reader

    opened = []
    real = reader.KnowledgeStore.__init__

    def counting(self, path):
        opened.append(path)
        real(self, path)

    monkeypatch.setattr(reader.KnowledgeStore, "__init__", counting)
    cfg, _ = _config(tmp_path, store, **{"train.steps": 1})
    train_loop(cfg, quiet=True)
    assert len(opened) == 1


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    t0 = time.time()
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"training ended before {path.name} appeared: {proc.stderr.read()}")
        if time.time() - t0 > timeout:
            raise AssertionError("timed out")
        time.sleep(0.02)


@pytest.mark.slow
def test_resume_after_sigkill_is_bit_exact(tmp_path, store):
    steps = 24
    for name in ("straight", "killed"):
        _, data = _config(tmp_path, store, **{"train.steps": steps, "train.checkpoint_every": 2, "train.keep_last": 50, "name": name})
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(data))
    cmd = [sys.executable, "-m", "experiments.cli", "--quiet", "train"]
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    subprocess.run([*cmd, str(tmp_path / "straight.yaml")], check=True, env=env, cwd=REPO, capture_output=True)
    proc = subprocess.Popen([*cmd, str(tmp_path / "killed.yaml")], env=env, cwd=REPO, stderr=subprocess.PIPE, text=True)
    _wait_for(tmp_path / "runs" / "killed" / "checkpoints" / "step-0000006.pt", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ckpts = sorted((tmp_path / "runs" / "killed" / "checkpoints").glob("step-*.pt"))
    assert ckpts[-1].name != f"step-{steps:07d}.pt", "killed too late to test anything"
    subprocess.run([*cmd, str(tmp_path / "killed.yaml"), "train.resume=latest"], check=True, env=env, cwd=REPO, capture_output=True)
    a = load_checkpoint(tmp_path / "runs" / "straight" / "checkpoints" / f"step-{steps:07d}.pt")["model"]
    b = load_checkpoint(tmp_path / "runs" / "killed" / "checkpoints" / f"step-{steps:07d}.pt")["model"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_resume_refuses_a_changed_store_unless_forced(tmp_path, store):
    cfg, _ = _config(tmp_path, store)
    train_loop(cfg, quiet=True)
    shutil.rmtree(store)
    random_store(store, n_tri=300, seed=1, image_root=tmp_path)
    cfg2, _ = _config(tmp_path, store, **{"train.resume": "latest", "train.steps": 6})
    with pytest.raises(TrainingError, match="changed since this checkpoint"):
        train_loop(cfg2, quiet=True)
    assert train_loop(cfg2, force=True, quiet=True).steps == 6


def test_resume_of_a_store_without_file_hashes_warns_once(tmp_path, store, capfd):
    manifest = store / "manifest.json"
    m = json.loads(manifest.read_text())
    del m["files"]  # as an older kgclip wrote it
    manifest.write_text(json.dumps(m))
    warning = f"{store}: no file hashes in manifest.json: content changes cannot be detected; rewrite the store to add them"
    train_loop(_config(tmp_path, store, **{"train.steps": 2})[0], quiet=True)
    assert warning not in capfd.readouterr().err  # only resuming compares the files
    assert train_loop(_config(tmp_path, store, **{"train.resume": "latest", "train.steps": 3})[0], quiet=True).steps == 3
    assert capfd.readouterr().err.count(warning) == 1  # before: resumed saying nothing
    assert warning in (tmp_path / "runs" / "t" / "train.log").read_text()


def test_resume_refuses_another_model_config(tmp_path, store):
    cfg, _ = _config(tmp_path, store)
    train_loop(cfg, quiet=True)
    cfg2, _ = _config(tmp_path, store, **{"train.resume": "latest", "model.fusion_width": 64})
    with pytest.raises(TrainingError, match=r"different model config \(fusion_width: checkpoint 32 vs config 64\)"):
        train_loop(cfg2, quiet=True)


def test_resume_accepts_a_checkpoint_written_before_a_model_field_existed(tmp_path, store):
    """A checkpoint whose model config lacks a field added later (``image_token_pool``) had its default."""
    cfg, _ = _config(tmp_path, store)
    train_loop(cfg, quiet=True)
    last = tmp_path / "runs" / "t" / "checkpoints" / "step-0000004.pt"
    ckpt = torch.load(last, weights_only=True)
    del ckpt["config"]["model"]["image_token_pool"]
    torch.save(ckpt, last)
    cfg2, _ = _config(tmp_path, store, **{"train.resume": "latest", "train.steps": 5})
    assert train_loop(cfg2, quiet=True).steps == 5  # before: "different model config (image_token_pool: checkpoint None vs config 1)"
    cfg3, _ = _config(tmp_path, store, **{"train.resume": "latest", "train.steps": 6, "model.image_token_pool": 2})
    with pytest.raises(TrainingError, match=r"different model config \(image_token_pool: checkpoint 1 vs config 2\)"):
        train_loop(cfg3, quiet=True)


def test_a_locked_image_tower_stays_as_it_was_and_the_rest_trains(tmp_path, store):
    """train.lock_image: the image tower is left out of AdamW (foreach) and never changes; the text tower and new modules train."""
    cfg, _ = _config(tmp_path, store, **{"train.lock_image": "true", "train.steps": 2, "train.checkpoint_every": 1, "train.keep_last": 2})
    train_loop(cfg, quiet=True)
    ckpts = tmp_path / "runs" / "t" / "checkpoints"
    first, last = (load_checkpoint(ckpts / f"step-{i:07d}.pt") for i in (1, 2))
    visual = [k for k in first["model"] if k.startswith("clip.visual.")]
    assert visual and all(torch.equal(first["model"][k], last["model"][k]) for k in visual)
    changed = {".".join(k.split(".")[:2]) for k in first["model"] if not torch.equal(first["model"][k], last["model"][k])}
    assert {"clip.transformer", "fusion.blocks"} <= changed, changed
    assert not any(k.startswith("clip.visual.") for k in changed)


def test_nan_guard_names_step_and_part(tmp_path, store, monkeypatch):
    import kgclip.losses as losses

    real = losses.e2r_loss
    calls = {"n": 0}

    def flaky(out, batch):
        calls["n"] += 1
        v = real(out, batch)
        return v * float("nan") if calls["n"] == 3 else v

    monkeypatch.setattr(losses, "e2r_loss", flaky)
    cfg, _ = _config(tmp_path, store)
    with pytest.raises(TrainingError, match=r"non-finite loss at step 3 in part\(s\) e2r.*step-0000002.pt"):
        train_loop(cfg, quiet=True)


def test_config_errors():
    with pytest.raises(ConfigError, match=r"unknown config key 'data.batchsize'; did you mean data.batch_size"):
        from_dict(RunConfig, {"data": {"batchsize": 3}})
    with pytest.raises(ConfigError, match=r"train.steps: expected an integer, got 'many'"):
        from_dict(RunConfig, {"train": {"steps": "many"}})
    with pytest.raises(ConfigError, match=r"optim.tower_lr: expected a number"):
        from_dict(RunConfig, {"optim": {"tower_lr": [1]}})
    assert from_dict(RunConfig, {"optim": {"tower_lr": "1e-5"}}).optim.tower_lr == 1e-5


def test_unwritable_run_dir_fails_before_training(tmp_path, store):
    (tmp_path / "file").write_text("x")
    cfg, _ = _config(tmp_path, store, run_dir=str(tmp_path / "file" / "runs"))
    with pytest.raises(ConfigError, match="run folder cannot be written"):
        train_loop(cfg, quiet=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, world: int, port: int, data: dict) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    train_loop(from_dict(RunConfig, data), quiet=True)
    torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_processes_match_one_process_with_double_batch(tmp_path, store):
    common = {"data.fanouts": "[]", "loss.g2e": 0, "loss.kd": 0, "loss.clip": 0, "model.drop_path": 0.0, "train.steps": 3}
    _, two = _config(tmp_path, store, name="two", **{"data.batch_size": 8, **common})
    cfg_one, _ = _config(tmp_path, store, name="one", **{"data.batch_size": 16, **common})
    torch.multiprocessing.spawn(_rank_main, args=(2, _free_port(), two), nprocs=2, join=True)
    train_loop(cfg_one, quiet=True)
    a, b = _metrics(tmp_path / "runs" / "two"), _metrics(tmp_path / "runs" / "one")
    for ra, rb in zip(a, b, strict=True):
        for k in ("loss", "e2e", "e2r"):
            assert float(ra[k]) == pytest.approx(float(rb[k]), rel=1e-4, abs=1e-5), (ra["step"], k)


def _rank_store(rank: int, world: int, port: int, data: dict, folder: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    if rank == 1:  # this rank's store does not open
        data = {**data, "data": {**data["data"], "store": os.path.join(folder, "no-store")}}
    try:
        train_loop(from_dict(RunConfig, data), quiet=True)
        outcome = "finished"
    except Exception as exc:
        outcome = f"{type(exc).__name__}: {exc}"
    Path(folder, f"rank{rank}.txt").write_text(outcome)
    os._exit(0)


def test_a_store_that_does_not_open_on_one_rank_stops_every_rank(tmp_path, store):
    _, data = _config(tmp_path, store)
    ctx = torch.multiprocessing.spawn(_rank_store, args=(2, _free_port(), data, str(tmp_path)), nprocs=2, join=False)
    deadline = time.monotonic() + 120
    while not ctx.join(timeout=1):
        if time.monotonic() > deadline:  # before: rank 0 waited at the rendezvous that rank 1 never reached
            for p in ctx.processes:
                p.kill()
            pytest.fail("the two ranks did not finish")
    line = f"{tmp_path / 'no-store'}: no such store folder"
    assert (tmp_path / "rank1.txt").read_text() == f"StoreError: {line}"
    assert (tmp_path / "rank0.txt").read_text() == f"RankFailed: rank 1: {line}"
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_ctrl_c_writes_a_checkpoint_and_exits_cleanly(tmp_path, store):
    _, data = _config(tmp_path, store, **{"train.steps": 400, "train.checkpoint_every": 1000, "name": "int"})
    (tmp_path / "int.yaml").write_text(yaml.safe_dump(data))
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "experiments.cli", "--quiet", "train", str(tmp_path / "int.yaml")],
                            env=env, cwd=REPO, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "runs" / "int" / "metrics.csv"
    t0 = time.time()
    while not (metrics.exists() and len(metrics.read_text().splitlines()) > 3):
        assert proc.poll() is None and time.time() - t0 < 120
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err
    ckpts = list((tmp_path / "runs" / "int" / "checkpoints").glob("step-*.pt"))
    ckpt = load_checkpoint(ckpts[0])
    assert len(ckpts) == 1 and 3 <= ckpt["step"] < 400
    # the checkpoint holds the loader as it was after the last finished step (the step in flight is redone)
    from kgclip.store import KnowledgeStore

    per_epoch = -(-KnowledgeStore(store).manifest["counts"]["splits"]["train"] // 16)
    assert ckpt["loader"]["epoch"] * per_epoch + ckpt["loader"]["position"] == ckpt["step"]



def test_missing_store_fails_before_a_run_folder_is_made(tmp_path, store):
    from kgclip.errors import StoreError

    cfg, _ = _config(tmp_path, tmp_path / "no-store")
    with pytest.raises(StoreError, match="no such store folder"):
        train_loop(cfg, quiet=True)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(("setting", "uses_cache"), [("auto", True), ("off", False)])
def test_data_image_cache_reaches_the_loader(tmp_path, store, setting, uses_cache):
    """``data.image_cache``: auto reads the cache that ``prepare cache-images`` wrote, off decodes."""
    from experiments.cli import main as cli
    from kgclip.training.distributed import DistEnv
    from kgclip.training.knowledge import KnowledgeTask

    assert cli(["--quiet", "prepare", "cache-images", str(store), "--size", "64", "--workers", "1"]) == 0
    cfg, _ = _config(tmp_path, store, **{"data.image_cache": setting})
    task = KnowledgeTask(cfg)
    task.build_model()
    task.loader(DistEnv())
    assert (task.content.cache is not None) is uses_cache
