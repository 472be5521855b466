"""Fine-tuning benchmark: the VQA fine-tuning step against the Knowledge-CLIP training step at the
same batch on the same towers and fusion encoder, and VQA evaluation throughput.

Baseline: the Knowledge-CLIP step (``KnowledgeTask`` on the demo world, the demo config's model,
fan-out and losses), measured in the same run through the same :class:`Trainer.step`. The VQA step
has no neighbourhood, no relation encoding and no teacher, so expect a ratio below 1x. Batches are
loaded before the clock starts on both sides: the figures are model steps, not data loading.

    python benchmarks/finetune_bench.py [--batch 64] [--steps 10] [--questions 512] [--model kgclip-tiny]

On a GPU (``--device cuda``) both run with bf16 autocast; ``--model ViT-B-32 --fusion-width 1024
--fusion-layers 4 --fusion-heads 16`` is the paper's ViT-B/32 recipe.
"""

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from _util import row

from data_prep.demo_world import convert_demo_world, write_demo_world
from experiments.demo import DEFAULT_CONFIG, DemoConfig
from kgclip.config import from_dict, load_yaml
from kgclip.finetune.config import load_config
from kgclip.finetune.init import load_backbone
from kgclip.finetune.tasks import VqaTask
from kgclip.skips import Skips
from kgclip.training import KnowledgeTask, Trainer
from kgclip.training.distributed import DistEnv
from kgclip.training.precision import autocast

COLORS = [(220, 20, 20), (20, 200, 20), (20, 20, 220), (230, 230, 30)]
WORDS = ["red", "green", "blue", "yellow"]


def write_vqa(root: Path, subtype: str, images: int, start: int) -> tuple[Path, Path]:
    """A VQA v2 split in the official format: ``images`` plain-colour images, two questions each."""
    questions, annotations = [], []
    for n in range(images):
        iid = start + n
        k = n % len(COLORS)
        (root / "images").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (96, 80), COLORS[k]).save(root / "images" / f"COCO_{subtype}_{iid:012d}.jpg")
        for j, (q, a, at) in enumerate([("What color is it?", WORDS[k], "other"), ("Is it red?", "yes" if k == 0 else "no", "yes/no")]):
            qid = iid * 10 + j
            questions.append({"image_id": iid, "question": q, "question_id": qid})
            annotations.append({"question_id": qid, "image_id": iid, "question_type": "what", "answer_type": at, "multiple_choice_answer": a,
                                "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": i + 1} for i in range(10)]})
    q, a = root / f"{subtype}_questions.json", root / f"{subtype}_annotations.json"
    q.write_text(json.dumps({"data_subtype": subtype, "questions": questions}))
    a.write_text(json.dumps({"data_subtype": subtype, "annotations": annotations}))
    return q, a


def time_steps(trainer: Trainer, steps: int) -> float:
    """Seconds per optimizer step (after one warm-up step), batches loaded beforehand."""
    def forever():
        while True:
            yield from trainer.loader

    it = forever()
    batches = [next(it) for _ in range(steps + 1)]
    trainer.core.train()
    trainer.step(batches[0])
    sync = torch.cuda.synchronize if trainer.env.device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for b in batches[1:]:
        trainer.step(b)
    sync()
    return (time.perf_counter() - t0) / steps


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--questions", type=int, default=512, help="evaluation questions")
    ap.add_argument("--scenes", type=int, default=200, help="demo-world scenes for the Knowledge-CLIP baseline")
    ap.add_argument("--model", default="kgclip-tiny")
    ap.add_argument("--fusion-width", type=int, default=None)
    ap.add_argument("--fusion-layers", type=int, default=None)
    ap.add_argument("--fusion-heads", type=int, default=None)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    env = DistEnv(device=torch.device(a.device))

    demo = from_dict(DemoConfig, load_yaml(DEFAULT_CONFIG))
    stores = convert_demo_world(write_demo_world(tmp / "world", scenes=a.scenes))
    m = demo.run.model
    model = replace(m, clip_model=a.model, fusion_width=a.fusion_width or m.fusion_width, fusion_layers=a.fusion_layers or m.fusion_layers,
                    fusion_heads=a.fusion_heads or m.fusion_heads, drop_path=0.0)
    kg_cfg = replace(demo.run, name="kg", run_dir=str(tmp / "runs"), model=model, data=replace(demo.run.data, store=str(stores["store"]),
                     batch_size=a.batch, num_workers=0), train=replace(demo.run.train, device=a.device, precision="auto"))
    print(f"finetune_bench: {a.model}, fusion {model.fusion_width} x {model.fusion_layers} layers, batch {a.batch}, {a.steps} timed steps, "
          f"{a.device}{' (bf16)' if a.device == 'cuda' else ''}, {torch.get_num_threads()} threads")
    kg = Trainer(KnowledgeTask(kg_cfg), kg_cfg, env=env, quiet=True).build()
    kg_step = time_steps(kg, a.steps)
    row("Knowledge-CLIP training step (baseline)", f"{1000 * kg_step:,.1f} ms", f"fan-out {kg_cfg.data.fanouts}, all five losses")
    del kg

    tq, ta = write_vqa(tmp / "vqa", "train2014", max(a.batch, 64), 1)
    eq, ea = write_vqa(tmp / "vqa", "val2014", max(1, a.questions // 2), 100_000)
    fusion = {"fusion_width": model.fusion_width, "fusion_layers": model.fusion_layers, "fusion_heads": model.fusion_heads,
              "drop_path": 0.0, "max_text_tokens": model.max_text_tokens}
    cfg = load_config("vqa", {"data": {"train_questions": str(tq), "train_annotations": str(ta), "eval_questions": str(eq),
                                       "eval_annotations": str(ea), "images": str(tmp / "vqa" / "images")},
                              "model": fusion, "batch_size": a.batch, "eval_batch_size": a.batch, "num_workers": 0,
                              "train": {"device": a.device}, "name": "vqa", "run_dir": str(tmp / "runs")})
    backbone = load_backbone(a.model, fusion, cfg.seed)
    task = VqaTask(cfg, backbone, Skips(echo=None))
    vqa = Trainer(task, cfg, env=env, quiet=True).build()
    vqa_step = time_steps(vqa, a.steps)
    row("VQA fine-tuning step (fusion head, soft-score BCE)", f"{1000 * vqa_step:,.1f} ms",
        f"ratio {vqa_step / kg_step:.2f}x vs Knowledge-CLIP step (expect < 1x)")

    t0 = time.perf_counter()
    with autocast(cfg.train.precision, env.device):
        ev = task.evaluate(vqa.core, env)
    dt = time.perf_counter() - t0
    n = len(ev.predictions)
    row("VQA evaluation throughput (images decoded, scored)", f"{n / dt:,.1f} questions/s", f"{n} questions in {dt:.1f} s")


if __name__ == "__main__":
    main()
