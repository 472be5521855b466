"""Fuzzing the converters: randomly mutated copies of each source's fixture files (issue 16).

A seeded mutator changes one input file of a converter's fixture at a time, at the level of bytes
(flips, insertions, cuts, a byte order mark), of lines and tab-separated fields (for the text
formats) or of JSON structure (a value replaced by a hostile one: a wrong type, NaN, a path
leading out of the image folder, a huge number; a key dropped; an element duplicated). Every
mutant runs through the real command line, which must:

- exit 0 or 2, never raise (no traceback);
- on exit 2, end with one ``kgclip prepare: error: ...`` line and leave no store;
- on exit 0, write a store that passes full validation, every image path inside its root;
- never write or delete anything outside ``--out`` (a snapshot of the whole folder before and after).

The fast tests run 40 mutants in all; ``-m slow`` runs 60 per case. A failure names the seed,
the case and the mutations, and keeps the mutated file in the test's folder to rerun it.
"""

import copy
import gzip
import json
import random
import shutil
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest

from experiments.cli import main
from kgclip.store import KnowledgeStore, validate_store
from tests.data_prep import fixtures
from tests.experiments.test_hostile_store import snapshot

OUTSIDE = ["../outside/secret.jpg", "../../outside/secret.jpg", "../../../outside/secret.jpg", "/etc/passwd"]
"""Paths that lead from an image folder of the fixtures to ``outside/secret.jpg`` (a real image) or to a system file."""

HOSTILE_VALUES: list = [
    None, "", " ", "NaN", "Infinity", "-1", "12", "..", *OUTSIDE, "a\x00b", "\ufeffdog", "\ud800", "\u202eevil", "x" * 2000,
    -1, 0, 1, 2**63, -(2**70), 1e308, 1.5, float("nan"), True, False, [], {}, [1, 2], ["a", "b"], {"a": None}, {"x": 1, "y": "z"},
    json.loads("[" * 80 + "]" * 80),
]
"""Values a JSON mutation puts in place of a value: wrong types, non-finite numbers, paths out, control characters."""

HOSTILE_BYTES = [b"\xef\xbb\xbf", b"\x00", b"\xff\xfe", b"\n", b"\r\n", b"\t", b'"', b"\\", b"{", b"]", b",", b"../", b"\xc3", b"e999"]
"""Byte strings a byte mutation inserts."""

HOSTILE_FIELDS = [b"", b" ", *(p.encode() for p in OUTSIDE), b"\xff\xfe", b"\xef\xbb\xbfdog", b"a\x00b", b"x" * 2000, b"/c/en", b"/c//"]
"""Field values a line mutation puts in a tab-separated field."""


# -- the mutator ----------------------------------------------------------------------------------------

def mutate_bytes(rnd: random.Random, data: bytes) -> tuple[bytes, str]:
    """One byte-level change: flip, insert, delete, duplicate a span, truncate, empty, prepend a BOM."""
    op = rnd.choice(["flip", "insert", "delete", "duplicate", "truncate", "empty", "bom"])
    n = len(data)
    i = rnd.randrange(n + 1)
    if op == "flip" and n:
        i = min(i, n - 1)
        return data[:i] + bytes([data[i] ^ (1 << rnd.randrange(8))]) + data[i + 1:], f"flip a bit of byte {i}"
    if op == "insert" or not n:
        b = rnd.choice(HOSTILE_BYTES)
        return data[:i] + b + data[i:], f"insert {b!r} at {i}"
    j = min(n, i + rnd.randint(1, 64))
    if op == "delete":
        return data[:i] + data[j:], f"delete bytes {i}-{j}"
    if op == "duplicate":
        return data[:j] + data[i:j] + data[j:], f"duplicate bytes {i}-{j}"
    if op == "truncate":
        return data[:i], f"truncate to {i} bytes"
    if op == "empty":
        return b"", "empty the file"
    return b"\xef\xbb\xbf" + data, "prepend a byte order mark"


def mutate_lines(rnd: random.Random, data: bytes) -> tuple[bytes, str]:
    """One change to a line of a tab-separated file: a field replaced, tabs dropped or added, lines swapped, blanked or repeated."""
    lines = data.split(b"\n")
    k = rnd.randrange(len(lines))
    fields = lines[k].split(b"\t")
    op = rnd.choice(["field", "field", "drop_tab", "extra_tab", "swap", "blank", "duplicate", "crlf"])
    if op == "field":
        f, value = rnd.randrange(len(fields)), rnd.choice(HOSTILE_FIELDS)
        fields[f] = value
        lines[k], what = b"\t".join(fields), f"field {f} of line {k + 1} := {value[:40]!r}"
    elif op == "drop_tab":
        lines[k], what = lines[k].replace(b"\t", b" ", 1), f"drop a tab of line {k + 1}"
    elif op == "extra_tab":
        lines[k], what = lines[k] + b"\textra", f"add a field to line {k + 1}"
    elif op == "swap" and len(fields) > 1:
        fields[0], fields[-1] = fields[-1], fields[0]
        lines[k], what = b"\t".join(fields), f"swap the first and last field of line {k + 1}"
    elif op == "blank":
        lines[k], what = b"   ", f"blank line {k + 1}"
    elif op == "crlf":
        lines[k], what = lines[k] + b"\r", f"CRLF at line {k + 1}"
    else:
        lines.insert(k, lines[k])
        what = f"repeat line {k + 1}"
    return b"\n".join(lines), what


