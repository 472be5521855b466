"""GLUE task files as distributed by the benchmark (tab-separated, read with no quoting, as the
HuggingFace ``glue`` loader does).

Per task (train file / evaluation file):

======  ===========================================  ==========================  ==================
task    columns used                                 label                       metric
======  ===========================================  ==========================  ==================
cola    no header: source, label, mark, sentence     0 / 1                       Matthews corr.
sst2    ``sentence``                                 ``label`` 0 / 1             accuracy
mrpc    ``#1 String``, ``#2 String``                 ``Quality`` 0 / 1           accuracy, F1
stsb    ``sentence1``, ``sentence2``                 ``score`` 0..5              Pearson, Spearman
qqp     ``question1``, ``question2``                 ``is_duplicate`` 0 / 1      accuracy, F1
mnli    ``sentence1``, ``sentence2``                 ``gold_label`` (3 classes)  accuracy
qnli    ``question``, ``sentence``                   ``label`` (2 classes)       accuracy
rte     ``sentence1``, ``sentence2``                 ``label`` (2 classes)       accuracy
======  ===========================================  ==========================  ==================

MNLI is evaluated on ``dev_matched.tsv``. The test files carry no labels and cannot be evaluated.
"""

import csv
import sys
from dataclasses import dataclass
from pathlib import Path

from kgclip.errors import KgclipError
from kgclip.skips import Skips


@dataclass(frozen=True)
class GlueTask:
    """How one GLUE task's files read.

    Attributes:
        name: the task.
        text_columns: one or two header names of the text columns (CoLA: positions).
        label_column: the header name of the label (CoLA: a position).
        classes: label names (a file may write a class by name or by its index), or None for regression.
        metrics: the GLUE metrics of the task.
        header: whether the train/dev files have a header row.
    """

    name: str
    text_columns: tuple
    label_column: str | int
    classes: tuple[str, ...] | None
    metrics: tuple[str, ...]
    header: bool = True

    @property
    def num_outputs(self) -> int:
        return len(self.classes) if self.classes else 1


GLUE_TASKS: dict[str, GlueTask] = {t.name: t for t in (
    GlueTask("cola", (3,), 1, ("unacceptable", "acceptable"), ("mcc",), header=False),
    GlueTask("sst2", ("sentence",), "label", ("negative", "positive"), ("accuracy",)),
    GlueTask("mrpc", ("#1 String", "#2 String"), "Quality", ("not_equivalent", "equivalent"), ("accuracy", "f1")),
    GlueTask("stsb", ("sentence1", "sentence2"), "score", None, ("pearson", "spearman")),
    GlueTask("qqp", ("question1", "question2"), "is_duplicate", ("not_duplicate", "duplicate"), ("accuracy", "f1")),
    GlueTask("mnli", ("sentence1", "sentence2"), "gold_label", ("entailment", "neutral", "contradiction"), ("accuracy",)),
    GlueTask("qnli", ("question", "sentence"), "label", ("entailment", "not_entailment"), ("accuracy",)),
    GlueTask("rte", ("sentence1", "sentence2"), "label", ("entailment", "not_entailment"), ("accuracy",)),
)}


@dataclass
class GlueExample:
    index: int
    text_a: str
    text_b: str | None
    label: float


def glue_task(name: str) -> GlueTask:
    if name not in GLUE_TASKS:
        raise KgclipError(f"unknown GLUE task {name!r}; known: {', '.join(GLUE_TASKS)}")
    return GLUE_TASKS[name]


def _label(task: GlueTask, raw: str) -> float | None:
    raw = raw.strip()
    if task.classes is None:
        try:
            v = float(raw)
        except ValueError:
            return None
        return v if 0.0 <= v <= 5.0 else None
    if raw in task.classes:
        return float(task.classes.index(raw))
    if raw.isdigit() and int(raw) < len(task.classes):
        return float(int(raw))
    return None


def read_glue(task: str | GlueTask, path: str | Path, skips: Skips) -> list[GlueExample]:
    """The labelled rows of a GLUE TSV file; a header without the task's columns is an error,
    a row with missing fields or an unknown label a counted skip."""
    t = glue_task(task) if isinstance(task, str) else task
    path = Path(path)
    if not path.is_file():
        raise KgclipError(f"{path}: no such file")
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    out: list[GlueExample] = []
    with open(path, encoding="utf-8-sig", newline="", errors="strict") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        try:
            if t.header:
                header = next(reader, None)
                if header is None:
                    raise KgclipError(f"{path}: empty file")
                wanted = [*t.text_columns, t.label_column]
                missing = [c for c in wanted if c not in header]
                if missing:
                    hint = " (a GLUE test file has no labels; evaluate on the dev file)" if t.label_column in missing and len(missing) == 1 else ""
                    raise KgclipError(f"{path}: header has no column(s) {', '.join(map(repr, missing))} of GLUE {t.name} "
                                      f"(needs {', '.join(map(repr, wanted))}; got {', '.join(map(repr, header[:12]))}){hint}")
                cols = [header.index(c) for c in t.text_columns]
                lab = header.index(t.label_column)
                width, first = len(header), 2
            else:
                cols, lab, width, first = list(t.text_columns), int(t.label_column), 4, 1
            for n, row in enumerate(reader, start=first):
                where = f"{path}:{n}"
                if not t.header and n == 1 and row[:2] == ["index", "sentence"]:
                    raise KgclipError(f"{path}: this is a CoLA test file (header 'index, sentence', no labels); "
                                      f"CoLA train/dev files have no header and four columns: source, label, mark, sentence")
                if len(row) < width:
                    skips.add(where, f"{len(row)} fields instead of {width}")
                    continue
                label = _label(t, row[lab])
                texts = [row[c] for c in cols]
                if label is None:
                    expected = "a score in [0, 5]" if t.classes is None else f"one of {', '.join(t.classes)} (or its index)"
                    skips.add(where, f"label {row[lab]!r} is not {expected}")
                elif not all(x.strip() for x in texts):
                    skips.add(where, "empty text")
                else:
                    out.append(GlueExample(n - first, texts[0], texts[1] if len(texts) > 1 else None, label))
        except UnicodeDecodeError as exc:
            raise KgclipError(f"{path}: not UTF-8 text ({exc.reason})") from None
        except csv.Error as exc:
            raise KgclipError(f"{path}: not a TSV file ({exc})") from None
    if not out:
        raise KgclipError(f"{path}: no usable GLUE {t.name} row; {skips.summary() or 'the file has no rows'}")
    return out
