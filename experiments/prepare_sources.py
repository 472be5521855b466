"""The arguments and converter call of each ``kgclip prepare`` verb (one function pair per source)."""

import argparse
from pathlib import Path

from data_prep.common import Conversion
from data_prep.conceptnet import convert_conceptnet
from data_prep.pairs import convert_coco, convert_karpathy, convert_tsv, karpathy_source
from data_prep.triples import convert_triples
from data_prep.visual_genome import convert_visual_genome
from data_prep.visualsem import convert_visualsem
from experiments.prepare import register
from kgclip.errors import SourceError
from kgclip.store import StoreWriter


def _csv_list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _triples_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", nargs="?", default=None, help="text file of head / relation / tail lines, split by entity pair")
    p.add_argument("--train", default=None, help="a given train file (its lines stay in train; with --valid/--test)")
    p.add_argument("--valid", default=None, help="a given valid file")
    p.add_argument("--test", default=None, help="a given test file")
    p.add_argument("--delimiter", default="\t", help="field separator (default: tab; 'TAB' also accepted)")


@register("triples", "triples", help="plain head/relation/tail text triples")
def _triples(args: argparse.Namespace, w: StoreWriter, conv: Conversion) -> None:
    delim = "\t" if args.delimiter.upper() == "TAB" else args.delimiter
    given = [(f, s) for f, s in ((args.train, "train"), (args.valid, "valid"), (args.test, "test")) if f]
    if bool(args.file) == bool(given):
        raise SourceError("give either one triples FILE (split by kgclip) or --train [--valid] [--test] (splits kept as given)")
    if given and not args.train:
        raise SourceError("--valid/--test need --train")
    for f, split in given or [(args.file, None)]:
        convert_triples(f, w, conv, delimiter=delim, split=split)


def _conceptnet_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("assertions", help="conceptnet-assertions-5.7.0.csv[.gz]")
    p.add_argument("--lang", nargs="+", default=["en"], help="languages both ends must have (default: en; 'all' for any)")
    p.add_argument("--relations", type=_csv_list, default=None, help="comma-separated relations to keep, e.g. IsA,PartOf")
    p.add_argument("--min-weight", type=float, default=None)


@register("conceptnet", "conceptnet", help="ConceptNet 5 assertion dump")
def _conceptnet(args: argparse.Namespace, w: StoreWriter, conv: Conversion) -> None:
    langs = None if args.lang == ["all"] else args.lang
    convert_conceptnet(args.assertions, w, conv, langs=langs, relations=args.relations, min_weight=args.min_weight)


def _vg_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--image-data", required=True, help="image_data.json")
    p.add_argument("--relationships", required=True, help="relationships.json")
    p.add_argument("--objects", default=None, help="objects.json (optional)")
    p.add_argument("--attributes", default=None, help="attributes.json (optional): (region, has attribute, a) triplets")
    p.add_argument("--images", required=True, help="folder holding VG_100K/ and VG_100K_2/")
    p.add_argument("--min-predicate-count", type=int, default=1)
    p.add_argument("--with-names", action="store_true", help="add (region, is a, name) text triplets")
    p.add_argument("--no-check-images", action="store_true", help="trust image paths without stat")


@register("visual-genome", "visual_genome", help="Visual Genome scene graphs")
def _vg(args: argparse.Namespace, w: StoreWriter, conv: Conversion) -> None:
    w.image_roots["visual_genome"] = str(Path(args.images).resolve())
    convert_visual_genome(
        image_data=args.image_data, relationships=args.relationships, images=args.images, writer=w, conv=conv,
        objects=args.objects, attributes=args.attributes, min_predicate_count=args.min_predicate_count,
        with_names=args.with_names, check_images=not args.no_check_images,
    )


def _vs_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nodes", required=True, help="nodes.v2.json")
    p.add_argument("--tuples", required=True, help="tuples.v2.json")
    p.add_argument("--glosses", required=True, help="nodes.glosses.json")
    p.add_argument("--images", required=True, help="image folder (<2 chars>/<hash>.jpg)")
    p.add_argument("--lang", default="en", help="language of the glosses (default en)")
    p.add_argument("--no-check-images", action="store_true")


@register("visualsem", "visualsem", help="VisualSem v2 multi-modal knowledge graph")
def _vs(args: argparse.Namespace, w: StoreWriter, conv: Conversion) -> None:
    w.image_roots["visualsem"] = str(Path(args.images).resolve())
    convert_visualsem(
        nodes=args.nodes, tuples=args.tuples, glosses=args.glosses, images=args.images, writer=w, conv=conv,
        lang=args.lang, check_images=not args.no_check_images,
    )


def _pairs_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--coco", default=None, help="COCO captions JSON")
    p.add_argument("--karpathy", default=None, help="Karpathy split JSON (dataset_coco.json, dataset_flickr30k.json): its split is kept")
    p.add_argument("--images", default=None, help="image folder of --coco or --karpathy")
    p.add_argument("--tsv", default=None, help="CC3M-style TSV: image path <TAB> caption")
    p.add_argument("--no-check-images", action="store_true")


@register("pairs", "pairs", help="image-caption pairs (COCO captions or a TSV)")
def _pairs(args: argparse.Namespace, w: StoreWriter, conv: Conversion) -> None:
    if sum(map(bool, (args.coco, args.karpathy, args.tsv))) != 1:
        raise SourceError("give exactly one of --coco (with --images), --karpathy (with --images) or --tsv")
    conv.source = "coco" if args.coco else karpathy_source(args.karpathy) if args.karpathy else "pairs"
    if args.karpathy:
        if not args.images:
            raise SourceError("--karpathy needs --images")
        w.image_roots[conv.source] = str(Path(args.images).resolve())
        convert_karpathy(args.karpathy, args.images, w, conv, check_images=not args.no_check_images, source=conv.source)
    elif args.coco:
        if not args.images:
            raise SourceError("--coco needs --images")
        w.image_roots["coco"] = str(Path(args.images).resolve())
        convert_coco(args.coco, args.images, w, conv, check_images=not args.no_check_images)
    else:
        w.image_roots["pairs"] = str(Path(args.tsv).resolve().parent)
        convert_tsv(args.tsv, w, conv, check_images=not args.no_check_images)


ARGUMENTS = {
    "conceptnet": _conceptnet_args,
    "visual-genome": _vg_args,
    "visualsem": _vs_args,
    "pairs": _pairs_args,
    "triples": _triples_args,
}
