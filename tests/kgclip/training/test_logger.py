import csv
import logging

from kgclip.training.logger import MetricsLogger, RunLog, truncate_metrics


def _rows(path):
    with open(path) as f:
        return list(csv.reader(f))


def test_rows_every_n_steps_and_at_the_last(tmp_path):
    m = MetricsLogger(tmp_path, ["step", "loss", "kd"], total=5, every=2, quiet=True)
    wrote = [m.update(s, {"step": s, "loss": 1.0 / s}) for s in range(1, 6)]
    m.close()
    assert wrote == [False, True, False, True, True]
    assert _rows(tmp_path / "metrics.csv") == [["step", "loss", "kd"], ["2", "0.5", ""], ["4", "0.25", ""], ["5", "0.2", ""]]


def test_resume_keeps_rows_up_to_the_step_and_appends(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("step,loss\n1,0.9\n2,0.8\n3,0.7\n4,0.6\n")
    assert truncate_metrics(path, 2) == 2
    assert _rows(path) == [["step", "loss"], ["1", "0.9"], ["2", "0.8"]]
    assert truncate_metrics(path, 2) == 0
    m = MetricsLogger(tmp_path, ["step", "loss"], total=4, start=2, every=1, quiet=True)
    m.update(3, {"step": 3, "loss": 0.5})
    m.close()
    assert _rows(path)[1:] == [["1", "0.9"], ["2", "0.8"], ["3", "0.5"]]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_other_ranks_write_nothing(tmp_path):
    m = MetricsLogger(None, ["step"], total=2, every=1)
    assert m.update(1, {"step": 1}) is True
    m.close()
    assert list(tmp_path.iterdir()) == []


def test_run_log_writes_what_was_logged_before_the_file_was_named(tmp_path):
    log = logging.getLogger("kgclip.test_logger")
    with RunLog() as run_log:
        log.info("while building")
        run_log.to_file(tmp_path / "train.log")
        log.info("while training")
    text = (tmp_path / "train.log").read_text()
    assert text.index("while building") < text.index("while training")
    log.info("after the run")
    assert "after the run" not in (tmp_path / "train.log").read_text()
