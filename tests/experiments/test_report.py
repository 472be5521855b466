import math

from experiments.report import hard_negative_lines, verdict

ROWS = {
    "(1) CLIP": {"link_mrr": 0.05, "aro_relation": 0.50, "aro_relation_kg": 0.52, "vqa_overall": 0.40, "vqa_position": 0.30,
                 "vqa_color": 0.60, "zs_shape_top1": 0.90, "zs_colour_top1": 1.00},
    "(2) CLIP continued": {"link_mrr": 0.06, "aro_relation": 0.55, "aro_relation_kg": 0.50, "vqa_overall": 0.42, "vqa_position": 0.30,
                           "vqa_color": 0.50, "zs_shape_top1": 0.80, "zs_colour_top1": 1.00},
    "(3) Knowledge-CLIP": {"link_mrr": 0.20, "aro_relation": 0.56, "aro_relation_kg": 0.80, "vqa_overall": 0.41, "vqa_position": 0.50,
                           "vqa_color": 0.40, "zs_shape_top1": 0.88, "zs_colour_top1": 1.00},
    "(4) Knowledge-CLIP + hard negatives": {"link_mrr": 0.19, "aro_relation": 0.56, "aro_relation_kg": 0.88, "vqa_overall": 0.30},
}
SIZES = {"aro_relation": 100, "aro_relation_kg": 100, "vqa_overall": 400, "vqa_position": 100, "vqa_color": 100}


def test_verdict_compares_row_3_with_the_best_clip_row_and_the_noise():
    lines = verdict(ROWS, SIZES)
    by_key = {line.split("`")[1]: line for line in lines if "`" in line}
    assert by_key["link_mrr"].endswith("margin +0.140 (clear margin 0.02): holds.")
    assert "vs (2) CLIP continued 0.060" in by_key["link_mrr"]
    # 0.80 vs 0.52: se = sqrt(.8*.2/100 + .52*.48/100) = 0.064; 2 se = 0.128 < 0.28
    assert "margin +0.280 (2 standard errors = +0.128 over 100 items): holds." in by_key["aro_relation_kg"]
    # 0.56 vs 0.55: within the noise
    assert by_key["aro_relation"].endswith("is not shown (the margin is within the noise).")
    assert by_key["vqa_overall"].endswith("does NOT hold.") and "vs (2) CLIP continued 0.420" in by_key["vqa_overall"]
    zs = next(line for line in lines if line.startswith("- Zero-shot"))
    assert "Knowledge-CLIP 0.940 vs the teacher (1) 0.950, margin -0.010" in zs and zs.endswith("holds.")


def test_hard_negative_lines_set_row_4_against_row_3():
    lines = hard_negative_lines(ROWS, SIZES)
    assert lines[0] == "## Beyond the paper: hard negatives"
    by_key = {line.split("`")[1]: line for line in lines if line.startswith("- ")}
    # 0.88 vs 0.80 over 100 items: 2 se = 2 * sqrt(.1056/100 + .16/100) = 0.103 -> not above
    se2 = 2 * math.sqrt(0.88 * 0.12 / 100 + 0.8 * 0.2 / 100)
    assert f"{se2:.3f}" == "0.103"
    assert "0.880 with vs 0.800 without, margin +0.080 (2 standard errors = 0.103 over 100 items)" in by_key["aro_relation_kg"]
    assert by_key["aro_relation_kg"].endswith("no difference beyond the noise.")
    assert by_key["vqa_overall"].endswith(": worse.")  # 0.30 vs 0.41 over 400 items
    assert by_key["link_mrr"].endswith("no clear difference.")  # -0.01 with a clear margin of 0.02
    assert "r_mean" not in by_key  # not measured in either row: no line
    assert hard_negative_lines(dict(list(ROWS.items())[:3]), SIZES) == []
