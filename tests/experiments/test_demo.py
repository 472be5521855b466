import json
import re

import pytest

from experiments.cli import main


@pytest.mark.slow
def test_shrunken_demo_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    code = main(["--quiet", "demo", f"out={out}", "scenes=40", "pretrain.scenes=30", "pretrain.steps=6", "pretrain.batch_size=16", "pretrain.simple_scenes=12", "pretrain.simple_steps=2", "vqa.steps=3", "vqa.batch_size=8", "vqa.per_type=1", "steps=4", "eval_max_queries=60",
                 "run.data.batch_size=16", "run.train.log_every=2"])
    assert code == 0
    report = (out / "report.md").read_text()
    header = next(line for line in report.splitlines() if line.startswith("| model |"))
    columns = [c.strip() for c in header.strip("|").split("|")][1:]
    for col in ("link_mrr", "link_hits@1", "link_hits@3", "link_hits@10", "relation_acc", "zs_shape_top1", "zs_shape_top5",
                "zs_shape_mean_recall", "zs_colour_top1", "txt_r1", "txt_r5", "txt_r10", "img_r1", "img_r10", "r_mean",
                "aro_relation", "aro_attribute", "aro_relation_kg", "vqa_overall", "vqa_color", "vqa_position", "vqa_size",
                "vqa_count", "vqa_shape", "vqa_negation"):
        assert col in columns, col
    rows = [line for line in report.splitlines() if re.match(r"\| \(\d\)", line)]
    assert len(rows) == 4
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")][1:]
        assert len(cells) == len(columns) and all(c != "n/a" for c in cells), row
    assert (out / "loss_parts.png").stat().st_size > 1000 and (out / "metrics.png").stat().st_size > 1000
    assert "## Does the claim hold?" in report
    for key in ("link_mrr", "aro_relation_kg", "aro_relation", "vqa_overall", "vqa_position", "vqa_color"):
        assert re.search(rf"\(`{key}`\): Knowledge-CLIP [0-9.]+ vs \(\d\) .* [0-9.]+, margin [+-][0-9.]+ .*: (holds|does NOT hold|is not shown)", report), key
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    assert set(metrics) == {"(1) CLIP (pretrained)", "(2) CLIP continued (image-text loss)", "(3) Knowledge-CLIP", "(4) Knowledge-CLIP + hard negatives"}
    assert "## Beyond the paper: hard negatives" in report
    assert re.search(r"\(`aro_relation_kg`\): [0-9.]+ with vs [0-9.]+ without, margin [+-][0-9.]+ \(2 standard errors", report)
    hn = (out / "runs" / "knowledge_clip_hn" / "config.yaml").read_text()
    assert "hard_negatives: 4" in hn and "image_token_pool: 2" in hn
    assert "fanouts: []" in (out / "runs" / "clip_continued" / "config.yaml").read_text()
    teacher = json.loads((out / "metrics.json").read_text())["teacher"]
    assert set(teacher) == {f"{s}_{k}" for s in ("valid", "test") for k in ("r_mean", "zs_shape_top1", "zs_colour_top1")}
    assert "## The teacher" in report and "Time:" in report
    # the evaluation CLI on the Knowledge-CLIP run gives the same link MRR as the report
    assert main(["eval", str(out / "runs" / "knowledge_clip"), "--store", str(out / "world" / "store"), "--tasks", "link",
                 "--max-queries", "60", "--out", str(tmp_path / "m.json")]) == 0
    again = json.loads((tmp_path / "m.json").read_text())["metrics"]["link_mrr"]
    assert again == pytest.approx(metrics["(3) Knowledge-CLIP"]["link_mrr"])
    # export: the towers load back in open_clip
    assert main(["export", str(out / "runs" / "knowledge_clip"), "--out", str(tmp_path / "towers.pt")]) == 0
    import open_clip

    import kgclip.model  # noqa: F401  (registers kgclip-demo)

    open_clip.create_model_and_transforms("kgclip-demo", pretrained=str(tmp_path / "towers.pt"))


@pytest.mark.parametrize("where", ["", "sub"])
def test_a_demo_out_that_is_or_lies_in_a_store_is_refused_before_anything_is_written(tmp_path, capsys, where):
    from tests.conftest import write_toy_store
    from tests.experiments.test_hostile_store import refused

    write_toy_store(tmp_path / "s")
    out = tmp_path / "s" / where if where else tmp_path / "s"
    state = "is inside" if where else "is"
    # before: the world was rendered into the store, then the first training refused its run folder
    refused(capsys, tmp_path, "demo", f"out={out}", match=f"{out}: {state} the kgclip store {tmp_path / 's'}; a store folder holds only its own files")
