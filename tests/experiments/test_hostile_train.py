"""Hostile but plausible ``kgclip train`` input (issue 16, items 2, 3, 5, 6, 7, 8, 9, 11).

Each case runs the real command line and asserts the exit code, the one-line message on stderr
and that nothing outside the run folder changed (a snapshot of the temporary tree before and after).
"""

import csv
import json
import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
import yaml

from kgclip.training import load_checkpoint
from kgclip.training.rundir import RunLock
from tests.experiments.test_hostile_store import _edit_shard, _set, refused, run_cli, snapshot
from tests.kgclip.training.test_loop import _config, _store


@pytest.fixture
def setup(tmp_path):
    """(the temporary root, a config file training 4 steps into runs/t with checkpoints at 2 and 4)."""
    store = _store(tmp_path)
    _, data = _config(tmp_path, store)
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(data))
    return tmp_path, path


def _train(capsys, cfg, *extra):
    rc, err, out = run_cli(capsys, "train", cfg, *extra)
    assert rc == 0, err
    return out


def _steps(run):
    with open(run / "metrics.csv") as f:
        return [int(r["step"]) for r in csv.DictReader(f)]


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


# -- 2. an existing run name --------------------------------------------------------------------------

def test_2_an_existing_run_is_refused_and_left_as_it_was(setup, capsys):
    root, cfg = setup
    _train(capsys, cfg)
    refused(capsys, root, "train", cfg, "train.steps=2",
            match=f"{root / 'runs' / 't'}: a run of this name exists; pass train.resume=latest to continue it, --force to move it aside")


def test_2_force_moves_the_old_run_aside_and_the_success_line_names_a_file_that_exists(setup, capsys):
    root, cfg = setup
    _train(capsys, cfg)
    old = snapshot(root / "runs" / "t")
    before = snapshot(root, skip=[root / "runs"])
    out = _train(capsys, cfg, "train.steps=2", "--force")
    (aside,) = [p for p in (root / "runs").iterdir() if p.name.startswith("t.old-")]
    assert snapshot(aside) == old  # the earlier run, whole and untouched
    named = out.strip().rsplit("checkpoint ", 1)[1]
    assert named.endswith("step-0000002.pt") and os.path.isfile(named)
    assert _steps(root / "runs" / "t") == [1, 2]
    assert sorted(p.name for p in (root / "runs" / "t" / "checkpoints").iterdir()) == ["step-0000002.pt"]
    assert snapshot(root, skip=[root / "runs"]) == before


# -- 3. two runs of one name at once ---------------------------------------------------------------------

def test_3_a_second_run_while_one_trains_is_refused_in_one_line(setup, capsys):
    root, cfg = setup
    run = root / "runs" / "t"
    run.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(run / '.lock')!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "os.write(fd, f'{os.getpid()} otherhost'.encode())\n"
        "print('locked', flush=True)\n"
        "time.sleep(60)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        refused(capsys, root, "train", cfg, match=f"{run}: another run is training in this folder (process {holder.pid} on otherhost)")
    finally:
        holder.kill()
        holder.wait()


def test_3_a_lock_left_by_a_dead_process_is_taken_over(setup, capsys):
    root, cfg = setup
    run = root / "runs" / "t"
    run.mkdir(parents=True)
    (run / ".lock").write_text(f"{_dead_pid()} thishost\n")
    _train(capsys, cfg)
    assert "took over the lock" in (run / "train.log").read_text()
    assert not (run / ".lock").exists()  # released at the end


# -- 5 and 7. resume after kill -9, and from a truncated newest checkpoint ----------------------------------

def test_5_resume_drops_the_metrics_rows_written_after_the_checkpoint(setup, capsys):
    root, cfg = setup
    _train(capsys, cfg, "train.steps=3", "train.checkpoint_every=2")  # steps 1-3 logged; as after kill -9 at step 3:
    run = root / "runs" / "t"
    (run / "checkpoints" / "step-0000003.pt").unlink()  # the newest checkpoint is step 2, metrics hold step 3
    _train(capsys, cfg, "train.resume=latest")
    assert _steps(run) == [1, 2, 3, 4]


