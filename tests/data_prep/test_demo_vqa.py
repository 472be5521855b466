import json
import re
from pathlib import Path

import numpy as np
import pytest

from data_prep.demo_vqa import ANSWER_TYPES, QUESTION_TYPES, Question, all_questions, names_held_out, refer, sample_questions
from data_prep.demo_world import HELD_OUT, Obj, Scene, write_demo_world
from kgclip.finetune.formats.vqa import read_vqa
from kgclip.skips import Skips


def _scene(split: str = "test") -> Scene:
    """A big red circle top left, a small blue square top right, a small red triangle bottom left."""
    return Scene(1, 100, 100, [Obj(1, "circle", "red", "big", 20, 20, 15), Obj(2, "square", "blue", "small", 80, 22, 8),
                               Obj(3, "triangle", "red", "small", 22, 80, 8)], split=split)


def test_answers_of_a_hand_made_scene():
    qa: dict[str, set[str]] = {}
    for q in all_questions(_scene()):
        qa.setdefault(q.question, set()).add(q.answer)
    assert all(len(a) == 1 for a in qa.values()), "a question with two answers"
    expected = {
        "What color is the circle?": "red", "What color is the square?": "blue", "What color is the triangle?": "red",
        "What shape is the blue object?": "square", "What shape is the big red object?": "circle", "What shape is the small red object?": "triangle",
        "What size is the circle?": "big", "What size is the square?": "small",
        "Is the circle bigger than the square?": "yes", "Is the square bigger than the triangle?": "no", "Is the square bigger than the circle?": "no",
        "Is the circle left of the square?": "yes", "Is the circle right of the square?": "no", "Where is the circle relative to the square?": "left",
        "Is the circle above the triangle?": "yes", "Is the triangle above the circle?": "no", "Where is the triangle relative to the circle?": "below",
        "How many objects are there?": "3", "How many circles are there?": "1", "How many diamonds are there?": "0",
        "How many red objects are there?": "2", "How many green objects are there?": "0",
        "Is there no red circle?": "no", "Is there no blue circle?": "yes", "Is there no red triangle?": "no",
        "Is the circle not red?": "no", "Is the circle not blue?": "yes", "Is the square not blue?": "no",
    }
    for question, answer in expected.items():
        assert qa.get(question) == {answer}, question
    # no question on the axis without a clear answer, nor between square and triangle (dx = -dy)
    assert "Is the circle above the square?" not in qa
    assert not any(re.search(r"the (square|triangle) relative to the (square|triangle)", q) for q in qa)
    # a phrase never names the attribute asked about ("what color is the red circle")
    assert not any(q.startswith("What color is the red") or q.startswith("What size is the big") for q in qa)


def test_refer_picks_one_object_or_none():
    sc = _scene()
    circle, _, triangle = sc.objects
    assert refer(circle, sc) == "the circle"
    assert refer(triangle, sc, without="shape") == "the small red object"
    twins = Scene(2, 64, 64, [Obj(1, "circle", "red", "big", 10, 10, 5), Obj(2, "circle", "red", "big", 40, 40, 5)])
    assert refer(twins.objects[0], twins) is None


def test_held_out_naming_and_sampling():
    assert names_held_out(Question("negation", "Is there no purple triangle?", "yes"))
    assert names_held_out(Question("color", "What color is the triangle?", "purple"))
    assert names_held_out(Question("count", "How many purple objects are there?", "2")) is False
    assert names_held_out(Question("count", "How many triangles are there?", "1")) is False
    train = _scene("train")
    rng = np.random.default_rng(0)
    for _ in range(20):
        qs = sample_questions(train, rng, per_type=3)
        assert qs and not any(names_held_out(q) for q in qs)
        assert {q.question_type for q in qs} == set(QUESTION_TYPES)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return write_demo_world(tmp_path_factory.mktemp("vqa") / "w", scenes=150, seed=0)


def test_vqa_v2_format_round_trip(world):
    scenes = {s.image_id: s for s in world.scenes}
    seen_ids = set()
    for split, f in world.vqa.items():
        qs = json.loads(f["questions"].read_text())
        an = json.loads(f["annotations"].read_text())
        assert set(qs) == {"info", "task_type", "data_type", "license", "data_subtype", "questions"}
        assert {"annotations", "data_subtype", "data_type", "info", "license"} == set(an)
        subtype = qs["data_subtype"]
        assert subtype == an["data_subtype"] == f"demo{split}"
        assert f["questions"].name == f"v2_OpenEnded_mscoco_{subtype}_questions.json"
        by_id = {a["question_id"]: a for a in an["annotations"]}
        assert len(by_id) == len(an["annotations"]) == len(qs["questions"]) > 0
        for q in qs["questions"]:
            assert set(q) == {"image_id", "question", "question_id"}
            a = by_id[q["question_id"]]
            assert set(a) == {"question_id", "image_id", "question_type", "answer_type", "multiple_choice_answer", "answers"}
            assert a["image_id"] == q["image_id"] and scenes[q["image_id"]].split == split
            assert a["question_type"] in QUESTION_TYPES and a["answer_type"] in ANSWER_TYPES
            assert [x["answer_id"] for x in a["answers"]] == list(range(1, 11))
            assert {x["answer"] for x in a["answers"]} == {a["multiple_choice_answer"]}
            assert all(set(x) == {"answer", "answer_confidence", "answer_id"} for x in a["answers"])
            # the answer is the one computed from the scene
            assert Question(a["question_type"], q["question"], a["multiple_choice_answer"]) in all_questions(scenes[q["image_id"]])
            img = f["images"] / f"COCO_{subtype}_{q['image_id']:012d}.jpg"
            assert img.read_bytes() == (world.images / "VG_100K" / f"{q['image_id']}.jpg").read_bytes()
        assert not seen_ids & set(by_id)
        seen_ids |= set(by_id)
        types = {a["question_type"] for a in an["annotations"]}
        assert types == set(QUESTION_TYPES), split
    assert set(world.vqa) == {"train", "valid", "test"}


def test_the_fine_tuning_reader_uses_every_question(world):
    for split, f in world.vqa.items():
        skips = Skips()
        examples = read_vqa(f["questions"], f["annotations"], f["images"], skips)
        assert not skips.summary()
        assert len(examples) == len(json.loads(f["questions"].read_text())["questions"])
        assert all(Path(ex.image).name == f"COCO_demo{split}_{ex.question_id // 1000:012d}.jpg" for ex in examples)


def test_held_out_combinations_only_in_valid_and_test(world):
    def texts(split):
        f = world.vqa[split]
        qs = json.loads(f["questions"].read_text())["questions"]
        an = {a["question_id"]: a["multiple_choice_answer"] for a in json.loads(f["annotations"].read_text())["annotations"]}
        return [f"{q['question']} {an[q['question_id']]}".lower() for q in qs]

    def names(text, colour, shape):
        words = set(text.replace("?", "").split())
        return colour in words and (shape in words or shape + "s" in words)

    assert not any(names(t, c, s) for t in texts("train") for c, s in HELD_OUT)
    assert any(names(t, c, s) for t in texts("test") for c, s in HELD_OUT)
    train_objects = {(o.colour, o.shape) for sc in world.scenes if sc.split == "train" for o in sc.objects}
    assert not train_objects & set(HELD_OUT)
