"""The Trainer with a small task of its own (no store, no CLIP): every guarantee it gives every task."""

import csv
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
import torch
from torch import nn

from kgclip.errors import ConfigError
from kgclip.training import OptimConfig, TrainConfig, Trainer, TrainingError, load_checkpoint
from kgclip.training.distributed import DistEnv
from kgclip.training.rundir import RunFolderError


@dataclass
class ToyBatch:
    x: torch.Tensor
    y: torch.Tensor
    dropped: int = 0

    def to(self, device):
        return ToyBatch(self.x.to(device), self.y.to(device), self.dropped)

    def __len__(self):
        return len(self.x)


class ToyLoader:
    """Batches a pure function of (seed, epoch, index), as the protocol asks."""

    def __init__(self, seed: int, batch_size: int = 4, per_epoch: int = 3):
        self.seed, self.batch_size, self.per_epoch = seed, batch_size, per_epoch
        self.epoch = self.position = 0

    def batch(self, epoch, index):
        g = torch.Generator().manual_seed(self.seed * 1000 + epoch * 10 + index)
        x = torch.randn(self.batch_size, 3, generator=g)
        return ToyBatch(x, x @ torch.tensor([1.0, -2.0, 0.5]) + 0.1 * torch.randn(self.batch_size, generator=g), dropped=1)

    def __iter__(self):
        epoch = self.epoch
        for i in range(self.position, self.per_epoch):
            self.position = i + 1
            yield self.batch(epoch, i)
        self.epoch, self.position = epoch + 1, 0

    def state_dict(self):
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state):
        self.epoch, self.position = state["epoch"], state["position"]


class ToyTask:
    """Linear regression with dropout (so that the RNG state matters) and two parameter groups."""

    loss_parts = ("mse", "l1")

    def __init__(self, seed=0, poison_step=None, interrupt_at=None):
        self.seed, self.poison_step, self.interrupt_at, self.calls = seed, poison_step, interrupt_at, 0

    def build_model(self):
        torch.manual_seed(self.seed)
        return nn.Sequential(nn.Dropout(0.2), nn.Linear(3, 1))

    def parameter_groups(self, model):
        return [{"name": "towers", "params": [model[1].weight], "lr": 0.1, "weight_decay": 0.0},
                {"name": "new", "params": [model[1].bias], "lr": 0.01, "weight_decay": 0.0}]

    def loader(self, env):
        return ToyLoader(self.seed)

    def loss(self, model, batch):
        self.calls += 1
        if self.calls == self.interrupt_at:
            raise KeyboardInterrupt
        pred = model(batch.x).squeeze(-1)
        mse = ((pred - batch.y) ** 2).mean()
        l1 = (pred - batch.y).abs().mean()
        if self.calls == self.poison_step:
            l1 = l1 * math.nan
        return mse + l1, {"mse": mse, "l1": l1}

    def checkpoint_extra(self):
        return {"vocab": ["a", "b"]}

    def check_resume(self, ckpt, force):
        if ckpt.get("vocab") != ["a", "b"]:
            raise ConfigError("another vocabulary")


@dataclass
class ToyConfig:
    name: str = "toy"
    run_dir: str = "runs"
    seed: int = 0
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(warmup_steps=2, grad_clip=0.0))
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=6, checkpoint_every=2, log_every=1, keep_last=2, device="cpu"))


def _cfg(tmp_path, **train):
    return ToyConfig(run_dir=str(tmp_path / "runs"), train=replace(ToyConfig().train, **train))


def _trainer(tmp_path, task=None, force=False, **train):
    return Trainer(task or ToyTask(), _cfg(tmp_path, **train), env=DistEnv(), force=force, quiet=True)


