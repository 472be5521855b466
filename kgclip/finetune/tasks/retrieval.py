"""Image-text retrieval fine-tuning: the towers with CLIP's contrastive loss (Karpathy splits)."""

from typing import Any

import numpy as np
import torch
from open_clip.loss import ClipLoss
from torch import Tensor, nn

from kgclip.errors import ConfigError
from kgclip.evaluation.tasks import retrieval_metrics
from kgclip.finetune.config import RetrievalConfig
from kgclip.finetune.data import Batch
from kgclip.finetune.formats.karpathy import CaptionedImage, read_karpathy
from kgclip.finetune.init import Backbone
from kgclip.finetune.models import DualEncoder
from kgclip.finetune.tasks.base import Evaluation, FinetuneTask, gather_records, require, unwrap
from kgclip.skips import Skips
from kgclip.training.distributed import DistEnv


class RetrievalTask(FinetuneTask):
    """Contrastive fine-tuning on every (image, caption) pair of ``train`` + ``restval``; evaluated
    on ``eval_splits`` with the evaluation suite's metrics (``txt_r1/5/10``, ``img_r1/5/10``,
    ``r_mean``; a split other than ``test`` prefixes its name, e.g. ``val_r_mean``).

    Batches: ``images`` [B, 3, H, W], ``texts`` [B, context].
    """

    name = "retrieval"
    loss_parts = ("contrastive",)

    def __init__(self, config: RetrievalConfig, backbone: Backbone, skips: Skips) -> None:
        super().__init__(config, backbone, skips)
        d = config.data
        require(d, ("karpathy", "images"), self.name)
        bad = [s for s in config.eval_splits if s not in ("val", "test")]
        if bad:
            raise ConfigError(f"eval_splits: {bad} are not Karpathy evaluation splits (val, test)")
        self.splits = read_karpathy(d.karpathy, d.images, skips)
        self.train_examples = [(im, cap) for im in self.splits.train for cap in im.captions]
        self._loss: ClipLoss | None = None

    def make_model(self) -> nn.Module:
        return DualEncoder(self.backbone.model.clip)

    def loader(self, env: DistEnv):
        self._loss = ClipLoss(local_loss=False, gather_with_grad=True, rank=env.rank, world_size=env.world_size)
        return super().loader(env)

    def example_name(self, i: int) -> str:
        return f"{self.config.data.karpathy}:{self.train_examples[i][0].name}"

    def train_item(self, i: int, seed: int | None) -> Any:
        im, cap = self.train_examples[i]
        return self.image(im.image, seed), cap

    def collate(self, indices: list[int], items: list[Any]) -> dict[str, Tensor]:
        images, texts = zip(*items, strict=True)
        return {"images": torch.stack(images), "texts": self.tokenizer(list(texts))}

    def loss(self, model: nn.Module, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        self.note_skipped(batch)
        img, txt, scale = model(batch["images"], batch["texts"])
        loss = (self._loss or ClipLoss())(img.float(), txt.float(), scale.float())
        return loss, {"contrastive": loss}

    def summary(self) -> dict[str, Any]:
        s = self.splits
        return {"train images": len(s.train), "train pairs": len(self.train_examples), "val images": len(s.val), "test images": len(s.test)}

    def _split_metrics(self, net: DualEncoder, images: list[CaptionedImage], env: DistEnv, split: str) -> tuple[dict[str, float], list[dict]]:
        if self.config.max_eval_images is not None:
            images = images[: self.config.max_eval_images]
        texts = [(i, c) for i, im in enumerate(images) for c in im.captions]
        img_out = self.eval_loop(range(len(images)), lambda i, _s: self.image(images[i].image, None, train=False),
                                 lambda idx, items: {"images": torch.stack(items)}, lambda i: images[i].name,
                                 lambda b: net.encode_images(b["images"]).float().cpu(), env, f"eval {split} images")
        txt_out = self.eval_loop(range(len(texts)), lambda i, _s: texts[i][1], lambda idx, items: {"texts": self.tokenizer(items)},
                                 lambda i: f"caption {i}", lambda b: net.encode_texts(b["texts"]).float().cpu(), env, f"eval {split} texts")
        img_rows = dict(gather_records([(int(i), e) for b, emb in img_out for i, e in zip(b.index, emb, strict=True)], env))
        txt_rows = dict(gather_records([(int(i), e) for b, emb in txt_out for i, e in zip(b.index, emb, strict=True)], env))
        kept = sorted(img_rows)  # images whose file decoded; their captions are ranked against them alone
        pos = {i: k for k, i in enumerate(kept)}
        t_ids = [j for j in sorted(txt_rows) if texts[j][0] in pos]
        if not kept:
            return {k: float("nan") for k in retrieval_metrics(torch.zeros(1, 1), np.zeros(1))}, []
        ie = torch.stack([img_rows[i] for i in kept])
        te = torch.stack([txt_rows[j] for j in t_ids])
        owner = np.array([pos[texts[j][0]] for j in t_ids])
        sim = ie @ te.T
        metrics = retrieval_metrics(sim, owner)
        top = sim.topk(min(5, sim.shape[1]), dim=1).indices
        preds = [{"split": split, "image": images[i].name, "top_captions": [texts[t_ids[int(j)]][1] for j in top[k]]} for k, i in enumerate(kept)]
        return metrics, preds

    def evaluate(self, model: nn.Module, env: DistEnv) -> Evaluation:
        net = unwrap(model).eval()
        metrics: dict[str, float] = {}
        predictions: list[dict] = []
        details: dict[str, Any] = {}
        for split in self.config.eval_splits:
            images = getattr(self.splits, split)
            if not images:
                details[f"{split} split"] = "no images: not evaluated"
                continue
            m, p = self._split_metrics(net, images, env, split)
            metrics.update({(k if split == "test" else f"{split}_{k}"): v for k, v in m.items()})
            predictions += p
        return Evaluation(metrics, predictions, details)
