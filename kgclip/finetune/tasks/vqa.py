"""VQA v2 fine-tuning: the fusion encoder over image and question, soft-score BCE over the answers."""

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kgclip.evaluation.vqa import score
from kgclip.finetune.config import VqaConfig
from kgclip.finetune.data import Batch
from kgclip.finetune.formats.vqa import answer_vocabulary, read_vqa, read_vqa_split, soft_targets
from kgclip.finetune.images import coco_index
from kgclip.finetune.init import Backbone
from kgclip.finetune.models import FusionClassifier
from kgclip.finetune.tasks.base import Evaluation, FinetuneTask, gather_records, require, unwrap
from kgclip.skips import Skips
from kgclip.training.distributed import DistEnv


class VqaTask(FinetuneTask):
    """VQA v2 (see :mod:`kgclip.finetune.formats.vqa`).

    Batches: ``images`` [B, 3, H, W], ``texts`` [B, context] question tokens, ``targets`` [B, A]
    soft scores over the answer vocabulary.

    Evaluation scores every question of the evaluation files that has both a question and an
    annotation record, as ``kgclip score vqa`` does: a question whose image is missing or fails to
    load has no prediction and scores 0 (counted as ``vqa_unanswered``).
    """

    name = "vqa"
    loss_parts = ("bce",)

    def __init__(self, config: VqaConfig, backbone: Backbone, skips: Skips) -> None:
        super().__init__(config, backbone, skips)
        d = config.data
        require(d, ("train_questions", "train_annotations", "eval_questions", "eval_annotations", "images"), self.name)
        index = coco_index(d.images)
        self.train_examples = read_vqa(d.train_questions, d.train_annotations, d.images, skips, index)
        self.eval_split = read_vqa_split(d.eval_questions, d.eval_annotations, d.images, skips, index)
        self.eval_examples = self.eval_split.examples
        self.vocab = answer_vocabulary(self.train_examples, config.num_answers)
        index_of = {a: i for i, a in enumerate(self.vocab)}
        self.targets = [soft_targets(ex.annotation, index_of) for ex in self.train_examples]

    def make_model(self) -> nn.Module:
        return FusionClassifier(self.backbone.model, len(self.vocab), self.config.head_hidden)

    def example_name(self, i: int) -> str:
        return f"{self.config.data.train_questions}:question_id={self.train_examples[i].question_id}"

    def train_item(self, i: int, seed: int | None) -> Any:
        ex = self.train_examples[i]
        return self.image(ex.image, seed), ex.question, self.targets[i]

    def collate(self, indices: list[int], items: list[Any]) -> dict[str, Tensor]:
        images, questions, targets = zip(*items, strict=True)
        t = torch.zeros(len(items), len(self.vocab))
        for row, scores in enumerate(targets):
            for j, s in scores.items():
                t[row, j] = s
        return {"images": torch.stack(images), "texts": self.tokenizer(list(questions)), "targets": t}

    def loss(self, model: nn.Module, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        self.note_skipped(batch)
        logits = model(batch["images"], batch["texts"]).float()
        # summed over answers, averaged over questions (the usual VQA scale of the BCE)
        bce = F.binary_cross_entropy_with_logits(logits, batch["targets"], reduction="sum") / max(len(batch), 1)
        return bce, {"bce": bce}

    def extra(self) -> dict[str, Any]:
        return {"answer_vocabulary": list(self.vocab)}

    def summary(self) -> dict[str, Any]:
        covered = sum(1 for t in self.targets if t)
        return {"train questions": len(self.train_examples), "eval questions": len(self.eval_split.question_ids),
                "eval questions with an image": len(self.eval_examples),
                "answer vocabulary": len(self.vocab), "train questions with an answer in the vocabulary": covered}

    def _eval_item(self, i: int, seed: int | None) -> Any:
        ex = self.eval_examples[i]
        return self.image(ex.image, None, train=False), ex.question

    def _eval_collate(self, indices: list[int], items: list[Any]) -> dict[str, Tensor]:
        images, questions = zip(*items, strict=True)
        return {"images": torch.stack(images), "texts": self.tokenizer(list(questions))}

    def evaluate(self, model: nn.Module, env: DistEnv) -> Evaluation:
        net = unwrap(model).eval()
        outs = self.eval_loop(range(len(self.eval_examples)), self._eval_item, self._eval_collate,
                              lambda i: f"{self.config.data.eval_questions}:question_id={self.eval_examples[i].question_id}",
                              lambda b: net(b["images"], b["texts"]).argmax(-1).cpu(), env, "eval vqa")
        mine = [(self.eval_examples[int(i)].question_id, self.vocab[int(a)]) for b, ans in outs for i, a in zip(b.index, ans, strict=True)]
        answers = dict(gather_records(mine, env))
        s = score(self.eval_split.annotations, answers, self.eval_split.question_ids)
        metrics = {"vqa_overall": s.overall, **{f"vqa_{t}": v for t, v in s.per_answer_type.items()}, "vqa_unanswered": s.missing}
        predictions = [{"question_id": q, "answer": a} for q, a in sorted(answers.items())]
        return Evaluation(metrics, predictions, {"per_question_type": s.per_question_type, "scored questions": s.questions,
                                                 "questions without a prediction (image missing or failed to load; scored 0)": s.missing})
