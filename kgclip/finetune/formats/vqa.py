"""VQA v2 for fine-tuning: questions + annotations + COCO images, the answer vocabulary, soft targets.

Files as published at https://visualqa.org/download.html (read by :mod:`kgclip.evaluation.vqa`);
images are found under a folder by COCO file name (``COCO_<subtype>_<12-digit id>.jpg`` or
``<12-digit id>.jpg``, in any sub-folder).

The answer vocabulary is the ``size`` most frequent ``multiple_choice_answer`` of the training
annotations after the official normalisation (ties broken alphabetically); the standard setting
is 3,129 answers. A question's soft target for a vocabulary answer is the official accuracy that
answering it would get (0.3, 0.6, 0.9, 1.0 for 1, 2, 3, 4+ of ten annotators), so the BCE target
and the reported metric are the same rule.
"""

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from kgclip.errors import KgclipError
from kgclip.evaluation.vqa import (
    Annotation,
    answer_accuracy,
    normalize_answer,
    pair_questions,
    read_annotations,
    read_questions,
    read_subtype,
    reference_answers,
)
from kgclip.finetune.images import coco_index
from kgclip.skips import Skips


@dataclass
class VqaExample:
    """One question with its image and its annotation."""

    question_id: int
    image: str
    question: str
    annotation: Annotation


@dataclass
class VqaSplit:
    """A VQA v2 split as read for fine-tuning.

    Attributes:
        examples: the usable questions (question + annotation + an image found), in file order.
        question_ids: every question with both a question and an annotation record, in the
            questions file's order: what ``kgclip score vqa`` scores (a question without an image
            among them has no prediction and scores 0).
        annotations: the annotation of each of ``question_ids``.
    """

    examples: list[VqaExample]
    question_ids: list[int]
    annotations: dict[int, Annotation]


def read_vqa_split(questions: str | Path, annotations: str | Path, images: str | Path, skips: Skips,
                   image_index: dict[int, Path] | None = None) -> VqaSplit:
    """A VQA v2 split: its usable questions and every question the official scoring counts.

    Args:
        questions, annotations: the split's two JSON files.
        images: the folder holding its COCO images (searched recursively).
        skips: where unusable records are counted (a question without an image among them).
        image_index: a ready :func:`~kgclip.finetune.images.coco_index` (else built from ``images``).

    Raises:
        KgclipError: no question is usable.
    """
    qs = read_questions(questions, skips)
    anns = read_annotations(annotations, skips)
    ids = pair_questions(qs, anns, skips, questions, annotations)
    index = image_index if image_index is not None else coco_index(images, read_subtype(questions))
    out = []
    for qid in ids:
        q = qs[qid]
        path = index.get(q.image_id)
        if path is None:
            skips.add(f"{questions}:question_id={qid}", f"image {q.image_id} not found under {images}")
            continue
        out.append(VqaExample(qid, str(path), q.question, anns[qid]))
    if not out:
        raise KgclipError(f"{questions}: no usable question (each needs an annotation in {annotations} and an image under {images}); "
                          f"{skips.summary() or 'the file has no questions'}")
    return VqaSplit(out, ids, {qid: anns[qid] for qid in ids})


def read_vqa(questions: str | Path, annotations: str | Path, images: str | Path, skips: Skips,
             image_index: dict[int, Path] | None = None) -> list[VqaExample]:
    """The usable questions of a VQA v2 split (question + annotation + existing image); see :func:`read_vqa_split`."""
    return read_vqa_split(questions, annotations, images, skips, image_index).examples


def answer_vocabulary(examples: list[VqaExample], size: int) -> list[str]:
    """The ``size`` most frequent normalised ``multiple_choice_answer`` (the most frequent annotator
    answer where it is missing), most frequent first, ties alphabetical."""
    if size < 1:
        raise KgclipError(f"num_answers must be at least 1, got {size}")
    counts: Counter[str] = Counter()
    for ex in examples:
        a = ex.annotation
        mc = a.multiple_choice_answer if a.multiple_choice_answer is not None else Counter(a.answers).most_common(1)[0][0]
        norm = normalize_answer(mc)
        if norm:
            counts[norm] += 1
    return [a for a, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:size]]


def soft_targets(annotation: Annotation, vocab_index: dict[str, int]) -> dict[int, float]:
    """{vocabulary index: official accuracy of answering it} for the question's distinct answers
    that are in the vocabulary (non-zero entries only)."""
    refs = reference_answers(annotation.answers)
    out: dict[int, float] = {}
    for ans in set(annotation.answers):
        norm = normalize_answer(ans)
        j = vocab_index.get(norm)
        if j is not None and j not in out:
            score = answer_accuracy(norm, refs)
            if score > 0:
                out[j] = score
    return out
