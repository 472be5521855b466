"""Hostile but plausible ``kgclip finetune`` input (issue 16): metrics that disagree with the
official scorer, an ``--out`` that names no folder, an INIT that is no checkpoint.

Each case runs the real command line and asserts the exit code and the one-line message (or, for
the metrics, that ``kgclip finetune`` and ``kgclip score`` agree on the same files).
"""

import collections
import json
import random
from fractions import Fraction

import pytest
import torch

from tests.experiments.test_hostile_store import refused, run_cli
from tests.kgclip.finetune.fixtures import FAST, vqa_files


def _vqa_flags(tmp_path):
    tq, ta = vqa_files(tmp_path, "train2014", [1, 2, 3, 4])
    eq, ea = vqa_files(tmp_path, "val2014", [5, 6, 7], coco_names=False)
    return eq, ea, ["--train-questions", tq, "--train-annotations", ta, "--eval-questions", eq, "--eval-annotations", ea,
                    "--images", tmp_path / "images"]


def test_vqa_metrics_count_a_question_without_its_image_as_kgclip_score_does(tmp_path, capsys):
    eq, ea, flags = _vqa_flags(tmp_path)
    (tmp_path / "images" / "val2014" / "000000000007.jpg").unlink()  # questions 70 and 71 lose their image
    run = tmp_path / "runs" / "vqa"
    rc, err, _ = run_cli(capsys, "finetune", "vqa", "--init", "kgclip-tiny", "--out", run, *flags, *FAST)
    assert rc == 0, err
    metrics = json.loads((run / "metrics.json").read_text())
    preds = json.loads((run / "predictions.json").read_text())
    assert sorted(p["question_id"] for p in preds) == [50, 51, 60, 61]
    rc, err, out = run_cli(capsys, "score", "vqa", "--questions", eq, "--annotations", ea, "--predictions", run / "predictions.json")
    assert rc == 0, err
    scored = json.loads(out)
    assert metrics["vqa_overall"] == scored["overall"]  # before: 25.0 over the 4 questions with an image, score vqa 16.67 over 6
    assert scored["questions"] == 6 and scored["missing_predictions"] == 2 == metrics["vqa_unanswered"]
    assert {k: metrics[f"vqa_{k}"] for k in scored["per_answer_type"]} == scored["per_answer_type"]
    report = (run / "report.md").read_text()
    assert "questions without a prediction (image missing or failed to load; scored 0): 2" in report


# -- one-line messages ------------------------------------------------------------------------------

def test_an_out_that_names_no_folder_is_one_clear_line(tmp_path, capsys, monkeypatch):
    _, _, flags = _vqa_flags(tmp_path)
    monkeypatch.chdir(tmp_path / "images")
    for out in (".", "..", "/"):
        refused(capsys, tmp_path, "finetune", "vqa", "--init", "kgclip-tiny", "--out", out, *flags, *FAST,
                match=f"kgclip finetune: error: {out}: not a run folder name; give the folder to write, e.g. runs/vqa-1 (not '.', '..' or '/')")


def test_an_out_that_is_a_store_is_refused_even_with_force(tmp_path, capsys):
    from tests.conftest import write_toy_store

    _, _, flags = _vqa_flags(tmp_path)
    write_toy_store(tmp_path / "s")
    for force in ([], ["--force"]):  # before: --force moved the store aside to s.old-<time> and wrote the run in its place
        refused(capsys, tmp_path, "finetune", "vqa", "--init", "kgclip-tiny", "--out", tmp_path / "s", *flags, *FAST, *force,
                match=f"{tmp_path / 's'}: is the kgclip store {tmp_path / 's'}; a store folder holds only its own files")


GARBAGE = {"text": b"this is not a checkpoint\n" * 40, "random": bytes(random.Random(0).randrange(256) for _ in range(4000)),
           "pickle-like": b"\x80\x02" + bytes(random.Random(1).randrange(256) for _ in range(4000))}


@pytest.mark.parametrize("kind", sorted(GARBAGE))
def test_a_garbage_init_file_is_one_clean_line_naming_it(tmp_path, capsys, kind):
    _, _, flags = _vqa_flags(tmp_path)
    bad = tmp_path / "model.pt"
    bad.write_bytes(GARBAGE[kind])
    # before: "(101)", "(pop from empty list)" or torch's weights-only preamble cut mid-sentence
    refused(capsys, tmp_path, "finetune", "vqa", "--init", bad, "--out", tmp_path / "r", *flags, *FAST,
            match=f"kgclip finetune: error: {bad}: not a readable kgclip checkpoint (not a file torch.save wrote)")
    # a pickle header followed by garbage is no checkpoint either (before: "holds pickled Python objects ... (Unsupported operand 68)")
    refused(capsys, tmp_path, "finetune", "vqa", "--init", f"kgclip-tiny:{bad}", "--out", tmp_path / "r", *flags, *FAST,
            match=f"kgclip finetune: error: model.pretrained {bad}: not a PyTorch checkpoint (unreadable by torch.load)")


def test_a_checkpoint_of_pickled_objects_names_the_class(tmp_path, capsys):
    _, _, flags = _vqa_flags(tmp_path)
    bad = tmp_path / "objects.pt"
    torch.save({"model": collections.OrderedDict(), "config": Fraction(1, 3)}, bad)
    refused(capsys, tmp_path, "finetune", "vqa", "--init", bad, "--out", tmp_path / "r", *flags, *FAST,
            match=f"{bad}: not a readable kgclip checkpoint (it holds pickled Python objects (fractions.Fraction), not only tensors)")
