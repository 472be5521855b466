"""Tower-level tasks: zero-shot classification, image-text retrieval, ARO-style binding tests.

Zero-shot and binding read a small JSON of items (image paths relative to the JSON's folder):

- zero_shot.json: ``{"tasks": {NAME: {"classes": [...], "templates": ["a photo of a {}.", ...]}},
  "items": [{"image": PATH, "labels": {NAME: CLASS}}]}``
- binding.json: ``{"items": [{"image": PATH, "caption": TRUE, "relation_swap": TEXT,
  "attribute_swap": TEXT}]}`` (either swap may be missing).

Retrieval uses the store's own image-caption pairs (``image of`` triplets of a split).
"""

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from kgclip.errors import KgclipError
from kgclip.evaluation.scorers import Scorer
from kgclip.store.reader import KnowledgeStore
from kgclip.vocabulary import IMAGE_OF, relation_ids


def _load_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise KgclipError(f"{path}: cannot read evaluation items ({exc})") from None


def _images(paths: list[Path], preprocess) -> torch.Tensor:
    out = []
    for p in paths:
        try:
            with Image.open(p) as im:
                out.append(preprocess(im.convert("RGB")))
        except OSError as exc:
            raise KgclipError(f"{p}: cannot load evaluation image ({exc})") from None
    return torch.stack(out)


def _batched(fn, x: torch.Tensor, size: int = 256) -> torch.Tensor:
    return torch.cat([fn(x[i : i + size]) for i in range(0, len(x), size)])


def zero_shot(scorer: Scorer, items_json: str | Path) -> dict[str, float]:
    """Top-1, top-5 and mean per-class recall for each task, with prompt ensembles."""
    spec = _load_json(items_json)
    root = Path(items_json).parent
    images = _batched(scorer.encode_images, _images([root / it["image"] for it in spec["items"]], scorer.preprocess))
    out: dict[str, float] = {}
    for name, task in spec["tasks"].items():
        classes, templates = task["classes"], task.get("templates", ["a photo of a {}."])
        weights = []
        for c in classes:
            emb = scorer.encode_texts(scorer.tokenizer([t.format(c) for t in templates]))
            weights.append(F.normalize(emb.mean(0), dim=-1))
        logits = images @ torch.stack(weights).T
        labels = [it["labels"].get(name) for it in spec["items"]]
        keep = torch.tensor([lab in classes for lab in labels])
        y = torch.tensor([classes.index(lab) if lab in classes else -1 for lab in labels])[keep]
        lg = logits[keep]
        top = lg.topk(min(5, len(classes)), dim=-1).indices
        out[f"zs_{name}_top1"] = float((top[:, 0] == y).float().mean())
        out[f"zs_{name}_top5"] = float((top == y[:, None]).any(1).float().mean())
        recalls = [float((top[y == k, 0] == k).float().mean()) for k in range(len(classes)) if (y == k).any()]
        out[f"zs_{name}_mean_recall"] = float(np.mean(recalls))
    return out


def retrieval(scorer: Scorer, store: KnowledgeStore, split: str = "test", relation: str = IMAGE_OF) -> dict[str, float]:
    """Image-text retrieval both ways over the split's image-caption pairs, named as LAVIS does.

    ``txt_r@k``: an image finds its text if any of its captions is in the top k; ``img_r@k``: a
    caption finds its image in the top k.
    """
    rel_ids = relation_ids(store, relation)
    t = store.triplets
    pairs = t[(t["split"] == split) & t["relation_id"].isin(rel_ids)]
    if len(pairs) == 0:
        return {}
    img_ids = np.unique(pairs["head_id"].to_numpy())
    txt_ids = np.unique(pairs["tail_id"].to_numpy())
    # a text linked to several images (merged by --link text) is a true caption of each of them
    true_pair = torch.zeros(len(img_ids), len(txt_ids), dtype=torch.bool)
    true_pair[np.searchsorted(img_ids, pairs["head_id"].to_numpy()), np.searchsorted(txt_ids, pairs["tail_id"].to_numpy())] = True
    ie = scorer.embed(torch.from_numpy(img_ids)).cpu()
    te = scorer.embed(torch.from_numpy(txt_ids)).cpu()
    return retrieval_metrics(ie @ te.T, true_pair)


