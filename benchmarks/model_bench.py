"""Model benchmark: one Knowledge-CLIP training step on CPU, for two cases.

- ``tiny``: the tiny config (64 px towers, fusion 2 x 128) with 64 triplets;
- ``vitb32``: ViT-B/32 towers (random init, 224 px) with the paper's fusion 4 x 1024 and a small
  batch (8 triplets), as a CPU stand-in for the paper's step.

Each prints the step time (CPU time of the process by default: steadier than wall time on a
shared machine) split by encoders / fusion / GNN / losses / backward / optimizer, the
model FLOPs of one step (PyTorch's FLOP counter: matrix products and attention, forward and
backward, teacher included), and the ratio against open_clip's own ClipLoss step on the same
towers with as many image-text pairs as triplets (the baseline, measured in the same run). The
tiny case also prints the saving of encoding each unique entity once against naive per-triplet
encoding on a batch where entities repeat.

``step_flops`` and ``PEAK_TFLOPS`` here are what train_bench uses for its MFU figure on a GPU.

    python benchmarks/model_bench.py [--case tiny|vitb32|all] [--steps 10] [--big-steps 2] [--clock cpu|wall]
"""

import argparse
import copy
import sys
import time
from pathlib import Path

import torch
from open_clip.loss import ClipLoss
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).parent))
from _util import row

from kgclip.losses import KnowledgeClipLoss, LossConfig
from kgclip.model import KnowledgeCLIP, ModelConfig, parameter_groups
from kgclip.model.clip import create_clip
from kgclip.sampling.content import EntityInputs
from kgclip.sampling.triplets import TripletBatch
from kgclip.typing import IMAGE, TEXT

DEMO = ModelConfig(fusion_width=128, fusion_layers=2, fusion_heads=4, drop_path=0.1, max_text_tokens=16)
VITB32 = ModelConfig(clip_model="ViT-B-32", fusion_width=1024, fusion_layers=4, fusion_heads=16, drop_path=0.1, max_text_tokens=32)
CASES = {  # name: (model config, triplets, images, texts, G2E fan-out, image size)
    "tiny": (DEMO, 64, 24, 40, 4, 64),
    "vitb32": (VITB32, 8, 6, 10, 2, 224),
}

# Dense bf16 tensor-core peaks (TFLOP/s) from the vendors' data sheets, by a substring of
# torch.cuda.get_device_name() (first match; more specific names first).
PEAK_TFLOPS = {"B200": 2250.0, "H200": 989.0, "H100 80GB HBM3": 989.0, "H100 NVL": 835.0, "H100 PCIe": 756.0, "H100": 756.0,
               "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10G": 70.0}


def peak_tflops(device_name: str) -> float | None:
    """The dense bf16 peak of a GPU from its name (None when not in the table)."""
    return next((v for k, v in PEAK_TFLOPS.items() if k in device_name), None)


def step_flops(step) -> int:
    """FLOPs of one call of ``step`` (forward and backward), counted by PyTorch's FLOP counter."""
    with FlopCounterMode(display=False) as counter:
        step()
    return int(counter.get_total_flops())


class Section:
    """Time spent inside a module's forward (summed over calls), by forward hooks."""

    def __init__(self, module: torch.nn.Module, clock) -> None:
        self.total, self.clock, self._t0 = 0.0, clock, 0.0
        module.register_forward_pre_hook(self._start)
        module.register_forward_hook(self._stop)

    def _start(self, *_) -> None:
        self._t0 = self.clock()

    def _stop(self, *_) -> None:
        self.total += self.clock() - self._t0