def _slots(node, path=()):
    """(container, key, path) for every value below ``node``, depth first."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in list(items):
        yield node, key, (*path, key)
        yield from _slots(value, (*path, key))


def mutate_json(rnd: random.Random, data: bytes) -> tuple[bytes, str]:
    """One change to the JSON structure: a value replaced by a hostile one, a key or element dropped or repeated, the whole document replaced."""
    doc = json.loads(data)
    slots = list(_slots(doc))
    if not slots or rnd.random() < 0.03:
        value = rnd.choice(HOSTILE_VALUES)
        return json.dumps(value).encode(), f"document := {value!r:.40}"
    container, key, path = rnd.choice(slots)
    op = rnd.choice(["replace", "replace", "replace", "drop", "repeat"])
    where = "/".join(map(str, path))
    if op == "drop":
        del container[key]
        return json.dumps(doc).encode(), f"drop {where}"
    if op == "repeat" and isinstance(container, list):
        container.insert(key, copy.deepcopy(container[key]))
        return json.dumps(doc).encode(), f"repeat {where}"
    value = copy.deepcopy(rnd.choice([v for v in HOSTILE_VALUES if repr(v) != repr(container[key])]))
    container[key] = value
    return json.dumps(doc).encode(), f"{where} := {value!r:.40}"  # NaN is written as the invalid literal NaN


MUTATORS: dict[str, list[Callable[[random.Random, bytes], tuple[bytes, str]]]] = {
    "json": [mutate_json, mutate_json, mutate_json, mutate_bytes],
    "lines": [mutate_lines, mutate_lines, mutate_bytes],
}


def mutate(rnd: random.Random, path: Path, kind: str) -> list[str]:
    """Apply one to three mutations to ``path`` (in place); returns what was done."""
    gz = path.suffix == ".gz"
    data = gzip.decompress(path.read_bytes()) if gz else path.read_bytes()
    done = []
    for _ in range(rnd.randint(1, 3)):
        fn = rnd.choice(MUTATORS[kind])
        try:
            data, what = fn(rnd, data)
        except (ValueError, UnicodeDecodeError):  # no longer JSON after an earlier byte mutation
            data, what = mutate_bytes(rnd, data)
        done.append(what)
    if gz and rnd.random() < 0.3:
        path.write_bytes(mutate_bytes(rnd, gzip.compress(data))[0])
        done.append("and corrupt the gzip stream")
    else:
        path.write_bytes(gzip.compress(data) if gz else data)
    return done


# -- the cases: each converter on its fixture ------------------------------------------------------------

def _conceptnet(root: Path, gz: bool = False):
    root.mkdir(parents=True)
    f = fixtures.write_conceptnet(root / ("a.csv.gz" if gz else "a.csv"), rows=fixtures.CONCEPTNET_ROWS * 3)
    return ["conceptnet", f, "--lang", "en", "de"], {f: "lines"}


def _visual_genome(root: Path):
    f = fixtures.write_visual_genome(root / "vg", n_images=4)
    argv = ["visual-genome", "--image-data", f["image_data"], "--relationships", f["relationships"], "--attributes", f["attributes"],
            "--images", f["images"], "--with-names"]
    return argv, {f["image_data"]: "json", f["relationships"]: "json", f["attributes"]: "json"}


def _visualsem(root: Path):
    f = fixtures.write_visualsem(root / "vs")
    argv = ["visualsem", "--nodes", f["nodes"], "--tuples", f["tuples"], "--glosses", f["glosses"], "--images", f["images"]]
    return argv, {f["nodes"]: "json", f["tuples"]: "json", f["glosses"]: "json"}


def _coco(root: Path):
    f = fixtures.write_coco(root / "coco")
    return ["pairs", "--coco", f["coco"], "--images", f["images"]], {f["coco"]: "json"}


def _karpathy(root: Path):
    f = fixtures.write_karpathy(root / "karpathy")
    return ["pairs", "--karpathy", f["karpathy"], "--images", f["images"]], {f["karpathy"]: "json"}


def _tsv(root: Path):
    f = fixtures.write_pairs_tsv(root / "tsv")
    return ["pairs", "--tsv", f["tsv"]], {f["tsv"]: "lines"}


def _triples(root: Path):
    f = fixtures.write_umls_like(root / "umls")
    return ["triples", f["all"]], {f["all"]: "lines"}


def _triples_given_splits(root: Path):
    f = fixtures.write_umls_like(root / "umls")
    return ["triples", "--train", f["train"], "--valid", f["valid"], "--test", f["test"]], {f[s]: "lines" for s in ("train", "valid", "test")}


CASES = {
    "conceptnet": _conceptnet, "conceptnet-gz": lambda root: _conceptnet(root, gz=True), "visual-genome": _visual_genome,
    "visualsem": _visualsem, "coco": _coco, "karpathy": _karpathy, "tsv": _tsv, "triples": _triples, "triples-splits": _triples_given_splits,
}
FAST_MUTANTS = {"conceptnet": 4, "conceptnet-gz": 4, "visual-genome": 6, "visualsem": 5, "coco": 5, "karpathy": 4, "tsv": 4, "triples": 4,
                "triples-splits": 4}
"""Mutants per case in the fast run: 40 in all."""


def _run(capsys, root: Path, argv: list, out: Path) -> tuple[int, list[str]]:
    """(exit code, stderr lines) of ``kgclip --quiet prepare ARGV --out OUT``.

    An exception, or one that a library ignored and would print with its traceback (through
    ``sys.unraisablehook``), is exit code -1 with the traceback as the lines.
    """
    ignored: list[str] = []
    previous = sys.unraisablehook
    sys.unraisablehook = lambda u: ignored.extend(["Exception ignored in a library", *traceback.format_exception(u.exc_value)])
    try:
        rc = main(["--quiet", "prepare", *map(str, argv), "--out", str(out)])
    except BaseException:  # any escape is the defect this test looks for
        return -1, [*capsys.readouterr().err.splitlines(), *traceback.format_exc().splitlines()]
    finally:
        sys.unraisablehook = previous
    err = capsys.readouterr().err.strip().splitlines()
    return (-1, [*err, *ignored]) if ignored else (rc, err)


def _problems(rc: int, err: list[str], out: Path) -> list[str]:
    """What the run did wrong, if anything."""
    if rc not in (0, 2):
        return [f"exit code {rc}", *err]
    if any("Traceback" in line for line in err):
        return ["a traceback on stderr", *err]
    if rc == 2:
        if not err or not err[-1].startswith("kgclip prepare: error: "):
            return ["exit 2 without a final one-line error", *err]
        if out.exists():
            return [f"exit 2 left {out}"]
        return []
    if not out.is_dir():
        return ["exit 0 without a store"]
    store = KnowledgeStore(out)
    problems = validate_store(store)
    try:
        store.image_paths()
    except Exception as exc:  # an image path leading out of its root
        problems.append(str(exc))
    return problems


def fuzz(capsys, tmp_path: Path, case: str, n: int, seed: int) -> None:
    """Run ``n`` mutants of ``case``'s fixture, each checked as the module docstring says."""
    rnd = random.Random(f"{case}/{seed}")
    argv, files = CASES[case](tmp_path / "in")
    fixtures.write_image(tmp_path / "in" / "outside" / "secret.jpg")
    fixtures.write_image(tmp_path / "outside" / "secret.jpg")
    pristine = {f: f.read_bytes() for f in files}
    for i in range(n):
        path = rnd.choice(sorted(files))
        done = mutate(rnd, path, files[path])
        extra = rnd.choice([[], ["--max-bad-fraction", "0.5"], ["--max-bad-fraction", "1"], ["--limit", str(rnd.randint(1, 20))]])
        out = tmp_path / f"out-{i}"
        before = snapshot(tmp_path, skip=[out])
        rc, err = _run(capsys, tmp_path, [*argv, *extra], out)
        problems = _problems(rc, err, out)
        if snapshot(tmp_path, skip=[out]) != before:
            problems.append("files outside --out changed")
        if problems:
            kept = tmp_path / f"failing-{i}-{path.name}"
            shutil.copyfile(path, kept)
            pytest.fail(f"case {case}, seed {seed}, mutant {i}: {path.name}: {'; '.join(done)}; options {extra}; kept as {kept}\n"
                        + "\n".join(problems[:40]), pytrace=False)
        shutil.rmtree(out, ignore_errors=True)
        path.write_bytes(pristine[path])


