"""Plain triples: one file split by entity pair, or given train/valid/test files kept as given."""

import pytest

from experiments.cli import main
from kgclip.store import open_valid
from tests.data_prep import fixtures


def _rows(store):
    k, rk, t = store.entity_keys, store.relation_keys, store.triplets
    return [(k[h].removeprefix("triples:"), rk[r], k[tl].removeprefix("triples:"), sp)
            for h, r, tl, sp in zip(t.head_id, t.relation_id, t.tail_id, t.split, strict=True)]


def _pair_leakage(parts: dict[str, list[tuple[str, str, str]]]) -> dict[str, int]:
    """Per split, its lines whose unordered entity pair occurs in another split (computed apart from kgclip)."""
    pairs = {s: {frozenset((h, t)) for h, _, t in lines} for s, lines in parts.items()}
    return {s: sum(frozenset((h, t)) in set().union(*(pairs[o] for o in parts if o != s)) for h, _, t in lines) for s, lines in parts.items()}


def test_umls_like_keeps_every_triple_in_one_file_and_in_three(tmp_path, capsys):
    f = fixtures.write_umls_like(tmp_path / "umls")
    n = len(f["all_lines"])
    # one file: split by kgclip, by unordered entity pair; nothing dropped, nothing leaks
    assert main(["prepare", "triples", str(f["all"]), "--out", str(tmp_path / "one"), "--split-ratios", "0.8,0.1,0.1"]) == 0
    one = open_valid(tmp_path / "one")
    rows = _rows(one)
    assert len(rows) == n and {r[:3] for r in rows} == set(f["all_lines"])
    by_pair: dict = {}
    for h, _, t, sp in rows:
        by_pair.setdefault(frozenset((h, t)), set()).add(sp)
    assert all(len(v) == 1 for v in by_pair.values()) and len(by_pair) < n  # pairs do carry several triples
    assert one.manifest["leakage"] == {"train": 0, "valid": 0, "test": 0} and min(one.manifest["counts"]["splits"].values()) > 0
    # three files: every line in its file's split; the leakage between them counted, not removed
    assert main(["prepare", "triples", "--train", str(f["train"]), "--valid", str(f["valid"]), "--test", str(f["test"]),
                 "--out", str(tmp_path / "three")]) == 0
    three = open_valid(tmp_path / "three")
    parts = {s: f[f"{s}_lines"] for s in ("train", "valid", "test")}
    assert sorted(_rows(three)) == sorted((*x, s) for s, lines in parts.items() for x in lines)
    assert three.manifest["counts"]["splits"] == {s: len(v) for s, v in parts.items()}
    expected = _pair_leakage(parts)
    assert three.manifest["leakage"] == expected and expected["test"] > 0
    capsys.readouterr()
    assert main(["info", str(tmp_path / "three")]) == 0
    out = capsys.readouterr().out
    assert f"leakage (triplets whose entity pair is also in another split): {expected}" in out


def test_given_train_only_and_duplicates_across_files(tmp_path):
    (tmp_path / "train.txt").write_text("a\tr\tb\nb\tr\tc\n")
    (tmp_path / "test.txt").write_text("a\tr\tb\n")  # the same triple in train and test: kept in both, counted
    assert main(["prepare", "triples", "--train", str(tmp_path / "train.txt"), "--test", str(tmp_path / "test.txt"), "--out", str(tmp_path / "s")]) == 0
    s = open_valid(tmp_path / "s")
    assert sorted(_rows(s)) == [("a", "r", "b", "test"), ("a", "r", "b", "train"), ("b", "r", "c", "train")]
    assert s.manifest["leakage"] == {"train": 1, "valid": 0, "test": 1}


@pytest.mark.parametrize("case", ["missing", "empty", "first line", "no train", "file and train"])
def test_given_split_files_bad_input_is_one_line_and_no_store(tmp_path, capsys, case):
    good = tmp_path / "train.txt"
    good.write_text("a\tr\tb\n")
    other = tmp_path / "valid.txt"
    args = ["--train", str(good), "--valid", str(other)]
    if case == "missing":
        message = "valid.txt: triples file not found"
    elif case == "empty":
        other.write_text("")
        message = "valid.txt: empty file"
    elif case == "first line":
        other.write_text("a\tr\n")
        message = "valid.txt:1: expected 3 fields"
    elif case == "no train":
        other.write_text("a\tr\tb\n")
        args, message = ["--valid", str(other)], "--valid/--test need --train"
    else:
        args, message = [str(good), "--train", str(good)], "give either one triples FILE"
    assert main(["prepare", "triples", *args, "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "s").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_given_split_file_with_a_bad_line_counts_it(tmp_path, capsys):
    (tmp_path / "train.txt").write_text("".join(f"e{i}\tr\te{i + 1}\n" for i in range(30)))
    (tmp_path / "test.txt").write_text("x\tr\ty\nbroken line\nx\tr\tz\n")
    assert main(["prepare", "triples", "--train", str(tmp_path / "train.txt"), "--test", str(tmp_path / "test.txt"),
                 "--out", str(tmp_path / "s"), "--max-bad-fraction", "0.1"]) == 0
    s = open_valid(tmp_path / "s")
    assert s.manifest["counts"]["splits"] == {"train": 30, "valid": 0, "test": 2}
    assert s.manifest["sources"]["triples"]["skipped"] == {"1 fields instead of 3": 1}
    assert "test.txt:2: 1 fields instead of 3" in capsys.readouterr().err