def test_7_a_truncated_newest_checkpoint_is_skipped_naming_it(setup, capsys):
    root, cfg = setup
    _train(capsys, cfg)
    ckpts = root / "runs" / "t" / "checkpoints"
    newest = ckpts / "step-0000004.pt"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    rc, err, _ = run_cli(capsys, "train", cfg, "train.resume=latest", "train.steps=5")
    assert rc == 0
    assert any("skipped checkpoint" in line and str(newest) in line for line in err), err
    assert load_checkpoint(ckpts / "step-0000005.pt")["step"] == 5 and (ckpts / "step-0000004.pt.corrupt").is_file()
    assert _steps(root / "runs" / "t") == [1, 2, 3, 4, 5]


def test_11_a_zero_byte_checkpoint_is_one_line(setup, capsys):
    root, cfg = setup
    empty = root / "empty.pt"
    empty.write_bytes(b"")
    refused(capsys, root, "train", cfg, f"train.resume={empty}", match=f"{empty}: not a readable kgclip checkpoint (the file is empty or cut short)")
    refused(capsys, root, "eval", empty, "--store", root / "store", match=f"{empty}: not a readable kgclip checkpoint")


def test_11_resume_with_nothing_to_resume_makes_no_run_folder(setup, capsys):
    root, cfg = setup
    refused(capsys, root, "train", cfg, "train.resume=latest", match="nothing to resume (no checkpoint in")
    assert not (root / "runs").exists()


# -- 4. resume refuses a store edited in place (same size) ---------------------------------------------------

def _plain_parquet(table, path):
    """Write ``table`` uncompressed, without dictionaries or statistics: the file's size then depends only
    on the row count and the strings, not on the integer values."""
    pq.write_table(table, path, compression="none", use_dictionary=False, write_statistics=False)


def test_4_a_triplet_shard_edited_in_place_to_the_same_size_is_refused_at_resume(setup, capsys):
    import pyarrow as pa

    from kgclip.store import KnowledgeStore
    from kgclip.store.files import file_table

    root, cfg = setup
    store = root / "store"
    (shard,) = sorted((store / "triplets").glob("*.parquet"))[:1]
    table = pq.read_table(shard)
    _plain_parquet(table, shard)  # the store as written: its manifest records this file's size and SHA-256
    m = json.loads((store / "manifest.json").read_text())
    m["files"] = file_table(store)
    (store / "manifest.json").write_text(json.dumps(m))
    _train(capsys, cfg)
    fingerprint, size, data = KnowledgeStore(store).fingerprint(), shard.stat().st_size, shard.read_bytes()
    tails = table.column("tail_id").to_pylist()
    tails[0] = next(t for t in tails if t != tails[0])  # another entity that exists: the store stays valid
    _plain_parquet(table.set_column(table.schema.get_field_index("tail_id"), "tail_id", pa.array(tails, pa.int64())), shard)
    assert shard.stat().st_size == size and shard.read_bytes() != data
    assert KnowledgeStore(store).fingerprint() == fingerprint  # sizes and the manifest alone do not see it
    name = shard.relative_to(store).as_posix()
    refused(capsys, root, "train", cfg, "train.resume=latest", "train.steps=6",
            match=f"the store {store} changed since it was written: {name}: content differs from the SHA-256 in manifest.json")
    rc, err, _ = run_cli(capsys, "train", cfg, "train.resume=latest", "train.steps=6", "--force")  # forced: it resumes
    assert rc == 0, err
    assert _steps(root / "runs" / "t") == [1, 2, 3, 4, 5, 6]


# -- 6. leftovers of a save killed mid-write ----------------------------------------------------------------

def test_6_temporaries_of_dead_saves_are_cleaned_and_live_ones_kept(setup, capsys):
    root, cfg = setup
    _train(capsys, cfg, "train.steps=2")
    ckpts = root / "runs" / "t" / "checkpoints"
    dead = ckpts / f".step-0000004.pt.tmp-{_dead_pid()}"
    dead.write_bytes(b"half a checkpoint")
    live = ckpts / f".step-0000004.pt.tmp-{os.getpid()}"
    live.write_bytes(b"being written")
    _train(capsys, cfg, "train.resume=latest")
    assert not dead.exists() and live.exists()
    assert sorted(p.name for p in ckpts.iterdir() if not p.name.startswith(".")) == ["step-0000002.pt", "step-0000004.pt"]


# -- 8. run names ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["../../x", "a/b", "/abs", "..", "."])
def test_8_a_run_name_is_one_path_component(setup, capsys, name):
    root, cfg = setup
    refused(capsys, root.parent, "train", cfg, f"name={name}", match="name: a run name is one folder name (no '/', not '.' or '..')")


