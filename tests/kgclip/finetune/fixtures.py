"""Tiny benchmark files in their published formats, written by the tests (images drawn with PIL)."""

import json
from pathlib import Path

from PIL import Image

COLORS = {"red": (220, 20, 20), "green": (20, 200, 20), "blue": (20, 20, 220), "yellow": (230, 230, 30)}
TINY_MODEL = ["model.fusion_width=32", "model.fusion_layers=1", "model.fusion_heads=4", "model.drop_path=0.0", "model.max_text_tokens=8"]
FAST = ["steps=3", "batch_size=4", "eval_batch_size=8", "num_workers=0", "train.log_every=1", "train.checkpoint_every=2",
        "optim.warmup_steps=1", "train.device=cpu", *TINY_MODEL]


def image(path: Path, color: str, size: tuple[int, int] = (24, 20)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, COLORS[color]).save(path)
    return path


def vqa_files(root: Path, subtype: str, ids: list[int], *, coco_names: bool = True) -> tuple[Path, Path]:
    """Questions and annotations for images ``ids`` (each a plain colour), two questions per image:
    "what color is it?" (answer: the colour) and "is it red?" (yes / no). Images go to
    ``root/images/<subtype>/``, named ``COCO_<subtype>_<12 digits>.jpg`` or ``<12 digits>.jpg``."""
    names = list(COLORS)
    questions, annotations = [], []
    for n, iid in enumerate(ids):
        color = names[n % len(names)]
        name = f"COCO_{subtype}_{iid:012d}.jpg" if coco_names else f"{iid:012d}.jpg"
        image(root / "images" / subtype / name, color)
        for k, (q, a, qt, at) in enumerate([("What color is it?", color, "what color is the", "other"),
                                             ("Is it red?", "yes" if color == "red" else "no", "is the", "yes/no")]):
            qid = iid * 10 + k
            questions.append({"image_id": iid, "question": q, "question_id": qid})
            answers = [a] * 8 + ["dark " + a, "unsure"] if k == 0 else [a] * 10
            annotations.append({"question_id": qid, "image_id": iid, "question_type": qt, "answer_type": at, "multiple_choice_answer": a,
                                "answers": [{"answer": x, "answer_confidence": "yes", "answer_id": i + 1} for i, x in enumerate(answers)]})
    q = root / f"v2_OpenEnded_mscoco_{subtype}_questions.json"
    a = root / f"v2_mscoco_{subtype}_annotations.json"
    q.write_text(json.dumps({"info": {}, "task_type": "Open-Ended", "data_type": "mscoco", "license": {}, "data_subtype": subtype,
                             "questions": questions}))
    a.write_text(json.dumps({"info": {}, "license": {}, "data_subtype": subtype, "annotations": annotations}))
    return q, a


def snli_ve_file(root: Path, name: str, ids: list[int]) -> Path:
    """SNLI-VE jsonl: per image, an entailed, a neutral and a contradicted hypothesis."""
    names = list(COLORS)
    lines = []
    for n, iid in enumerate(ids):
        color = names[n % len(names)]
        image(root / "flickr30k-images" / f"{iid}.jpg", color)
        other = names[(n + 1) % len(names)]
        for k, (hyp, label) in enumerate([(f"The picture is {color}.", "entailment"), ("The picture was taken at night.", "neutral"),
                                          (f"The picture is {other}.", "contradiction")]):
            lines.append(json.dumps({"Flikr30kID": f"{iid}.jpg", "captionID": f"{iid}.jpg#0", "pairID": f"{iid}.jpg#0r{k}",
                                     "gold_label": label, "annotator_labels": [label], "sentence1": "A picture.", "sentence2": hyp}))
    path = root / f"snli_ve_{name}.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def karpathy_file(root: Path, counts: dict[str, int]) -> Path:
    """A Karpathy split JSON (COCO style, ``filepath`` + ``filename``) with two captions per image."""
    names = list(COLORS)
    images, n = [], 0
    for split, count in counts.items():
        for _ in range(count):
            color = names[n % len(names)]
            fname = f"COCO_val2014_{n + 1:012d}.jpg"
            image(root / "coco" / "val2014" / fname, color)
            caps = [f"a {color} square", f"something {color}"]
            images.append({"filepath": "val2014", "filename": fname, "imgid": n, "split": split, "cocoid": n + 1,
                           "sentids": [2 * n, 2 * n + 1],
                           "sentences": [{"tokens": c.split(), "raw": c, "imgid": n, "sentid": 2 * n + i} for i, c in enumerate(caps)]})
            n += 1
    path = root / "dataset_coco.json"
    path.write_text(json.dumps({"images": images, "dataset": "coco"}))
    return path


