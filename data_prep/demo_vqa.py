"""VQA on the demo world, written in the VQA v2 format, with the question types of the paper's Table 7.

Every question is computed from a scene's objects, so every answer is right by construction. Types
(stored in each annotation's ``question_type``): ``color``, ``position``, ``size``, ``count``,
``shape``, ``negation``; answer types ``yes/no``, ``number``, ``other`` as in VQA v2. Questions on
train scenes go to the train files, on valid and test scenes to theirs; no train question or answer
names a held-out colour-shape combination (both words in one question), so those are seen only in
valid and test.

Files (VQA v2 names, with ``demo<split>`` as the subtype):
``v2_OpenEnded_mscoco_demo<split>_questions.json``, ``v2_mscoco_demo<split>_annotations.json`` and
the images as ``images/COCO_demo<split>_<12-digit image id>.jpg``.
"""

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_prep.demo_world import COLOURS, HELD_OUT, SHAPES, Obj, Scene

QUESTION_TYPES = ("color", "position", "size", "count", "shape", "negation")
ANSWER_TYPES = ("yes/no", "number", "other")
_AXIS = {"left of": "x", "right of": "x", "above": "y", "below": "y"}
_WHERE = {"left of": "left", "right of": "right", "above": "above", "below": "below"}
_PLURAL = {"circle": "circles", "square": "squares", "triangle": "triangles", "diamond": "diamonds"}


@dataclass(frozen=True)
class Question:
    """One question about one scene, with its answer."""

    question_type: str
    question: str
    answer: str

    @property
    def answer_type(self) -> str:
        if self.answer in ("yes", "no"):
            return "yes/no"
        return "number" if self.answer.isdigit() else "other"


def _matches(o: Obj, colour: str | None, shape: str | None, size: str | None) -> bool:
    return (colour is None or o.colour == colour) and (shape is None or o.shape == shape) and (size is None or o.size == size)


def refer(o: Obj, scene: Scene, without: str | None = None) -> str | None:
    """The shortest phrase ("the red circle", "the big circle", "the small red object") that picks ``o`` alone.

    ``without`` names an attribute (``colour``, ``shape``, ``size``) the phrase must not use (the
    one being asked about). None when no phrase picks ``o`` alone.
    """
    options = [("shape",), ("colour", "shape"), ("size", "shape"), ("colour",), ("size", "colour"), ("size", "colour", "shape")]
    for attrs in options:
        if without in attrs:
            continue
        spec = {a: getattr(o, a) if a in attrs else None for a in ("colour", "shape", "size")}
        if sum(_matches(x, **spec) for x in scene.objects) == 1:
            words = [spec["size"], spec["colour"], spec["shape"] or "object"]
            return "the " + " ".join(w for w in words if w)
    return None


def _side(a: Obj, b: Obj) -> str | None:
    """Where ``a`` is relative to ``b`` (left of, right of, above, below) on the axis where they differ most.

    None when the two axes differ by less than 20% (no clear answer).
    """
    dx, dy = a.cx - b.cx, a.cy - b.cy
    if abs(abs(dx) - abs(dy)) < 0.2 * max(abs(dx), abs(dy)):
        return None
    if abs(dx) > abs(dy):
        return "left of" if dx < 0 else "right of"
    return "above" if dy < 0 else "below"


def all_questions(scene: Scene) -> list[Question]:
    """Every question the templates ask about ``scene``, each with its answer (deterministic order)."""
    objs = scene.objects
    out: list[Question] = []
    for o in objs:
        if ref := refer(o, scene, without="colour"):
            out.append(Question("color", f"What color is {ref}?", o.colour))
            for c in COLOURS:  # the phrase names no colour, so the text alone does not answer
                out.append(Question("negation", f"Is {ref} not {c}?", "yes" if o.colour != c else "no"))
        if ref := refer(o, scene, without="shape"):
            out.append(Question("shape", f"What shape is {ref}?", o.shape))
        if ref := refer(o, scene, without="size"):
            out.append(Question("size", f"What size is {ref}?", o.size))
    for a in objs:
        for b in objs:
            if a is b:
                continue
            if (ra := refer(a, scene, without="size")) and (rb := refer(b, scene, without="size")):
                out.append(Question("size", f"Is {ra} bigger than {rb}?", "yes" if a.size == "big" and b.size == "small" else "no"))
            if not (ra := refer(a, scene)) or not (rb := refer(b, scene)):
                continue
            side = _side(a, b)
            if side is None:
                continue
            out.append(Question("position", f"Where is {ra} relative to {rb}?", _WHERE[side]))
            for asked in _AXIS:
                if _AXIS[asked] == _AXIS[side]:  # ask only on the axis with a clear answer
                    out.append(Question("position", f"Is {ra} {asked} {rb}?", "yes" if asked == side else "no"))
    out.append(Question("count", "How many objects are there?", str(len(objs))))
    for s in SHAPES:
        out.append(Question("count", f"How many {_PLURAL[s]} are there?", str(sum(o.shape == s for o in objs))))
    for c in COLOURS:
        out.append(Question("count", f"How many {c} objects are there?", str(sum(o.colour == c for o in objs))))
    for c in COLOURS:
        for s in SHAPES:
            out.append(Question("negation", f"Is there no {c} {s}?", "no" if any(_matches(o, c, s, None) for o in objs) else "yes"))
    return out