def make_batch(model, n_triplets=64, n_img=24, n_txt=40, fanout=4, image_size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = n_img + n_txt
    images = torch.rand(n_img, 3, image_size, image_size, generator=g)
    texts = model.tokenizer([f"a {c} {s} left of a square" for c in ("red", "blue", "green", "yellow") for s in range(10)][:n_txt])
    inputs = EntityInputs(images, torch.arange(n_img), texts, torch.arange(n_img, n))
    head = torch.randint(0, n, (n_triplets,), generator=g)
    tail = torch.randint(0, n, (n_triplets,), generator=g)
    tails = torch.unique(tail)
    dst = tails.repeat_interleave(fanout)
    src = torch.randint(0, n, (dst.numel(),), generator=g)
    return TripletBatch(
        triplet=torch.arange(n_triplets), head=head, relation=torch.randint(0, 8, (n_triplets,), generator=g), tail=tail,
        entities=torch.arange(n), modality=torch.cat([torch.full((n_img,), IMAGE), torch.full((n_txt,), TEXT)]), head_index=head, tail_index=tail,
        g2e_edge_index=torch.stack([src, dst]), g2e_relation=torch.randint(0, 8, (dst.numel(),), generator=g),
        g2e_hop=torch.ones(dst.numel(), dtype=torch.long), inputs=inputs,
    )


def bench_case(name: str, steps: int, clock) -> None:
    config, n_triplets, n_img, n_txt, fanout, size = CASES[name]
    torch.manual_seed(0)
    bundle = create_clip(config.clip_model)
    model = KnowledgeCLIP(config, num_relations=8, clip=copy.deepcopy(bundle))
    teacher = copy.deepcopy(bundle.model).eval().requires_grad_(False)
    batch = make_batch(model, n_triplets, n_img, n_txt, fanout, size)
    rel_tokens = model.tokenizer([f"relation {i}" for i in range(8)])
    loss_fn = KnowledgeClipLoss(LossConfig(), torch.tensor([0, 1]))
    opt = torch.optim.AdamW(parameter_groups(model, 1e-5, 1e-3, 0.1))

    def forward_backward():
        out = model(batch, rel_tokens)
        with torch.no_grad():
            temb = torch.zeros_like(out.entities.embedding)
            temb[batch.inputs.image_pos] = teacher.encode_image(batch.inputs.images)
            temb[batch.inputs.text_pos] = teacher.encode_text(batch.inputs.texts)
        total, _ = loss_fn(out, batch, teacher.logit_scale.exp(), temb)
        opt.zero_grad()
        total.backward()

    def step():
        t0 = clock()
        out = model(batch, rel_tokens)
        with torch.no_grad():
            temb = torch.zeros_like(out.entities.embedding)
            temb[batch.inputs.image_pos] = teacher.encode_image(batch.inputs.images)
            temb[batch.inputs.text_pos] = teacher.encode_text(batch.inputs.texts)
        t1 = clock()
        total, _ = loss_fn(out, batch, teacher.logit_scale.exp(), temb)
        t2 = clock()
        opt.zero_grad()
        total.backward()
        t3 = clock()
        opt.step()
        t4 = clock()
        return t1 - t0, t2 - t1, t3 - t2, t4 - t3

    flops = step_flops(forward_backward)
    for _ in range(2 if name == "tiny" else 1):
        step()
    fusion, gnn = Section(model.fusion, clock), Section(model.gnn, clock)
    times = [step() for _ in range(steps)]
    fwd, los, bwd, opt_t = (sum(t[i] for t in times) / steps for i in range(4))
    total_step = fwd + los + bwd + opt_t
    labels = {"kgclip.fusion": fusion.total / steps, "kgclip.gnn": gnn.total / steps}
    print(f"model_bench {name}: {config.clip_model} + fusion {config.fusion_layers}x{config.fusion_width} "
          f"({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters), {n_triplets} triplets, "
          f"{batch.entities.numel()} unique entities, {batch.g2e_edge_index.shape[1]} G2E edges, {size} px, "
          f"{torch.get_num_threads()} threads, {steps} steps, {'CPU time' if clock is time.process_time else 'wall time'}")
    row("training step", f"{total_step * 1000:,.0f} ms", f"{flops / 1e9:,.1f} GFLOP per step (forward + backward)")
    row("  forward: encoders (+ frozen teacher)", f"{(fwd - labels.get('kgclip.fusion', 0) - labels.get('kgclip.gnn', 0)) * 1000:,.0f} ms")
    row("  forward: fusion", f"{labels.get('kgclip.fusion', 0) * 1000:,.0f} ms")
    row("  forward: GNN", f"{labels.get('kgclip.gnn', 0) * 1000:,.0f} ms")
    row("  losses", f"{los * 1000:,.0f} ms")
    row("  backward", f"{bwd * 1000:,.0f} ms")
    row("  optimizer", f"{opt_t * 1000:,.0f} ms")

    clip = copy.deepcopy(bundle.model)
    clip_loss = ClipLoss()
    copt = torch.optim.AdamW(clip.parameters(), lr=1e-5)
    imgs = torch.rand(n_triplets, 3, size, size)
    txts = model.tokenizer([f"caption {i}" for i in range(n_triplets)])

    def clip_step():
        f_img, f_txt, scale = clip(imgs, txts)
        loss = clip_loss(f_img, f_txt, scale)
        copt.zero_grad()
        loss.backward()
        copt.step()

    for _ in range(2 if name == "tiny" else 1):
        clip_step()
    t0 = clock()
    for _ in range(steps):
        clip_step()
    base = (clock() - t0) / steps
    row(f"baseline: open_clip ClipLoss step, {n_triplets} pairs", f"{base * 1000:,.0f} ms", f"Knowledge-CLIP step = {total_step / base:.2f}x the baseline")
    if name == "tiny":
        unique_vs_naive(model, batch, txts, steps, clock)


def unique_vs_naive(model, batch, txts, steps: int, clock) -> None:
    """Unique-entity encoding vs naive per-triplet encoding (heads and tails each encoded per triplet)."""
    from kgclip.model.clip import encode_image_tokens, encode_text_tokens

    ent = batch.inputs
    b = len(batch)
    n_img_naive = int((batch.modality[batch.head_index] == IMAGE).sum() + (batch.modality[batch.tail_index] == IMAGE).sum())
    n_txt_naive = 2 * b - n_img_naive
    naive_imgs = torch.rand(n_img_naive, *ent.images.shape[1:])
    naive_txts = txts[:1].repeat(n_txt_naive, 1)

    def enc_unique():
        model.encode_entities(ent, len(batch.entities))

    def enc_naive():
        encode_image_tokens(model.clip, naive_imgs)
        encode_text_tokens(model.clip, naive_txts, model.text_tokens)

    with torch.no_grad():
        res = {}
        for name, fn in (("unique", enc_unique), ("naive", enc_naive)):
            fn()
            t0 = clock()
            for _ in range(steps):
                fn()
            res[name] = (clock() - t0) / steps
    row(f"encode {batch.entities.numel()} unique entities", f"{res['unique'] * 1000:,.0f} ms")
    row(f"baseline: naive per-triplet encoding ({2 * b} encodings)", f"{res['naive'] * 1000:,.0f} ms",
        f"unique encoding saves {1 - res['unique'] / res['naive']:.0%} ({res['naive'] / res['unique']:.2f}x faster)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--case", choices=[*CASES, "all"], default="all")
    ap.add_argument("--steps", type=int, default=10, help="timed steps of the tiny case")
    ap.add_argument("--big-steps", type=int, default=2, help="timed steps of the ViT-B/32 case")
    ap.add_argument("--clock", choices=["cpu", "wall"], default="cpu",
                    help="cpu: CPU time of this process (steadier on a shared machine; with several threads it is their sum)")
    a = ap.parse_args()
    clock = time.process_time if a.clock == "cpu" else time.perf_counter
    for name in CASES if a.case == "all" else [a.case]:
        bench_case(name, a.steps if name == "tiny" else a.big_steps, clock)


if __name__ == "__main__":
    main()
