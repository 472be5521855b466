"""VQA v2: the official files (questions, annotations, results) and the official accuracy.

A re-implementation of the VQA evaluation API (``PythonEvaluationTools/vqaEvaluation/vqaEval.py``
of GT-Vision-Lab/VQA, Python 3 version), rule for rule:

- The predicted answer has newlines and tabs turned into spaces, is stripped, then
  :func:`process_punctuation` and :func:`process_digit_article` (lower case, number words to
  digits, articles dropped, contractions given their apostrophe).
- The ground-truth answers are used as written, except that when the annotators disagree (more than
  one distinct answer) each gets :func:`process_punctuation` (and only that).
- A question's accuracy is the mean over the leave-one-out subsets of its annotators of
  ``min(1, matching answers among the others / 3)``; overall, per answer type and per question type
  are means over questions, in percent rounded to two decimals.

File formats (https://visualqa.org/download.html):

- questions: ``{"data_subtype": "val2014", "questions": [{"image_id", "question", "question_id"}], ...}``
- annotations: ``{"annotations": [{"question_id", "image_id", "question_type", "answer_type",
  "multiple_choice_answer", "answers": [{"answer", "answer_confidence", "answer_id"}] x 10}], ...}``
- results: ``[{"question_id": int, "answer": str}]``
"""

import json
import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import ijson

from kgclip.errors import KgclipError
from kgclip.skips import Skips

CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't", "couldn'tve": "couldn't've",
    "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't", "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've",
    "hadn'tve": "hadn't've", "hasnt": "hasn't", "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's",
    "howd": "how'd", "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm", "Ive": "I've", "isnt": "isn't",
    "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll", "let's": "let's", "maam": "ma'am", "mightnt": "mightn't",
    "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've", "mustnt": "mustn't", "mustve": "must've",
    "neednt": "needn't", "notve": "not've", "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at",
    "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's", "shouldve": "should've",
    "shouldnt": "shouldn't", "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've", "somebodyll": "somebody'll", "somebodys": "somebody's",
    "someoned": "someone'd", "someoned've": "someone'd've", "someone'dve": "someone'd've", "someonell": "someone'll",
    "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've", "something'dve": "something'd've",
    "somethingll": "something'll", "thats": "that's", "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've", "they'dve": "they'd've", "theyll": "they'll",
    "theyre": "they're", "theyve": "they've", "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've",
    "werent": "weren't", "whatll": "what'll", "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's",
    "whered": "where'd", "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've", "who'dve": "who'd've",
    "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll", "whyre": "why're", "whys": "why's", "wont": "won't",
    "wouldve": "would've", "wouldnt": "wouldn't", "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all",
    "yall'll": "y'all'll", "y'allll": "y'all'll", "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're", "youve": "you've",
}
NUMBER_WORDS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7",
                "eight": "8", "nine": "9", "ten": "10"}
ARTICLES = frozenset({"a", "an", "the"})
PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!")
# As written in the official code: "(?!<=" is a lookahead (not a lookbehind), so every period not
# followed by a digit goes; and the official call passes re.UNICODE (32) as the count argument.
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
_PERIOD_COUNT = 32
_COMMA_STRIP = re.compile(r"(\d)(,)(\d)")


@lru_cache(maxsize=1 << 18)  # answers repeat a lot (VQA v2 has ~5M annotator answers, far fewer distinct)
def process_punctuation(text: str) -> str:
    """The official punctuation rule: a mark next to a space (or any text with a digit-comma-digit)
    is deleted, otherwise replaced by a space; periods not followed by a digit are deleted."""
    out = text
    delete_all = _COMMA_STRIP.search(text) is not None
    for p in PUNCTUATION:
        if delete_all or (p + " " in text or " " + p in text):
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD_STRIP.sub("", out, count=_PERIOD_COUNT)