def retrieval_metrics(sim: torch.Tensor, text_image: np.ndarray | torch.Tensor) -> dict[str, float]:
    """Recall@1/5/10 both ways from an [images, texts] similarity matrix, named as LAVIS does.

    Args:
        sim: [I, T] scores of every image against every text.
        text_image: [T] the image (row of ``sim``) each text belongs to, or an [I, T] boolean
            matrix of the true pairs (a text may belong to several images).

    ``txt_r{k}``: an image finds one of its texts in its top k; ``img_r{k}``: a text finds one of
    its images in its top k; ``*_r_mean`` the mean over k, ``r_mean`` the mean of both.
    """
    owner = torch.as_tensor(np.asarray(text_image))
    n_img = sim.shape[0]
    if owner.dim() == 1:
        true_pair = torch.zeros(sim.shape, dtype=torch.bool)
        true_pair[owner.long(), torch.arange(sim.shape[1])] = True
    else:
        true_pair = owner.bool()
    out: dict[str, float] = {}
    for k in (1, 5, 10):
        top_t = sim.topk(min(k, sim.shape[1]), dim=1).indices  # texts per image
        out[f"txt_r{k}"] = float(true_pair.gather(1, top_t).any(1).double().mean())
        top_i = sim.T.topk(min(k, n_img), dim=1).indices  # images per text
        out[f"img_r{k}"] = float(true_pair.T.gather(1, top_i).any(1).double().mean())
    out["txt_r_mean"] = float(np.mean([out[f"txt_r{k}"] for k in (1, 5, 10)]))
    out["img_r_mean"] = float(np.mean([out[f"img_r{k}"] for k in (1, 5, 10)]))
    out["r_mean"] = (out["txt_r_mean"] + out["img_r_mean"]) / 2
    return out


def binding(scorer: Scorer, items_json: str | Path, pair_relation: int | None = None) -> dict[str, float]:
    """ARO-style accuracy: the true caption must outscore its swapped version (ties count half).

    Scored by the towers (``aro_*``) and, when ``pair_relation`` (the id of "image of") is given,
    also by the model's triplet rule ``score(image, image of, caption)`` (``aro_*_kg``).
    """
    spec = _load_json(items_json)
    root = Path(items_json).parent
    items = spec["items"]
    images = _images([root / it["image"] for it in items], scorer.preprocess)
    img_emb = _batched(scorer.encode_images, images)
    out: dict[str, float] = {}
    for kind in ("relation_swap", "attribute_swap"):
        sel = [i for i, it in enumerate(items) if it.get(kind)]
        if not sel:
            continue
        true_tok = scorer.tokenizer([items[i]["caption"] for i in sel])
        swap_tok = scorer.tokenizer([items[i][kind] for i in sel])
        emb = img_emb[sel]
        s_true = (emb * _batched(scorer.encode_texts, true_tok)).sum(-1)
        s_swap = (emb * _batched(scorer.encode_texts, swap_tok)).sum(-1)
        name = "aro_relation" if kind == "relation_swap" else "aro_attribute"
        out[name] = float(((s_true > s_swap).float() + 0.5 * (s_true == s_swap).float()).mean())
        if pair_relation is not None:
            k_true = scorer.pair_scores(images[sel], true_tok, pair_relation)
            k_swap = scorer.pair_scores(images[sel], swap_tok, pair_relation)
            out[f"{name}_kg"] = float(((k_true > k_swap).float() + 0.5 * (k_true == k_swap).float()).mean())
    return out