@pytest.mark.parametrize("case", CASES)
def test_the_unmutated_fixtures_convert(tmp_path, capsys, case):
    argv, _ = CASES[case](tmp_path / "in")
    rc, err = _run(capsys, tmp_path, [*argv, "--max-bad-fraction", "0.5"], tmp_path / "out")
    assert rc == 0, err
    assert _problems(rc, err, tmp_path / "out") == []


@pytest.mark.parametrize("case", CASES)
def test_mutants_exit_0_or_2_without_traceback_and_write_only_out(tmp_path, capsys, case):
    fuzz(capsys, tmp_path, case, FAST_MUTANTS[case], seed=0)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("case", CASES)
def test_many_mutants(tmp_path, capsys, case, seed):
    fuzz(capsys, tmp_path, case, 30, seed=seed)


def test_the_mutator_is_seeded_and_changes_the_file():
    data = json.dumps({"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [{"image_id": 1, "caption": "x"}]}).encode()
    runs = [[mutate_json(random.Random(s), data) for s in range(20)] for _ in range(2)]
    assert runs[0] == runs[1]
    assert all(out != data for out, _ in runs[0])
    assert mutate_lines(random.Random(3), b"a\tb\tc\nd\te\tf\n") == mutate_lines(random.Random(3), b"a\tb\tc\nd\te\tf\n")