def process_digit_article(text: str) -> str:
    """Lower case, number words to digits, articles dropped, contractions with their apostrophe."""
    words = [NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    words = [w for w in words if w not in ARTICLES]
    return " ".join(CONTRACTIONS.get(w, w) for w in words)


@lru_cache(maxsize=1 << 18)
def normalize_answer(answer: str) -> str:
    """A predicted answer as the official evaluation compares it."""
    answer = answer.replace("\n", " ").replace("\t", " ").strip()
    return process_digit_article(process_punctuation(answer))


def reference_answers(answers: list[str]) -> list[str]:
    """Ground-truth answers as the official evaluation compares them (punctuation processed only
    when the annotators disagree)."""
    if len(set(answers)) > 1:
        return [process_punctuation(a) for a in answers]
    return list(answers)


def answer_accuracy(normalized: str, references: list[str]) -> float:
    """Official accuracy of one (already normalised) answer against the reference answers
    (see :func:`reference_answers`): the mean over the leave-one-out subsets of the annotators of
    ``min(1, matches / 3)``. In [0, 1]."""
    n = len(references)
    if n == 0:
        return 0.0
    c = sum(1 for r in references if r == normalized)
    # Leaving out one of the c matching annotators leaves c - 1 matches; any other leaves c.
    return (c * min(1.0, (c - 1) / 3) + (n - c) * min(1.0, c / 3)) / n


# -- files ------------------------------------------------------------------------------------------

@dataclass
class Question:
    question_id: int
    image_id: int
    question: str


@dataclass
class Annotation:
    """One annotated question. ``answers`` are the annotators' raw answers (usually ten)."""

    question_id: int
    image_id: int
    question_type: str
    answer_type: str
    answers: list[str]
    multiple_choice_answer: str | None = None


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _stream(path: Path, key: str) -> Iterator[Any]:
    """The items of the list under top-level ``key`` of a JSON object file, streamed."""
    if not path.is_file():
        raise KgclipError(f"{path}: no such file")
    n = 0
    try:
        with open(path, "rb") as f:
            for n, item in enumerate(ijson.items(f, f"{key}.item", use_float=True), start=1):  # noqa: B007
                yield item
    except ijson.JSONError as exc:
        why = " ".join(str(exc).split())[:160]  # ijson's message spans several lines
        raise KgclipError(f"{path}: not valid JSON after {n} {key} ({why})") from None
    except OSError as exc:
        raise KgclipError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if n == 0:
        raise KgclipError(f"{path}: no {key!r} list in this file (is it a VQA {key} file?)")


def read_subtype(path: str | Path) -> str | None:
    """The file's ``data_subtype`` (e.g. ``train2014``), or None."""
    try:
        with open(path, "rb") as f:
            value = next(ijson.items(f, "data_subtype"), None)
    except (ijson.JSONError, OSError):
        return None
    return value if isinstance(value, str) else None


def read_questions(path: str | Path, skips: Skips) -> dict[int, Question]:
    """Questions by id; malformed or duplicate records are counted in ``skips``."""
    path = Path(path)
    out: dict[int, Question] = {}
    for i, q in enumerate(_stream(path, "questions")):
        where = f"{path}:questions[{i}]"
        if not isinstance(q, dict):
            skips.add(where, "not an object")
            continue
        qid, img, text = q.get("question_id"), q.get("image_id"), q.get("question")
        if not _is_int(qid):
            skips.add(where, "question_id missing or not an integer")
        elif not _is_int(img):
            skips.add(f"{path}:question_id={qid}", "image_id missing or not an integer")
        elif not isinstance(text, str) or not text.strip():
            skips.add(f"{path}:question_id={qid}", "question text missing")
        elif qid in out:
            skips.add(f"{path}:question_id={qid}", "duplicate question_id")
        else:
            out[qid] = Question(qid, img, text)
    return out


def read_annotations(path: str | Path, skips: Skips) -> dict[int, Annotation]:
    """Annotations by question id; malformed or duplicate records are counted in ``skips``."""
    path = Path(path)
    out: dict[int, Annotation] = {}
    for i, a in enumerate(_stream(path, "annotations")):
        if not isinstance(a, dict):
            skips.add(f"{path}:annotations[{i}]", "not an object")
            continue
        qid = a.get("question_id")
        if not _is_int(qid):
            skips.add(f"{path}:annotations[{i}]", "question_id missing or not an integer")
            continue
        where = f"{path}:question_id={qid}"
        answers = a.get("answers")
        if not _is_int(a.get("image_id")):
            skips.add(where, "image_id missing or not an integer")
        elif not isinstance(a.get("answer_type"), str):
            skips.add(where, "answer_type missing")
        elif not isinstance(a.get("question_type"), str):
            skips.add(where, "question_type missing")
        elif not isinstance(answers, list) or not answers or not all(isinstance(x, dict) and isinstance(x.get("answer"), str) for x in answers):
            skips.add(where, "answers missing or malformed")
        elif qid in out:
            skips.add(where, "duplicate question_id")
        else:
            mc = a.get("multiple_choice_answer")
            out[qid] = Annotation(qid, a["image_id"], a["question_type"], a["answer_type"], [x["answer"] for x in answers],
                                  mc if isinstance(mc, str) else None)
    return out


def pair_questions(questions: dict[int, Question], annotations: dict[int, Annotation], skips: Skips,
                   questions_path: str | Path, annotations_path: str | Path) -> list[int]:
    """Question ids present in both files (in the questions file's order); the others, and pairs
    whose image ids disagree, are counted in ``skips``."""
    ids = []
    for qid, q in questions.items():
        a = annotations.get(qid)
        if a is None:
            skips.add(f"{questions_path}:question_id={qid}", "no annotation for this question")
        elif a.image_id != q.image_id:
            skips.add(f"{annotations_path}:question_id={qid}", f"image_id {a.image_id} but the question's is {q.image_id}")
        else:
            ids.append(qid)
    for qid in annotations.keys() - questions.keys():
        skips.add(f"{annotations_path}:question_id={qid}", "annotation without a question")
    return ids


def read_predictions(path: str | Path, skips: Skips) -> dict[int, str]:
    """A results file ``[{"question_id": int, "answer": str}]`` as {question id: answer}; of duplicate
    ids the last answer stands (as in the official ``VQA.loadRes``), each duplicate counted in ``skips``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise KgclipError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise KgclipError(f"{path}: not a readable JSON results file ({exc})") from None
    if not isinstance(data, list):
        raise KgclipError(f"{path}: a VQA results file is a JSON list of {{\"question_id\", \"answer\"}} objects, got {type(data).__name__}")
    out: dict[int, str] = {}
    for i, r in enumerate(data):
        where = f"{path}:[{i}]"
        if not isinstance(r, dict) or not _is_int(r.get("question_id")):
            skips.add(where, "question_id missing or not an integer")
        elif not isinstance(r.get("answer"), str):
            skips.add(f"{path}:question_id={r['question_id']}", "answer missing or not a string")
        else:
            if r["question_id"] in out:  # the official API indexes results by id: the last one stands
                skips.add(f"{path}:question_id={r['question_id']}", "duplicate prediction (the last is kept, as the official API does)")
            out[r["question_id"]] = r["answer"]
    return out


# -- scoring ----------------------------------------------------------------------------------------

@dataclass
class VqaScore:
    """Official VQA accuracy in percent (two decimals), as the evaluation API reports it.

    Attributes:
        overall, per_answer_type, per_question_type: the accuracies.
        per_question: each scored question's accuracy in [0, 1] (unrounded).
        questions: how many questions were scored; missing: of those, how many had no prediction
            (they count as wrong).
    """

    overall: float
    per_answer_type: dict[str, float]
    per_question_type: dict[str, float]
    per_question: dict[int, float] = field(repr=False)
    questions: int
    missing: int

    def as_dict(self) -> dict[str, Any]:
        return {"overall": self.overall, "per_answer_type": self.per_answer_type, "per_question_type": self.per_question_type,
                "questions": self.questions, "missing_predictions": self.missing}


def _percent(values: list[float]) -> float:
    return round(100 * sum(values) / len(values), 2) if values else float("nan")


def score(annotations: dict[int, Annotation], predictions: dict[int, str], question_ids: list[int] | None = None,
          skips: Skips | None = None, predictions_path: str | Path = "predictions") -> VqaScore:
    """Official accuracy of ``predictions`` over ``question_ids`` (default: every annotation).

    A question without a prediction scores 0 and is counted in ``missing`` (and in ``skips``, when
    given); predictions for other questions are ignored and counted in ``skips``.
    """
    ids = list(annotations) if question_ids is None else list(question_ids)
    wanted = set(ids)
    if skips is not None:
        for qid in predictions.keys() - wanted:
            skips.add(f"{predictions_path}:question_id={qid}", "prediction for a question that is not evaluated")
    per_q: dict[int, float] = {}
    by_answer: dict[str, list[float]] = defaultdict(list)
    by_question: dict[str, list[float]] = defaultdict(list)
    missing = 0
    for qid in ids:
        ann = annotations[qid]
        if qid in predictions:
            acc = answer_accuracy(normalize_answer(predictions[qid]), reference_answers(ann.answers))
        else:
            missing += 1
            acc = 0.0
            if skips is not None:
                skips.add(f"{predictions_path}:question_id={qid}", "no prediction for this question (scored 0)")
        per_q[qid] = acc
        by_answer[ann.answer_type].append(acc)
        by_question[ann.question_type].append(acc)
    return VqaScore(
        overall=_percent(list(per_q.values())),
        per_answer_type={k: _percent(v) for k, v in sorted(by_answer.items())},
        per_question_type={k: _percent(v) for k, v in sorted(by_question.items())},
        per_question=per_q, questions=len(ids), missing=missing,
    )


def score_files(questions_path: str | Path, annotations_path: str | Path, predictions_path: str | Path, skips: Skips) -> VqaScore:
    """``kgclip score vqa``: read the three files and score the questions present in both the
    questions and the annotations file."""
    questions = read_questions(questions_path, skips)
    annotations = read_annotations(annotations_path, skips)
    ids = pair_questions(questions, annotations, skips, questions_path, annotations_path)
    if not ids:
        raise KgclipError(f"{questions_path} and {annotations_path}: no question has both a question and an annotation record")
    predictions = read_predictions(predictions_path, skips)
    return score(annotations, predictions, ids, skips, predictions_path)