def image_folder(root: Path, per_class: int = 3) -> Path:
    for c in ("blue", "green", "red"):
        for i in range(per_class):
            image(root / c / f"{c}_{i}.png", c)
    return root


GLUE_ROWS = {
    "sst2": ("sentence\tlabel\n", ["a great film\t1", "a dull mess\t0", "great fun\t1", "boring\t0"]),
    "cola": (None, ["gj04\t1\t\tThe dog barked.", "gj04\t0\t*\tDog the barked.", "gj04\t1\t\tShe ran home.", "gj04\t0\t*\tRan she home the."]),
    "mrpc": ("Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n", ["1\t1\t2\tHe left.\tHe went away.", "0\t3\t4\tIt rains.\tCats sleep.",
                                                              "1\t5\t6\tWe won.\tWe were victorious.", "0\t7\t8\tBlue sky.\tHot soup."]),
    "stsb": ("index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n",
             ["0\tmain\tx\t2012\t1\tnone\tnone\tA man plays.\tA man is playing.\t5.000",
              "1\tmain\tx\t2012\t2\tnone\tnone\tA cat eats.\tA plane flies.\t0.500",
              "2\tmain\tx\t2012\t3\tnone\tnone\tA dog runs.\tA dog is running fast.\t4.200",
              "3\tmain\tx\t2012\t4\tnone\tnone\tKids play.\tStocks fell.\t0.000"]),
    "rte": ("index\tsentence1\tsentence2\tlabel\n", ["0\tA cat sat.\tAn animal sat.\tentailment", "1\tIt is hot.\tIt is cold.\tnot_entailment",
                                                    "2\tHe ate.\tHe consumed food.\tentailment", "3\tSun.\tMoon.\tnot_entailment"]),
}


def glue_file(root: Path, task: str, name: str = "train") -> Path:
    header, rows = GLUE_ROWS[task]
    path = root / task / f"{name}.tsv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text((header or "") + "\n".join(rows) + "\n")
    return path


def trained_run(folder: Path, *, fusion: bool = True, seed: int = 0) -> Path:
    """A kgclip run folder with one checkpoint of a kgclip-tiny model, as knowledge training writes
    it: a Knowledge-CLIP run (fusion losses on) or a CLIP run (only KD and the CLIP loss). The
    fusion encoder's <head> token is set to 0.5 everywhere, so a test can tell it apart."""
    import torch

    from kgclip.config import to_dict
    from kgclip.losses import LossConfig
    from kgclip.model import KnowledgeCLIP, ModelConfig
    from kgclip.training.config import RunConfig

    model_cfg = ModelConfig(fusion_width=32, fusion_layers=1, fusion_heads=4, drop_path=0.0, max_text_tokens=8)
    loss = LossConfig() if fusion else LossConfig(e2e=0.0, e2r=0.0, g2e=0.0)
    cfg = RunConfig(name=folder.name, run_dir=str(folder.parent), seed=seed, model=model_cfg, loss=loss)
    torch.manual_seed(seed)
    m = KnowledgeCLIP(model_cfg, 3)
    with torch.no_grad():
        m.fusion.head_token.fill_(0.5)
        m.clip.visual.class_embedding.fill_(0.25)
    (folder / "checkpoints").mkdir(parents=True)
    torch.save({"model": m.state_dict(), "config": to_dict(cfg), "num_relations": 3, "step": 1}, folder / "checkpoints" / "step-0000001.pt")
    return folder