def names_held_out(q: Question) -> bool:
    """Whether the question and answer together name both words of a held-out colour-shape combination."""
    words = set((q.question.rstrip("?") + " " + q.answer).lower().split())
    words |= {s for s, p in _PLURAL.items() if p in words}
    return any(c in words and s in words for c, s in HELD_OUT)


def sample_questions(scene: Scene, rng: np.random.Generator, per_type: int = 1) -> list[Question]:
    """Up to ``per_type`` questions of each type for ``scene``, each drawn answer first.

    Drawing the answer first (uniformly among the answers the type has in this scene) balances
    yes and no, and keeps "0" from dominating the counts. Train scenes get no question that names
    a held-out combination.
    """
    pool = [q for q in all_questions(scene) if scene.split != "train" or not names_held_out(q)]
    out = []
    for qt in QUESTION_TYPES:
        cands = [q for q in pool if q.question_type == qt]
        for _ in range(per_type):
            if not cands:
                break
            answers = sorted({q.answer for q in cands})
            want = answers[int(rng.integers(len(answers)))]
            with_answer = [q for q in cands if q.answer == want]
            q = with_answer[int(rng.integers(len(with_answer)))]
            cands.remove(q)
            out.append(q)
    return out


def image_name(subtype: str, image_id: int) -> str:
    """The COCO file name VQA v2 uses: ``COCO_<subtype>_<12-digit id>.jpg``."""
    return f"COCO_{subtype}_{image_id:012d}.jpg"


def write_demo_vqa(folder: str | Path, scenes: list[Scene], scene_image, seed: int = 0, per_type: int = 1) -> dict[str, dict[str, Path]]:
    """Write the VQA v2 files of every split that has scenes.

    Args:
        folder: output folder (``images/`` is made in it).
        scenes: the world's scenes (their ``split`` decides the file).
        scene_image: function from a scene to its rendered image file (copied under the COCO name).
        seed: question sampling seed.
        per_type: questions of each type per scene (fewer when a scene has fewer).

    Returns:
        For each split, the paths ``questions``, ``annotations`` and ``images`` (the folder).
    """
    root = Path(folder)
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed + 7)
    out = {}
    for split in ("train", "valid", "test"):
        part = [s for s in scenes if s.split == split]
        if not part:
            continue
        subtype = f"demo{split}"  # alphanumeric, as COCO's (train2014)
        questions, annotations = [], []
        for sc in part:
            shutil.copyfile(scene_image(sc), images / image_name(subtype, sc.image_id))
            for k, q in enumerate(sample_questions(sc, rng, per_type)):
                qid = sc.image_id * 1000 + k
                questions.append({"image_id": sc.image_id, "question": q.question, "question_id": qid})
                annotations.append({"question_id": qid, "image_id": sc.image_id, "question_type": q.question_type, "answer_type": q.answer_type,
                                    "multiple_choice_answer": q.answer,
                                    "answers": [{"answer": q.answer, "answer_confidence": "yes", "answer_id": i} for i in range(1, 11)]})
        head = {"info": {"description": "kgclip demo world VQA (VQA v2 format)", "version": "2.0"}, "license": {"name": "CC BY 4.0"},
                "data_subtype": subtype, "data_type": "mscoco"}
        qpath = root / f"v2_OpenEnded_mscoco_{subtype}_questions.json"
        apath = root / f"v2_mscoco_{subtype}_annotations.json"
        qpath.write_text(json.dumps({**head, "task_type": "Open-Ended", "questions": questions}))
        apath.write_text(json.dumps({**head, "annotations": annotations}))
        out[split] = {"questions": qpath, "annotations": apath, "images": images}
    return out
