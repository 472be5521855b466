"""Training benchmark on CPU: the demo config's triplets per second, the share of step time spent
waiting on data (goal under 10%), and 1 vs 2 processes with gloo (same global batch).

The baseline for the process comparison is the single process, measured in the same run.
On a GPU (when one is present) it also reports bf16 triplets/s of the ViT-B/32 recipe and its
model FLOPs utilisation (FLOPs of a step x steps/s / the GPU's dense bf16 peak; skipped on CPU).

    python benchmarks/train_bench.py [--steps 40] [--scenes 300]
"""

import argparse
import csv
import os
import socket
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _util import row

from data_prep.demo_world import convert_demo_world, write_demo_world
from experiments.demo import DEFAULT_CONFIG, DemoConfig
from kgclip.config import from_dict, load_yaml, to_dict
from kgclip.training import RunConfig, train_loop


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, world: int, port: int, data: dict) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    train_loop(from_dict(RunConfig, data), quiet=True)
    torch.distributed.destroy_process_group()


def _throughput(run_dir: Path, skip: int) -> float:
    with open(run_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))[skip:]
    return sum(float(r["examples_per_s"]) for r in rows) / max(len(rows), 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--scenes", type=int, default=300)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    files = write_demo_world(tmp / "world", scenes=a.scenes)
    stores = convert_demo_world(files)
    demo = from_dict(DemoConfig, load_yaml(DEFAULT_CONFIG))
    base = replace(demo.run, run_dir=str(tmp / "runs"), data=replace(demo.run.data, store=str(stores["store"])),
                   train=replace(demo.run.train, steps=a.steps, log_every=5, checkpoint_every=10**9))
    print(f"train_bench: demo config (Knowledge-CLIP, batch {base.data.batch_size}, fan-out {base.data.fanouts}), "
          f"{a.steps} steps on the demo world ({a.scenes} scenes), CPU, {torch.get_num_threads()} threads")
    t0 = time.perf_counter()
    res = train_loop(replace(base, name="one"), quiet=True)
    wall = time.perf_counter() - t0
    row("1 process: triplets/s (after warm-up)", f"{_throughput(tmp / 'runs' / 'one', 1):,.1f}",
        f"{res.steps / wall:.2f} steps/s including start-up")
    row("1 process: share of step time waiting on data", f"{100 * res.data_wait_share:.1f}%", "goal < 10%")

    half = replace(base, name="two", data=replace(base.data, batch_size=base.data.batch_size // 2))
    torch.multiprocessing.spawn(_rank, args=(2, _free_port(), to_dict(half)), nprocs=2, join=True)
    one, two = _throughput(tmp / "runs" / "one", 1), _throughput(tmp / "runs" / "two", 1)
    row("2 processes (gloo, 1 thread each, same global batch)", f"{two:,.1f} triplets/s", f"ratio {two / one:.2f}x vs 1 process (baseline)")

    if torch.cuda.is_available():
        gpu = replace(base, name="gpu", model=replace(base.model, clip_model="ViT-B-32", fusion_width=1024, fusion_layers=4, fusion_heads=16),
                      data=replace(base.data, batch_size=128), train=replace(base.train, precision="bf16", device="cuda"))
        res = train_loop(gpu, quiet=True)
        row("GPU, ViT-B/32 recipe, bf16: triplets/s", f"{res.examples_per_second:,.1f}")
        _mfu(gpu, res)
    else:
        print("  MFU: skipped (no GPU here; it is printed for the ViT-B/32 recipe where CUDA is present)")


def _mfu(config: RunConfig, res) -> None:
    """Model FLOPs utilisation of the GPU run: FLOPs of a step (counted on a few of its batches) x steps/s / bf16 peak."""
    from model_bench import peak_tflops, step_flops

    from kgclip.training.distributed import DistEnv
    from kgclip.training.knowledge import KnowledgeTask

    name = torch.cuda.get_device_name()
    task = KnowledgeTask(config)
    model = task.build_model().to("cuda")
    flops = []
    for i, b in enumerate(task.loader(DistEnv(device=torch.device("cuda")))):
        if i == 3:
            break
        b = b.to("cuda")

        def step(b=b):
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss, _ = task.loss(model, b)
            loss.backward()

        flops.append(step_flops(step))
    per_step = sum(flops) / len(flops)
    achieved = per_step * res.examples_per_second / config.data.batch_size
    row("GPU: model FLOPs per step (forward + backward)", f"{per_step / 1e9:,.1f} GFLOP", "PyTorch's FLOP counter, mean of 3 batches")
    peak = peak_tflops(name)
    if peak is None:
        row("GPU: MFU", "n/a", f"{achieved / 1e12:,.1f} TFLOP/s; no peak known for {name} (add it to model_bench.PEAK_TFLOPS)")
    else:
        row("GPU: MFU", f"{100 * achieved / (peak * 1e12):.1f}%", f"{achieved / 1e12:,.1f} TFLOP/s of {name}'s {peak:,.0f} (dense bf16 peak)")


if __name__ == "__main__":
    main()
