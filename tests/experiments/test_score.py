import json

from experiments.cli import main


def _files(tmp_path):
    anns = [{"question_id": 10, "image_id": 5, "question_type": "how many", "answer_type": "number", "multiple_choice_answer": "2",
             "answers": [{"answer": "2", "answer_confidence": "yes", "answer_id": i} for i in range(1, 11)]},
            {"question_id": 11, "image_id": 5, "question_type": "what color", "answer_type": "other", "multiple_choice_answer": "red",
             "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": i + 1} for i, a in enumerate(["red"] * 8 + ["blue"] * 2)]}]
    qs = [{"image_id": 5, "question": "How many dogs?", "question_id": 10}, {"image_id": 5, "question": "What color?", "question_id": 11}]
    (tmp_path / "q.json").write_text(json.dumps({"data_subtype": "val2014", "questions": qs}))
    (tmp_path / "a.json").write_text(json.dumps({"data_subtype": "val2014", "annotations": anns}))
    return ["--questions", str(tmp_path / "q.json"), "--annotations", str(tmp_path / "a.json"), "--predictions", str(tmp_path / "p.json")]


def test_score_vqa_prints_one_json_object(tmp_path, capsys):
    args = _files(tmp_path)
    (tmp_path / "p.json").write_text(json.dumps([{"question_id": 10, "answer": "Two"}, {"question_id": 11, "answer": "Blue."}]))
    assert main(["score", "vqa", *args]) == 0
    out = json.loads(capsys.readouterr().out)
    # "Two" -> "2": 1.0; "Blue." -> "blue" matched by 2 of 10: (2*1/3 + 8*2/3)/10 = 0.6
    assert out["overall"] == 80.0
    assert out["per_answer_type"] == {"number": 100.0, "other": 60.0}
    assert out["per_question_type"] == {"how many": 100.0, "what color": 60.0}


def test_score_vqa_bad_results_file_is_one_line(tmp_path, capsys):
    args = _files(tmp_path)
    (tmp_path / "p.json").write_text(json.dumps({"question_id": 10, "answer": "2"}))
    assert main(["score", "vqa", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "p.json: a VQA results file is a JSON list" in err[0]
