"""`kgclip finetune TASK ...` end to end on tiny files in each benchmark's published format."""

import json

import pytest

from experiments.cli import main
from tests.kgclip.finetune.fixtures import FAST, glue_file, image_folder, karpathy_file, snli_ve_file, vqa_files


def _records(run):
    return json.loads((run / "metrics.json").read_text()), json.loads((run / "predictions.json").read_text())


def _finished(run, steps=3):
    assert (run / "report.md").is_file() and (run / "config.yaml").is_file()
    assert (run / "checkpoints" / f"step-{steps:07d}.pt").is_file()
    rows = (run / "metrics.csv").read_text().splitlines()
    assert len(rows) == 1 + steps


def test_vqa_writes_official_results_that_kgclip_score_agrees_with(tmp_path, capsys):
    tq, ta = vqa_files(tmp_path, "train2014", [1, 2, 3, 4])
    eq, ea = vqa_files(tmp_path, "val2014", [5, 6, 7], coco_names=False)
    run = tmp_path / "runs" / "vqa"
    assert main(["--quiet", "finetune", "vqa", "--init", "kgclip-tiny", "--out", str(run), "--train-questions", str(tq),
                 "--train-annotations", str(ta), "--eval-questions", str(eq), "--eval-annotations", str(ea),
                 "--images", str(tmp_path / "images"), *FAST]) == 0
    assert f"fine-tuned vqa for 3 steps into {run}" in capsys.readouterr().out
    _finished(run)
    metrics, preds = _records(run)
    assert set(metrics) == {"vqa_overall", "vqa_other", "vqa_yes/no", "vqa_unanswered"} and metrics["vqa_unanswered"] == 0
    assert [sorted(p) for p in preds] == [["answer", "question_id"]] * 6
    assert all(isinstance(p["question_id"], int) and isinstance(p["answer"], str) for p in preds)
    assert sorted(p["question_id"] for p in preds) == [50, 51, 60, 61, 70, 71]
    assert main(["score", "vqa", "--questions", str(eq), "--annotations", str(ea), "--predictions", str(run / "predictions.json")]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["overall"] == metrics["vqa_overall"]
    assert scored["per_answer_type"] == {"other": metrics["vqa_other"], "yes/no": metrics["vqa_yes/no"]}


def test_snli_ve(tmp_path):
    train, ev = snli_ve_file(tmp_path, "train", [1, 2, 3]), snli_ve_file(tmp_path, "dev", [4])
    run = tmp_path / "runs" / "ve"
    assert main(["--quiet", "finetune", "snli-ve", "--init", "kgclip-tiny", "--out", str(run), "--train", str(train), "--eval", str(ev),
                 "--images", str(tmp_path / "flickr30k-images"), *FAST]) == 0
    _finished(run)
    metrics, preds = _records(run)
    assert set(metrics) == {"accuracy", "accuracy_entailment", "accuracy_neutral", "accuracy_contradiction"}
    assert metrics["accuracy"] == pytest.approx(sum(p["prediction"] == p["gold_label"] for p in preds) / 3)
    assert [p["pairID"] for p in preds] == ["4.jpg#0r0", "4.jpg#0r1", "4.jpg#0r2"]


def test_retrieval(tmp_path):
    path = karpathy_file(tmp_path, {"train": 3, "restval": 1, "val": 2, "test": 3})
    run = tmp_path / "runs" / "ret"
    assert main(["--quiet", "finetune", "retrieval", "--init", "kgclip-tiny", "--out", str(run), "--karpathy", str(path),
                 "--images", str(tmp_path / "coco"), *FAST]) == 0
    _finished(run)
    metrics, preds = _records(run)
    keys = {f"{d}_r{k}" for d in ("txt", "img") for k in (1, 5, 10)} | {"txt_r_mean", "img_r_mean", "r_mean"}
    assert set(metrics) == keys | {f"val_{k}" for k in keys}
    assert metrics["txt_r10"] == metrics["img_r10"] == 1.0  # 3 test images, 6 captions: everything is in the top 10
    assert len(preds) == 5 and {p["split"] for p in preds} == {"val", "test"}


def test_classification(tmp_path):
    train, ev = image_folder(tmp_path / "train"), image_folder(tmp_path / "val", per_class=1)
    run = tmp_path / "runs" / "cls"
    assert main(["--quiet", "finetune", "classification", "--init", "kgclip-tiny", "--out", str(run), "--train", str(train),
                 "--eval", str(ev), *FAST, "mode=full"]) == 0
    _finished(run)
    metrics, preds = _records(run)
    assert set(metrics) == {"top1", "top5"}
    assert metrics["top1"] == pytest.approx(sum(p["top5"][0] == p["label"] for p in preds) / 3)


@pytest.mark.parametrize(("task", "keys"), [("cola", {"cola_mcc"}), ("mrpc", {"mrpc_accuracy", "mrpc_f1"}),
                                            ("stsb", {"stsb_pearson", "stsb_spearman"})])
def test_glue(tmp_path, task, keys):
    run = tmp_path / "runs" / task
    assert main(["--quiet", "finetune", "glue", "--task", task, "--init", "kgclip-tiny", "--out", str(run),
                 "--train", str(glue_file(tmp_path, task)), "--eval", str(glue_file(tmp_path, task, "dev")), *FAST]) == 0
    _finished(run)
    metrics, preds = _records(run)
    assert set(metrics) == keys and len(preds) == 4


def test_bad_input_is_one_line_and_leaves_no_run_folder(tmp_path, capsys):
    train = glue_file(tmp_path, "sst2")
    bad = tmp_path / "dev.tsv"
    bad.write_text("text\tgold\nfine\t1\n")
    run = tmp_path / "runs" / "bad"
    assert main(["finetune", "glue", "--task", "sst2", "--init", "kgclip-tiny", "--out", str(run), "--train", str(train), "--eval", str(bad),
                 *FAST]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "dev.tsv: header has no column(s) 'sentence', 'label' of GLUE sst2" in err[0]
    assert not run.exists()
    tq, ta = vqa_files(tmp_path, "train2014", [1, 2])
    ta.write_text("{truncated")
    assert main(["finetune", "vqa", "--init", "kgclip-tiny", "--out", str(run), "--train-questions", str(tq), "--train-annotations", str(ta),
                 "--eval-questions", str(tq), "--eval-annotations", str(ta), "--images", str(tmp_path / "images"), *FAST]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not valid JSON" in err[0]
    assert not run.exists()


def test_bad_records_are_counted_and_named(tmp_path, capsys):
    train = snli_ve_file(tmp_path, "train", [1, 2])
    with open(train, "a") as f:
        f.write("not json at all\n")
    (tmp_path / "flickr30k-images" / "2.jpg").write_bytes(b"not an image")  # exists, does not decode
    ev = snli_ve_file(tmp_path, "dev", [3])
    run = tmp_path / "runs" / "ve"
    assert main(["--quiet", "finetune", "snli-ve", "--init", "kgclip-tiny", "--out", str(run), "--train", str(train), "--eval", str(ev),
                 "--images", str(tmp_path / "flickr30k-images"), *FAST]) == 0
    err = capsys.readouterr().err
    assert f"skipped {train}:7: not JSON" in err
    assert "kgclip finetune: input records skipped: 1 skipped" in err and "examples whose image failed to load: 3 skipped" in err
    report = (run / "report.md").read_text()
    assert "input records skipped: 1 skipped (not JSON (Expecting value): 1)" in report
    # the three hypotheses of image 2, each counted once however many epochs met it
    assert "examples whose content failed to load: 3 skipped (image does not decode (UnidentifiedImageError): 3)" in report
    assert f"`{train}:pairID=2.jpg#0r0 ({tmp_path / 'flickr30k-images' / '2.jpg'}): image does not decode" in report
