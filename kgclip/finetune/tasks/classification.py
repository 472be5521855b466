"""Image classification (ImageNet-style ImageFolder): a linear probe or full fine-tuning of the image tower."""

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kgclip.finetune.config import ClassificationConfig
from kgclip.finetune.data import Batch
from kgclip.finetune.formats.image_folder import read_image_folder
from kgclip.finetune.init import Backbone
from kgclip.finetune.metrics import topk_accuracy
from kgclip.finetune.models import ImageClassifier
from kgclip.finetune.tasks.base import Evaluation, FinetuneTask, gather_records, require, unwrap
from kgclip.skips import Skips
from kgclip.training.distributed import DistEnv


class ClassificationTask(FinetuneTask):
    """Cross-entropy over the training folder's classes; ``top1`` / ``top5`` on the evaluation folder.

    Batches: ``images`` [B, 3, H, W], ``labels`` [B].
    """

    name = "classification"
    loss_parts = ("ce",)

    def __init__(self, config: ClassificationConfig, backbone: Backbone, skips: Skips) -> None:
        super().__init__(config, backbone, skips)
        d = config.data
        require(d, ("train", "eval"), self.name)
        self.train_examples, self.classes = read_image_folder(d.train, skips)
        self.eval_examples, _ = read_image_folder(d.eval, skips, self.classes)

    def make_model(self) -> nn.Module:
        return ImageClassifier(self.backbone.model.clip, len(self.classes), self.config.mode, self.config.head_hidden)

    def example_name(self, i: int) -> str:
        return self.train_examples[i].image

    def train_item(self, i: int, seed: int | None) -> Any:
        ex = self.train_examples[i]
        return self.image(ex.image, seed), ex.label

    def collate(self, indices: list[int], items: list[Any]) -> dict[str, Tensor]:
        images, labels = zip(*items, strict=True)
        return {"images": torch.stack(images), "labels": torch.tensor(labels, dtype=torch.long)}

    def loss(self, model: nn.Module, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        self.note_skipped(batch)
        ce = F.cross_entropy(model(batch["images"]).float(), batch["labels"])
        return ce, {"ce": ce}

    def extra(self) -> dict[str, Any]:
        return {"classes": list(self.classes)}

    def summary(self) -> dict[str, Any]:
        return {"mode": self.config.mode, "classes": len(self.classes), "train images": len(self.train_examples),
                "eval images": len(self.eval_examples)}

    def _eval_item(self, i: int, seed: int | None) -> Any:
        ex = self.eval_examples[i]
        return self.image(ex.image, None, train=False), ex.label

    def evaluate(self, model: nn.Module, env: DistEnv) -> Evaluation:
        net = unwrap(model).eval()
        outs = self.eval_loop(range(len(self.eval_examples)), self._eval_item, self.collate, lambda i: self.eval_examples[i].image,
                              lambda b: net(b["images"]).float().cpu(), env, "eval classification")
        mine = [(int(i), s) for b, scores in outs for i, s in zip(b.index, scores, strict=True)]
        done = sorted(gather_records(mine, env), key=lambda x: x[0])
        if not done:
            return Evaluation({"top1": float("nan"), "top5": float("nan")}, [], {"evaluated images": 0})
        scores = torch.stack([s for _, s in done]).numpy()
        gold = np.array([self.eval_examples[i].label for i, _ in done])
        metrics = {"top1": topk_accuracy(scores, gold, 1), "top5": topk_accuracy(scores, gold, 5)}
        top = np.argsort(-scores, axis=1, kind="stable")[:, :5]
        predictions = [{"image": self.eval_examples[i].image, "label": self.classes[self.eval_examples[i].label],
                        "top5": [self.classes[int(c)] for c in top[k]]} for k, (i, _) in enumerate(done)]
        return Evaluation(metrics, predictions, {"evaluated images": len(done), "not evaluated (image failed)": len(self.eval_examples) - len(done)})