def _rows(run: Path):
    with open(run / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_fit_logs_every_part_and_learning_rate_and_keeps_the_last_checkpoints(tmp_path):
    res = _trainer(tmp_path).fit()
    run = tmp_path / "runs" / "toy"
    rows = _rows(run)
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [r["epoch"] for r in rows] == ["0", "0", "0", "1", "1", "1"]  # 3 batches per epoch
    assert float(rows[0]["lr_towers"]) == pytest.approx(0.05) and float(rows[0]["lr_new"]) == pytest.approx(0.005)  # warm-up 1/2
    assert float(rows[1]["lr_towers"]) == pytest.approx(0.1)
    assert all(abs(float(r["loss"]) - float(r["mse"]) - float(r["l1"])) < 1e-5 for r in rows)
    assert rows[0]["skipped_examples"] == "1"
    assert res.steps == 6 and res.last_checkpoint.is_file() and res.metrics.keys() == {"loss", "mse", "l1"}
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-0000004.pt", "step-0000006.pt"]
    ckpt = load_checkpoint(res.last_checkpoint)
    assert ckpt["vocab"] == ["a", "b"] and ckpt["step"] == 6 and ckpt["loader"] == {"epoch": 1, "position": 3}
    assert not (run / ".lock").exists()


def test_ctrl_c_saves_the_last_finished_step_and_resume_continues_bit_for_bit(tmp_path):
    straight = _trainer(tmp_path / "a").fit()
    with pytest.raises(KeyboardInterrupt):
        _trainer(tmp_path / "b", task=ToyTask(interrupt_at=4), checkpoint_every=100).fit()  # in step 4
    ckpts = list((tmp_path / "b" / "runs" / "toy" / "checkpoints").iterdir())
    assert [p.name for p in ckpts] == ["step-0000003.pt"] and load_checkpoint(ckpts[0])["loader"] == {"epoch": 0, "position": 3}
    resumed = _trainer(tmp_path / "b", resume="latest").fit()
    a, b = load_checkpoint(straight.last_checkpoint), load_checkpoint(resumed.last_checkpoint)
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert [r["loss"] for r in _rows(tmp_path / "a" / "runs" / "toy")] == [r["loss"] for r in _rows(tmp_path / "b" / "runs" / "toy")]


def test_accumulated_micro_batches_equal_one_big_batch(tmp_path):
    big = _trainer(tmp_path / "a").build()
    small = Trainer(ToyTask(), replace(_cfg(tmp_path / "b"), optim=replace(ToyConfig().optim, accum_steps=2)), env=DistEnv(), quiet=True).build()
    big.core.eval(), small.core.eval()  # no dropout: the two must compute the same function
    b1, b2 = big.loader.batch(0, 0), big.loader.batch(0, 1)
    whole = ToyBatch(torch.cat([b1.x, b2.x]), torch.cat([b1.y, b2.y]))
    out_big = big.step(whole)
    out_small = small.step([b1, b2])
    assert out_small["mse"] == pytest.approx(out_big["mse"], rel=1e-6)
    for p, q in zip(big.core.parameters(), small.core.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-7)
    with pytest.raises(TrainingError, match=r"got 1 micro-batches, optim.accum_steps is 2"):
        small.step(iter([b1]))


def test_non_finite_loss_names_step_part_and_last_checkpoint(tmp_path):
    with pytest.raises(TrainingError, match=r"non-finite loss at step 3 in part\(s\) l1 \(mse=.*l1=nan\); the last good checkpoint is .*step-0000002.pt"):
        _trainer(tmp_path, task=ToyTask(poison_step=3)).fit()


def test_gradient_clipping_bounds_the_update(tmp_path):
    t = Trainer(ToyTask(), replace(_cfg(tmp_path), optim=OptimConfig(warmup_steps=0, grad_clip=1e-3, weight_decay=0.0)), env=DistEnv()).build()
    t.core.eval()
    batch = t.loader.batch(0, 0)
    t.step(batch)
    norm = torch.sqrt(sum((p.grad ** 2).sum() for p in t.core.parameters()))
    assert norm.item() == pytest.approx(1e-3, rel=1e-4)


def test_config_is_checked_like_a_loaded_one(tmp_path):
    with pytest.raises(ConfigError, match=r"train.steps: must be >= 1, got -1"):
        _trainer(tmp_path, steps=-1)
    with pytest.raises(ConfigError, match=r"name: a run name is one folder name"):
        Trainer(ToyTask(), replace(_cfg(tmp_path), name="../x"), env=DistEnv())


def test_resume_skips_an_unreadable_newest_checkpoint(tmp_path, caplog):
    _trainer(tmp_path, keep_last=0).fit()
    ckpts = tmp_path / "runs" / "toy" / "checkpoints"
    (ckpts / "step-0000006.pt").write_bytes((ckpts / "step-0000006.pt").read_bytes()[:100])
    t = _trainer(tmp_path, resume="latest", steps=7)
    res = t.fit()
    assert res.steps == 7
    assert (ckpts / "step-0000006.pt.corrupt").is_file()
    log = (tmp_path / "runs" / "toy" / "train.log").read_text()
    assert "skipped checkpoint" in log and "step-0000006.pt" in log and "resumed from" in log and "step-0000004.pt at step 4" in log
    assert [int(r["step"]) for r in _rows(tmp_path / "runs" / "toy")] == [1, 2, 3, 4, 5, 6, 7]


def test_a_checkpoint_the_task_refuses_names_its_file(tmp_path):
    _trainer(tmp_path).fit()

    class Other(ToyTask):
        def checkpoint_extra(self):
            return {"vocab": ["c"]}

        def check_resume(self, ckpt, force):
            if ckpt["vocab"] != ["c"]:
                raise ConfigError("another vocabulary")

    with pytest.raises(ConfigError, match=r"step-0000006.pt: another vocabulary"):
        _trainer(tmp_path, task=Other(), resume="latest", steps=8).fit()


def test_existing_run_is_refused_or_moved_aside(tmp_path):
    _trainer(tmp_path).fit()
    run = tmp_path / "runs" / "toy"
    before = sorted(p.name for p in run.rglob("*"))
    with pytest.raises(RunFolderError, match=r"a run of this name exists; pass train.resume=latest"):
        _trainer(tmp_path, steps=2).fit()
    assert sorted(p.name for p in run.rglob("*")) == before
    res = _trainer(tmp_path, force=True, steps=2).fit()
    aside = [p for p in (tmp_path / "runs").iterdir() if p.name.startswith("toy.old-")]
    assert len(aside) == 1 and sorted(p.name for p in aside[0].rglob("*")) == before
    assert res.last_checkpoint.is_file() and [int(r["step"]) for r in _rows(run)] == [1, 2]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-0000002.pt"]


@pytest.mark.parametrize(("precision", "dtype"), [("bf16", torch.bfloat16), ("fp32", torch.float32), ("auto", torch.float32)])
def test_the_loss_runs_under_the_configured_autocast(tmp_path, precision, dtype):
    seen = []

    class Spy(ToyTask):
        def loss(self, model, batch):
            seen.append(model(batch.x).dtype)
            return super().loss(model, batch)

    t = Trainer(Spy(), _cfg(tmp_path, precision=precision), env=DistEnv(), quiet=True).build()  # auto on CPU: fp32
    out = t.step(t.loader.batch(0, 0))
    assert seen == [dtype] and math.isfinite(out["loss"])
    assert all(p.dtype == torch.float32 for p in t.core.parameters())  # weights stay fp32


def test_output_tap_joins_every_recorded_output_with_zero_weight():
    from kgclip.training.distributed import OutputTap

    lin = nn.Linear(2, 2)
    tap = OutputTap(lin)
    lin(torch.ones(1, 2))  # outside a step: not kept
    with tap:
        out = lin(torch.ones(1, 2))
    assert len(tap.outputs) == 1 and tap.outputs[0] is out
    z = tap.zero_sum()
    assert z.item() == 0.0 and tap.outputs == []
    z.backward()
    assert torch.equal(lin.weight.grad, torch.zeros(2, 2))  # every parameter gets a (zero) gradient
    tap.close()


def test_one_process_pays_no_collective(tmp_path, monkeypatch):
    def collective(*args, **kwargs):
        raise AssertionError("a collective on one process")

    for name in ("all_reduce", "all_gather", "all_gather_object", "broadcast", "broadcast_object_list", "barrier"):
        monkeypatch.setattr(torch.distributed, name, collective)
    cfg = replace(_cfg(tmp_path), optim=replace(ToyConfig().optim, accum_steps=2))
    assert Trainer(ToyTask(), cfg, env=DistEnv(), quiet=True).fit().steps == 6
    assert Trainer(ToyTask(), replace(cfg, train=replace(cfg.train, resume="latest", steps=8)), env=DistEnv(), quiet=True).fit().steps == 8
