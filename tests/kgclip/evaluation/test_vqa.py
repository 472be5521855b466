import json

import pytest

from kgclip.errors import KgclipError
from kgclip.evaluation.vqa import (
    answer_accuracy,
    normalize_answer,
    process_punctuation,
    read_annotations,
    read_questions,
    reference_answers,
    score,
    score_files,
)
from kgclip.skips import Skips


def acc(pred, answers):
    return answer_accuracy(normalize_answer(pred), reference_answers(answers))


@pytest.mark.parametrize(("raw", "norm"), [
    ("Two", "2"), ("two dogs", "2 dogs"), ("None", "0"), ("a dog", "dog"), ("The Cat", "cat"), ("an apple", "apple"),
    ("yes.", "yes"), ("Yes!", "yes"), ("  yes \n", "yes"), ("dont", "don't"), ("isnt", "isn't"),
    ("2.5", "2.5"), ("2,000", "2000"), ("t-shirt", "t shirt"), ("red, white", "red white"), ("hot dog?", "hot dog"),
])
def test_answer_normalisation(raw, norm):
    assert normalize_answer(raw) == norm


def test_punctuation_rules_as_written():
    # a mark beside a space is deleted, elsewhere it becomes a space
    assert process_punctuation("left / right") == "left  right"
    assert process_punctuation("left/right") == "left right"
    # any digit-comma-digit in the text deletes every mark
    assert process_punctuation("1,000 t-shirts") == "1000 tshirts"


def test_hand_checked_accuracies():
    ten = ["2"] * 10
    assert acc("Two", ten) == 1.0
    assert acc("2", ten) == 1.0
    assert acc("a dog", ["dog"] * 10) == 1.0
    assert acc("yes.", ["yes"] * 10) == 1.0
    assert acc("no", ["yes"] * 10) == 0.0
    # disagreeing annotators: 4 red, 3 dark red, 2 maroon, 1 brown
    answers = ["red"] * 4 + ["dark red"] * 3 + ["maroon"] * 2 + ["brown"]
    # c matching answers: (c * min(1, (c-1)/3) + (10-c) * min(1, c/3)) / 10
    assert acc("red", answers) == pytest.approx(1.0)                       # c=4: (4*1 + 6*1)/10
    assert acc("Dark red", answers) == pytest.approx(0.9)                  # c=3: (3*2/3 + 7*1)/10
    assert acc("maroon", answers) == pytest.approx(0.6)                    # c=2: (2*1/3 + 8*2/3)/10
    assert acc("brown", answers) == pytest.approx(0.3)                     # c=1: (0 + 9*1/3)/10
    assert acc("blue", answers) == 0.0


def test_leave_one_out_matches_the_literal_definition():
    import itertools

    answers = ["a1"] * 2 + ["b"] * 5 + ["c"] * 3
    for pred in ("a1", "b", "c", "d"):
        subsets = [list(s) for s in itertools.combinations(range(10), 9)]
        want = sum(min(1, sum(answers[i] == pred for i in s) / 3) for s in subsets) / 10
        assert answer_accuracy(pred, answers) == pytest.approx(want)


def test_references_are_processed_only_when_annotators_disagree():
    # official quirk: unanimous references are compared as written
    assert acc("t-shirt", ["t-shirt"] * 10) == 0.0
    assert acc("t-shirt", ["t-shirt"] * 3 + ["shirt"] * 7) == pytest.approx(0.9)
    # and they are never lower-cased or digit-mapped
    assert acc("2", ["two"] * 10) == 0.0


def _write_vqa(tmp_path, annotations, questions=None, name="v"):
    qs = questions if questions is not None else [{"image_id": a["image_id"], "question": "what?", "question_id": a["question_id"]} for a in annotations]
    q = tmp_path / f"{name}_questions.json"
    a = tmp_path / f"{name}_annotations.json"
    q.write_text(json.dumps({"info": {}, "task_type": "Open-Ended", "data_type": "mscoco", "data_subtype": "val2014", "questions": qs}))
    a.write_text(json.dumps({"info": {}, "data_subtype": "val2014", "annotations": annotations}))
    return q, a


def _ann(qid, answers, qtype="how many", atype="number", image=1):
    return {"question_id": qid, "image_id": image, "question_type": qtype, "answer_type": atype, "multiple_choice_answer": answers[0],
            "answers": [{"answer": x, "answer_confidence": "yes", "answer_id": i + 1} for i, x in enumerate(answers)]}