# -- 9 and 11. the store is validated before a run folder is made ----------------------------------------------

def _rewrite_triplets(store, column, fn):
    (shard,) = sorted((store / "triplets").glob("*.parquet"))[:1]
    t = pq.read_table(shard).to_pandas()
    t[column] = fn(t[column])
    t.to_parquet(shard, index=False)


@pytest.mark.parametrize(("column", "fn", "match"), [
    ("tail_id", lambda c: c.where(c.index != 0, 10_000), "dangling tail_id"),
    ("head_id", lambda c: c.where(c.index != 0, -5), "dangling head_id"),
    ("relation_id", lambda c: c.where(c.index != 0, 99), "dangling relation_id"),
    ("split", lambda c: c.where(c.index != 0, "holdout"), "unknown split"),
])
def test_9_a_broken_store_stops_train_before_a_run_folder(setup, capsys, column, fn, match):
    root, cfg = setup
    _rewrite_triplets(root / "store", column, fn)
    refused(capsys, root, "train", cfg, match=match)
    assert not (root / "runs").exists()


def test_11_a_manifest_whose_counts_are_wrong_is_one_line(setup, capsys):
    root, cfg = setup
    m = json.loads((root / "store" / "manifest.json").read_text())
    m["counts"]["triplets"] += 7
    (root / "store" / "manifest.json").write_text(json.dumps(m))
    refused(capsys, root, "train", cfg, match="counts.triplets")
    assert not (root / "runs").exists()


# -- 11. config values -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("override", "match"), [
    ("train.checkpoint_every=0", "train.checkpoint_every: must be >= 1, got 0"),
    ("train.log_every=0", "train.log_every: must be >= 1, got 0"),
    ("train.steps=-1", "train.steps: must be >= 1, got -1"),
    ("optim.tower_lr=nan", "optim.tower_lr: expected a finite number, got 'nan'"),
    ("train.precision=fp16", "train.precision: expected one of 'auto', 'fp32', 'bf16', got 'fp16'"),
])
def test_11_bad_config_values_are_one_line_naming_the_key(setup, capsys, override, match):
    root, cfg = setup
    refused(capsys, root, "train", cfg, override, match=match)
    assert not (root / "runs").exists()


# -- 9 and 11. what only building the model and the batches can find ----------------------------------------------

@pytest.mark.parametrize(("override", "match"), [
    ("data.source_weights={nowhere: 1}", "source_weights names 'nowhere', which no training triplet has as source"),
    ("model.clip_model=no-such-model", "unknown CLIP model 'no-such-model'"),
])
def test_11_an_error_found_while_building_makes_no_run_folder_and_the_fixed_command_runs(setup, capsys, override, match):
    root, cfg = setup
    refused(capsys, root, "train", cfg, override, match=match)
    assert not (root / "runs").exists()  # before: runs/t/train.log was left, and the fixed command was refused as an existing run
    _train(capsys, cfg, "train.steps=1")
    assert "entity images:" in (root / "runs" / "t" / "train.log").read_text()  # what building logged is in train.log


def test_3_a_busy_run_is_refused_before_its_model_and_data_are_built(setup, capsys, monkeypatch):
    from kgclip.training.trainer import Trainer

    root, cfg = setup
    _train(capsys, cfg, "train.steps=2")
    run = root / "runs" / "t"
    monkeypatch.setattr(Trainer, "build", lambda self: pytest.fail("built before the run folder was checked"))
    refused(capsys, root, "train", cfg, match=f"{run}: a run of this name exists")
    with RunLock(run):
        refused(capsys, root, "train", cfg, "train.resume=latest", match=f"{run}: another run is training in this folder (process {os.getpid()}")


@pytest.mark.parametrize(("column", "value", "match"), [("modality", "video", "entity(ies) of unknown modality"),
                                                         ("text", None, "text entity(ies) without text")])
def test_9_an_entity_no_model_can_read_stops_train_before_a_run_folder(setup, capsys, column, value, match):
    root, cfg = setup
    (shard,) = sorted((root / "store" / "entities").glob("*.parquet"))[:1]
    row = int((pq.read_table(shard).to_pandas()["modality"] == "text").to_numpy().argmax())
    _edit_shard(shard, _set(column, row, value))  # before: AttributeError / TypeError tracebacks from the loader
    refused(capsys, root, "train", cfg, match=match)
    assert not (root / "runs").exists()
