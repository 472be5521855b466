"""Converters found by name; one template test body over every registered converter (PyKEEN's cases style)."""

import inspect
import subprocess
import sys

import pytest

from data_prep.base import Converter
from data_prep.registry import CONVERTERS, converter_class
from data_prep.visualsem import VisualSem
from experiments.cli import main
from kgclip.errors import ConfigError, SourceError

# The smallest arguments of each converter, all naming files that do not exist. A new converter
# must add its case here (test_every_converter_has_a_case).
MISSING_INPUT = {
    "conceptnet": ["nowhere.csv"],
    "visual-genome": ["--image-data", "nowhere.json", "--relationships", "nowhere.json", "--images", "."],
    "visualsem": ["--nodes", "nowhere.json", "--tuples", "t.json", "--glosses", "g.json", "--images", "."],
    "pairs": ["--tsv", "nowhere.tsv"],
    "triples": ["nowhere.txt"],
}


def test_every_converter_has_a_case():
    assert set(MISSING_INPUT) == set(CONVERTERS)


@pytest.mark.parametrize("spelling,name", [("visual-genome", "visual-genome"), ("visual_genome", "visual-genome"),
                                           ("VisualGenome", "visual-genome"), ("ConceptNet", "conceptnet"), ("pairs", "pairs")])
def test_lookup_by_name(spelling, name):
    assert converter_class(spelling) is CONVERTERS[name]


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ConfigError, match="unknown source 'wordnet'; known sources: conceptnet, visual-genome, visualsem, pairs, triples"):
        converter_class("wordnet")


@pytest.mark.parametrize("name", list(CONVERTERS))
def test_converter_template(name, tmp_path, capsys):
    cls = CONVERTERS[name]
    assert issubclass(cls, Converter) and cls.name == name and cls.description
    assert list(inspect.signature(cls.convert).parameters) == ["self", "writer", "conv"]
    assert cls.options() and all(f.metadata["help"] for f in cls.options())
    # a missing input file: one line naming it, exit 2, nothing written
    assert main(["prepare", name, *MISSING_INPUT[name], "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nowhere" in err[0] and "not found" in err[0]
    assert not (tmp_path / "s").exists() and not any(tmp_path.iterdir())


def test_prepare_help_lists_every_source(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["prepare", "--help"])
    assert exc.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for name, cls in CONVERTERS.items():
        assert name in out and cls.description in out
    assert "merge" in out and "demo" in out


def test_required_arguments_and_source_from_the_converter():
    with pytest.raises(SourceError, match="visualsem: nodes is required"):
        VisualSem(tuples="t", glosses="g", images=".")
    pairs = converter_class("pairs")
    assert pairs(karpathy="x/dataset_flickr30k.json", images="imgs").source == "flickr30k"
    assert pairs(coco="c.json", images="imgs").source == "coco" and pairs(tsv="a/p.tsv").source == "pairs"
    assert set(pairs(karpathy="dataset_coco.json", images="imgs").image_roots()) == {"coco"}


def test_no_import_cycle_and_no_application_import():
    code = "import sys, data_prep.registry; bad = [m for m in sys.modules if m.startswith('experiments')]; assert not bad, bad"
    subprocess.run([sys.executable, "-c", code], check=True)