def test_score_files_overall_and_per_type(tmp_path):
    anns = [_ann(1, ["2"] * 10), _ann(2, ["dog"] * 10, "what is", "other"), _ann(3, ["yes"] * 10, "is this", "yes/no"),
            _ann(4, ["red"] * 4 + ["dark red"] * 3 + ["maroon"] * 2 + ["brown"], "what color", "other")]
    q, a = _write_vqa(tmp_path, anns)
    p = tmp_path / "pred.json"
    p.write_text(json.dumps([{"question_id": 1, "answer": "Two"}, {"question_id": 2, "answer": "a dog"},
                             {"question_id": 3, "answer": "no"}, {"question_id": 4, "answer": "maroon"}]))
    s = score_files(q, a, p, Skips(echo=None))
    assert s.overall == pytest.approx(100 * (1 + 1 + 0 + 0.6) / 4)
    assert s.per_answer_type == {"number": 100.0, "other": 80.0, "yes/no": 0.0}
    assert s.per_question_type == {"how many": 100.0, "is this": 0.0, "what color": 60.0, "what is": 100.0}
    assert s.questions == 4 and s.missing == 0


def test_missing_and_extra_predictions_are_counted(tmp_path):
    anns = [_ann(1, ["2"] * 10), _ann(2, ["dog"] * 10)]
    q, a = _write_vqa(tmp_path, anns)
    p = tmp_path / "pred.json"
    p.write_text(json.dumps([{"question_id": 1, "answer": "3"}, {"question_id": 99, "answer": "x"}, {"question_id": 1, "answer": "2"},
                             {"answer": "no id"}]))
    skips = Skips(echo=None)
    s = score_files(q, a, p, skips)
    assert s.overall == 50.0 and s.missing == 1  # question 1's last answer "2" counts, as in the official loadRes (a dict by id)
    assert skips.counts["no prediction for this question (scored 0)"] == 1
    assert skips.counts["prediction for a question that is not evaluated"] == 1
    assert skips.counts["duplicate prediction (the last is kept, as the official API does)"] == 1
    assert skips.counts["question_id missing or not an integer"] == 1


def test_bad_records_are_counted_and_named(tmp_path):
    bad_type = _ann(2, ["dog"] * 10)
    del bad_type["answer_type"]
    anns = [_ann(1, ["2"] * 10), bad_type, _ann(3, ["x"] * 10)]
    questions = [{"image_id": 1, "question": "how many?", "question_id": 1}, {"image_id": 1, "question": "what?", "question_id": 2},
                 {"image_id": 1, "question": "orphan?", "question_id": 4}, {"question": "no id"}]
    q, a = _write_vqa(tmp_path, anns, questions)
    skips = Skips(echo=None)
    qs, ans = read_questions(q, skips), read_annotations(a, skips)
    assert set(qs) == {1, 2, 4} and set(ans) == {1, 3}
    assert f"{a}:question_id=2: answer_type missing" in skips.named
    from kgclip.evaluation.vqa import pair_questions

    ids = pair_questions(qs, ans, skips, q, a)
    assert ids == [1]
    assert f"{q}:question_id=4: no annotation for this question" in skips.named
    assert f"{a}:question_id=3: annotation without a question" in skips.named
    assert f"{q}:questions[3]: question_id missing or not an integer" in skips.named
    assert len(skips) == 5  # question 2 also has no (usable) annotation


def test_unreadable_files_are_one_line_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"questions": [{"question_id": 1,')
    with pytest.raises(KgclipError, match="not valid JSON"):
        read_questions(bad, Skips(echo=None))
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"annotations": []}))
    with pytest.raises(KgclipError, match="no 'questions' list"):
        read_questions(other, Skips(echo=None))
    with pytest.raises(KgclipError, match="no such file"):
        read_annotations(tmp_path / "missing.json", Skips(echo=None))


def test_score_only_annotated_subset():
    from kgclip.evaluation.vqa import Annotation

    anns = {1: Annotation(1, 1, "what", "other", ["cat"] * 10), 2: Annotation(2, 1, "what", "other", ["dog"] * 10)}
    s = score(anns, {1: "cat", 2: "cat"}, [1])
    assert s.overall == 100.0 and s.questions == 1 and s.per_question == {1: 1.0}
