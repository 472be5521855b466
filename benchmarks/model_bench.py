"""Model benchmark: one training step on CPU with the tiny config and 64 triplets.

Prints the step time split by encoders / fusion / GNN / losses / backward / optimizer, the ratio
against open_clip's own ClipLoss step on the same towers with 64 image-text pairs (the baseline),
and the saving of encoding each unique entity once against naive per-triplet encoding on a batch
where entities repeat.

    python benchmarks/model_bench.py [--steps 10]
"""

import argparse
import copy
import sys
import time
from pathlib import Path

import torch
from open_clip.loss import ClipLoss
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).parent))
from _util import row

from kgclip.losses import KnowledgeClipLoss, LossConfig
from kgclip.model import KnowledgeCLIP, ModelConfig, parameter_groups
from kgclip.model.clip import create_clip
from kgclip.sampling.content import EntityInputs
from kgclip.sampling.triplets import TripletBatch

DEMO = ModelConfig(fusion_width=128, fusion_layers=2, fusion_heads=4, drop_path=0.1, max_text_tokens=16)


def make_batch(model, n_triplets=64, n_img=24, n_txt=40, fanout=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = n_img + n_txt
    images = torch.rand(n_img, 3, 64, 64, generator=g)
    texts = model.tokenizer([f"a {c} {s} left of a square" for c in ("red", "blue", "green", "yellow") for s in range(10)][:n_txt])
    inputs = EntityInputs(images, torch.arange(n_img), texts, torch.arange(n_img, n))
    head = torch.randint(0, n, (n_triplets,), generator=g)
    tail = torch.randint(0, n, (n_triplets,), generator=g)
    tails = torch.unique(tail)
    dst = tails.repeat_interleave(fanout)
    src = torch.randint(0, n, (dst.numel(),), generator=g)
    return TripletBatch(
        triplet=torch.arange(n_triplets), head=head, relation=torch.randint(0, 8, (n_triplets,), generator=g), tail=tail,
        entities=torch.arange(n), modality=torch.cat([torch.zeros(n_img), torch.ones(n_txt)]).long(), head_index=head, tail_index=tail,
        g2e_edge_index=torch.stack([src, dst]), g2e_relation=torch.randint(0, 8, (dst.numel(),), generator=g),
        g2e_hop=torch.ones(dst.numel(), dtype=torch.long), inputs=inputs,
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=10)
    a = ap.parse_args()
    torch.manual_seed(0)
    bundle = create_clip("kgclip-tiny")
    model = KnowledgeCLIP(DEMO, num_relations=8, clip=copy.deepcopy(bundle))
    teacher = copy.deepcopy(bundle.model).eval().requires_grad_(False)
    batch = make_batch(model)
    rel_tokens = model.tokenizer([f"relation {i}" for i in range(8)])
    loss_fn = KnowledgeClipLoss(LossConfig(), torch.tensor([0, 1]))
    opt = torch.optim.AdamW(parameter_groups(model, 1e-5, 1e-3, 0.1))

    def step():
        t0 = time.perf_counter()
        out = model(batch, rel_tokens)
        with torch.no_grad():
            temb = torch.zeros_like(out.entities.embedding)
            temb[batch.inputs.image_pos] = teacher.encode_image(batch.inputs.images)
            temb[batch.inputs.text_pos] = teacher.encode_text(batch.inputs.texts)
        t1 = time.perf_counter()
        with torch.profiler.record_function("kgclip.losses"):
            total, _ = loss_fn(out, batch, teacher.logit_scale.exp(), temb)
        t2 = time.perf_counter()
        opt.zero_grad()
        total.backward()
        t3 = time.perf_counter()
        opt.step()
        t4 = time.perf_counter()
        return t1 - t0, t2 - t1, t3 - t2, t4 - t3

    for _ in range(2):
        step()
    times = []
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(a.steps):
            times.append(step())
    fwd, los, bwd, opt_t = (sum(t[i] for t in times) / a.steps for i in range(4))
    total_step = fwd + los + bwd + opt_t
    labels = {e.key: e.cpu_time_total / 1e6 / a.steps for e in prof.key_averages() if e.key.startswith("kgclip.")}
    print(f"model_bench: tiny config ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters), 64 triplets, "
          f"{batch.entities.numel()} unique entities, {batch.g2e_edge_index.shape[1]} G2E edges, {torch.get_num_threads()} threads")
    row("training step", f"{total_step * 1000:,.0f} ms")
    row("  forward: encoders (+ frozen teacher)", f"{(fwd - labels.get('kgclip.fusion', 0) - labels.get('kgclip.gnn', 0)) * 1000:,.0f} ms")
    row("  forward: fusion", f"{labels.get('kgclip.fusion', 0) * 1000:,.0f} ms")
    row("  forward: GNN", f"{labels.get('kgclip.gnn', 0) * 1000:,.0f} ms")
    row("  losses", f"{los * 1000:,.0f} ms")
    row("  backward", f"{bwd * 1000:,.0f} ms")
    row("  optimizer", f"{opt_t * 1000:,.0f} ms")

    clip = copy.deepcopy(bundle.model)
    clip_loss = ClipLoss()
    copt = torch.optim.AdamW(clip.parameters(), lr=1e-5)
    imgs = torch.rand(64, 3, 64, 64)
    txts = model.tokenizer([f"caption {i}" for i in range(64)])

    def clip_step():
        f_img, f_txt, scale = clip(imgs, txts)
        loss = clip_loss(f_img, f_txt, scale)
        copt.zero_grad()
        loss.backward()
        copt.step()

    for _ in range(2):
        clip_step()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        clip_step()
    base = (time.perf_counter() - t0) / a.steps
    row("baseline: open_clip ClipLoss step, 64 pairs", f"{base * 1000:,.0f} ms", f"Knowledge-CLIP step = {total_step / base:.2f}x the baseline")

    # unique-entity encoding vs naive per-triplet encoding (heads and tails each encoded per triplet)
    ent = batch.inputs
    n_img_naive = int((batch.modality[batch.head_index] == 0).sum() + (batch.modality[batch.tail_index] == 0).sum())
    n_txt_naive = 2 * 64 - n_img_naive
    naive_imgs = torch.rand(n_img_naive, 3, 64, 64)
    naive_txts = txts[:1].repeat(n_txt_naive, 1)

    def enc_unique():
        model.encode_entities(ent, batch.modality)

    def enc_naive():
        from kgclip.model.clip import encode_image_tokens, encode_text_tokens

        encode_image_tokens(model.clip, naive_imgs)
        encode_text_tokens(model.clip, naive_txts, model.text_tokens)

    with torch.no_grad():
        res = {}
        for name, fn in (("unique", enc_unique), ("naive", enc_naive)):
            fn()
            t0 = time.perf_counter()
            for _ in range(a.steps):
                fn()
            res[name] = (time.perf_counter() - t0) / a.steps
    row(f"encode {batch.entities.numel()} unique entities", f"{res['unique'] * 1000:,.0f} ms")
    row(f"baseline: naive per-triplet encoding ({2 * 64} encodings)", f"{res['naive'] * 1000:,.0f} ms",
        f"unique encoding saves {1 - res['unique'] / res['naive']:.0%} ({res['naive'] / res['unique']:.2f}x faster)")


if __name__ == "__main__":
    main()
