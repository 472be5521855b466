"""The embedded demo world: rendered scenes of simple shapes, written in the real sources' formats.

Scenes hold 2-4 objects (shape x colour x size) on 64-96 px canvases. The world is written as
Visual Genome files (objects, attributes, spatial and comparative relationships), a ConceptNet
assertion dump (shape taxonomy, properties, colour families, antonyms), VisualSem files (a node
per concept with glosses and single-object images) and COCO captions, and read back through the
real converters. Held out for evaluation: the test scenes, and colour-shape combinations that
appear only in test. Everything is deterministic per seed.
"""

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from kgclip import progress

SHAPES = ("circle", "square", "triangle", "diamond")
COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (235, 205, 30), "purple": (140, 50, 170), "orange": (245, 135, 30)}
HELD_OUT = (("purple", "triangle"), ("orange", "circle"), ("green", "diamond"))
"""Colour-shape combinations seen only in test scenes and the zero-shot set."""
SIZES = {"small": (7, 10), "big": (13, 17)}
OPPOSITE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}


@dataclass
class Obj:
    object_id: int
    shape: str
    colour: str
    size: str
    cx: float
    cy: float
    r: float

    @property
    def box(self) -> tuple[int, int, int, int]:
        """x, y, w, h (integers, as Visual Genome stores them)."""
        x0, y0 = int(np.floor(self.cx - self.r)), int(np.floor(self.cy - self.r))
        x1, y1 = int(np.ceil(self.cx + self.r)), int(np.ceil(self.cy + self.r))
        return x0, y0, x1 - x0, y1 - y0

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"


@dataclass
class Scene:
    image_id: int
    width: int
    height: int
    objects: list[Obj] = field(default_factory=list)
    split: str = "train"


def draw(shape: str, colour: str, cx: float, cy: float, r: float, d: ImageDraw.ImageDraw) -> None:
    fill = COLOURS[colour]
    if shape == "circle":
        d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif shape == "square":
        d.rectangle((cx - r * 0.85, cy - r * 0.85, cx + r * 0.85, cy + r * 0.85), fill=fill)
    elif shape == "triangle":
        d.polygon([(cx, cy - r), (cx - r, cy + r * 0.8), (cx + r, cy + r * 0.8)], fill=fill)
    elif shape == "diamond":
        d.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=fill)


def render(width: int, height: int, objects: list[Obj], background: int) -> Image.Image:
    im = Image.new("RGB", (width, height), (background, background, background))
    d = ImageDraw.Draw(im)
    for o in objects:
        draw(o.shape, o.colour, o.cx, o.cy, o.r, d)
    return im


def spatial(a: Obj, b: Obj) -> str:
    dx, dy = b.cx - a.cx, b.cy - a.cy
    if abs(dx) >= abs(dy):
        return "left of" if dx > 0 else "right of"
    return "above" if dy > 0 else "below"


def relations(a: Obj, b: Obj) -> list[str]:
    """Every predicate of the ordered pair (a, b)."""
    out = [spatial(a, b)]
    if a.size != b.size:
        out.append("bigger than" if a.size == "big" else "smaller than")
    if a.colour == b.colour:
        out.append("same colour as")
    if a.shape == b.shape:
        out.append("same shape as")
    return out


def _combo(rng: np.random.Generator, allow_held_out: bool) -> tuple[str, str]:
    while True:
        c, s = str(rng.choice(list(COLOURS))), str(rng.choice(SHAPES))
        if allow_held_out or (c, s) not in HELD_OUT:
            return c, s


def make_scenes(n: int, seed: int, test_fraction: float = 0.2, valid_fraction: float = 0.0, *, objects: tuple[int, int] = (2, 4),
                first_id: int = 1, allow_held_out: bool = True) -> list[Scene]:
    """``n`` square scenes of ``objects`` (min, max) objects each; the last ones are the test, then the valid scenes.

    Held-out colour-shape combinations appear only in valid and test scenes (and never when
    ``allow_held_out`` is False). Canvases are square (64-96 px), so that resizing to a tower's
    square input keeps every object.
    """
    rng = np.random.default_rng(seed)
    scenes, next_obj = [], first_id
    n_test = max(1, round(n * test_fraction)) if test_fraction > 0 else 0
    n_valid = max(1, round(n * valid_fraction)) if valid_fraction > 0 else 0
    for i in range(n):
        split = "test" if i >= n - n_test else "valid" if i >= n - n_test - n_valid else "train"
        w = h = int(rng.integers(64, 97))
        sc = Scene(image_id=first_id + i, width=w, height=h, split=split)
        k = int(rng.integers(objects[0], objects[1] + 1))
        for _ in range(200):
            if len(sc.objects) == k:
                break
            c, s = _combo(rng, allow_held_out=allow_held_out and split != "train")
            size = str(rng.choice(list(SIZES)))
            r = float(rng.uniform(*SIZES[size]))
            cx, cy = float(rng.uniform(r + 1, w - r - 1)), float(rng.uniform(r + 1, h - r - 1))
            if all((cx - o.cx) ** 2 + (cy - o.cy) ** 2 > (r + o.r + 2) ** 2 for o in sc.objects):
                sc.objects.append(Obj(next_obj, s, c, size, cx, cy, r))
                next_obj += 1
        scenes.append(sc)
    return scenes


def captions(sc: Scene, rng: np.random.Generator) -> list[str]:
    """The world's COCO captions of a scene: two spatial captions of one pair of objects, and the full list."""
    objs = sc.objects
    a, b = (objs[i] for i in rng.choice(len(objs), 2, replace=False))
    out = [f"a {a.name} {spatial(a, b)} a {b.name}", f"a {b.name} {spatial(b, a)} a {a.name}"]
    out.append(" and ".join(f"a {o.size} {o.name}" for o in objs))
    return out


WEB_PREFIXES = ("", "a picture of ", "an image of ", "a drawing of ", "there is ")


def web_caption(sc: Scene, rng: np.random.Generator, colours: bool = True) -> str:
    """One caption of a pretraining scene, in one of several forms, as alt-texts vary.

    Forms: every object with size, colour and shape; a spatial relation between two objects, with
    or without their colours; the shapes only; the colours only; one object, with or without its
    colour. Colour is learnt from far fewer examples than shape, so half the forms leave it out.
    Half the captions end with a full stop, as sentences do. ``colours=False``: only the forms
    without colour words.
    """
    objs = list(sc.objects)
    rng.shuffle(objs)
    forms = ["shapes", "one shape"] + (["shape relation"] if len(objs) > 1 else [])
    if colours:
        forms += ["list", "colours", "one"] + (["relation"] if len(objs) > 1 else [])
    form = forms[int(rng.integers(len(forms)))]
    if form == "list":
        body = " and ".join(f"a {o.size} {o.name}" for o in objs)
    elif form == "relation":
        body = f"a {objs[0].name} {spatial(objs[0], objs[1])} a {objs[1].name}"
    elif form == "shape relation":
        body = f"a {objs[0].shape} {spatial(objs[0], objs[1])} a {objs[1].shape}"
    elif form == "shapes":
        body = " and ".join(f"a {o.shape}" for o in objs)
    elif form == "colours":
        body = " and ".join(f"something {o.colour}" if rng.random() < 0.5 else f"a {o.colour} shape" for o in objs)
    elif form == "one shape":
        body = f"a {objs[0].size} {objs[0].shape}" if rng.random() < 0.5 else f"a {objs[0].shape}"
    else:
        body = f"a {objs[0].size} {objs[0].name}" if rng.random() < 0.5 else f"a {objs[0].name}"
    return WEB_PREFIXES[int(rng.integers(len(WEB_PREFIXES)))] + body + ("." if rng.random() < 0.5 else "")


def binding_item(sc: Scene, rng: np.random.Generator) -> dict | None:
    pairs = [(a, b) for a in sc.objects for b in sc.objects if a is not b and a.colour != b.colour and a.shape != b.shape and spatial(a, b) in ("left of", "above")]
    if not pairs:
        return None
    a, b = pairs[int(rng.integers(len(pairs)))]
    rel = spatial(a, b)
    return {
        "image": f"images/VG_100K/{sc.image_id}.jpg",
        "caption": f"a {a.name} {rel} a {b.name}",
        "relation_swap": f"a {b.name} {rel} a {a.name}",
        "attribute_swap": f"a {b.colour} {a.shape} {rel} a {a.colour} {b.shape}",
    }


def _hash(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def single_object(shape: str, colour: str, rng: np.random.Generator) -> Image.Image:
    size = int(rng.integers(64, 81))
    r = float(rng.uniform(14, 22))
    cx, cy = float(rng.uniform(r + 2, size - r - 2)), float(rng.uniform(r + 2, size - r - 2))
    return render(size, size, [Obj(0, shape, colour, "big", cx, cy, r)], int(rng.integers(225, 256)))


SPLITS = ("train", "valid", "test")


def write_zero_shot(folder: Path, name: str, rng: np.random.Generator, per_combination: int = 3) -> list[dict]:
    """Single-object images of every colour-shape combination (held-out ones included) and ``<name>.json``.

    The demo writes two such sets: ``zero_shot`` (test) and ``zero_shot_valid`` (for choosing settings).
    """
    (folder / name).mkdir(parents=True, exist_ok=True)
    items = []
    for c in COLOURS:
        for s in SHAPES:
            for k in range(per_combination):
                p = folder / name / f"{c}_{s}_{k}.jpg"
                single_object(s, c, rng).save(p, quality=95)
                items.append({"image": f"{name}/{p.name}", "labels": {"shape": s, "colour": c}})
    zs = {"tasks": {"shape": {"classes": list(SHAPES), "templates": ["a {}.", "a {} shape.", "a picture of a {}."]},
                    "colour": {"classes": list(COLOURS), "templates": ["a {} shape.", "something {}.", "a {} object."]}},
          "items": items}
    (folder / f"{name}.json").write_text(json.dumps(zs, indent=1))
    return items


@dataclass
class DemoWorldFiles:
    """Where the world's raw files are: Visual Genome and COCO files per split (train, valid, test)."""

    root: Path
    vg: dict[str, dict[str, Path]]
    conceptnet: Path
    visualsem: dict[str, Path]
    coco: dict[str, Path]
    images: Path
    eval_dir: Path
    counts: dict[str, int]
    scenes: list[Scene]
    pretrain: Path | None = None
    """The pretraining corpus (a CC3M-style TSV of image path and caption), when one was asked for."""
    pretrain_simple: Path | None = None
    """The simple scenes the pretraining starts with (the same format), when asked for."""
    vqa: dict[str, dict[str, Path]] = field(default_factory=dict)
    """VQA v2 files per split: ``questions``, ``annotations``, ``images`` (see data_prep.demo_vqa)."""


def write_pretrain_corpus(out: str | Path, scenes: int, seed: int, captions_per_scene: int = 2, objects: tuple[int, int] = (1, 4),
                          one_colour: str | None = None) -> Path:
    """Scenes of their own (no held-out combination) with varied captions, as a CC3M-style TSV.

    The corpus the demo's CLIP is pretrained on, like the web pairs of a real CLIP: apart from the
    knowledge world's scenes. With ``one_colour``, every object is drawn in that colour and the
    captions name no colour (the simple scenes the pretraining starts with: only shape, size and
    place tell them apart). Returns the TSV path (``out/pairs.tsv``, image paths relative to it).
    """
    root = Path(out)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed + 11)
    lines = []
    for sc in progress.bar(make_scenes(scenes, seed + 10, test_fraction=0, objects=objects, allow_held_out=False),
                           desc="pretraining scenes", unit=" scenes"):
        if one_colour:
            for o in sc.objects:
                o.colour = one_colour
        name = f"images/{sc.image_id}.jpg"
        render(sc.width, sc.height, sc.objects, int(rng.integers(225, 256))).save(root / name, quality=95)
        lines += [f"{name}\t{web_caption(sc, rng, colours=not one_colour)}\n" for _ in range(captions_per_scene)]
    path = root / "pairs.tsv"
    path.write_text("".join(lines), encoding="utf-8")
    return path


def write_demo_world(out: str | Path, scenes: int = 600, seed: int = 0, *, valid_fraction: float = 0.1, test_fraction: float = 0.2,
                     pretrain_scenes: int = 0, pretrain_captions: int = 2, simple_scenes: int = 0, vqa_per_type: int = 1) -> DemoWorldFiles:
    """Write the raw files of the world under ``out/raw`` and the evaluation items under ``out/eval``.

    Args:
        scenes: scenes of the knowledge world, split into train, valid and test scenes.
        seed: everything is a function of it.
        valid_fraction, test_fraction: shares of the valid and test scenes.
        pretrain_scenes: scenes of the separate pretraining corpus (``raw/pretrain``; 0: none).
        pretrain_captions: captions per pretraining scene.
        simple_scenes: single objects drawn in one colour, captioned without colour (``raw/pretrain_simple``; 0: none).
        vqa_per_type: VQA questions of each type per scene (see data_prep.demo_vqa).
    """
    root = Path(out)
    raw = root / "raw"
    images = raw / "images"
    (images / "VG_100K").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed + 1)
    world = make_scenes(scenes, seed, test_fraction=test_fraction, valid_fraction=valid_fraction)
    for sc in world:
        render(sc.width, sc.height, sc.objects, int(rng.integers(225, 256))).save(images / "VG_100K" / f"{sc.image_id}.jpg", quality=95)

    vg_files = {}
    for split in SPLITS:
        part = [s for s in world if s.split == split]
        folder = raw / f"vg_{split}"
        folder.mkdir(parents=True, exist_ok=True)
        data = [{"image_id": s.image_id, "width": s.width, "height": s.height, "coco_id": None, "flickr_id": None,
                 "url": f"https://cs.stanford.edu/people/rak248/VG_100K/{s.image_id}.jpg"} for s in part]
        rels, objs, attrs = [], [], []
        rid = 1
        for s in part:
            jo = {o.object_id: {"object_id": o.object_id, "x": o.box[0], "y": o.box[1], "w": o.box[2], "h": o.box[3],
                                "names": [o.shape], "synsets": [f"{o.shape}.n.01"]} for o in s.objects}
            items = []
            for a in s.objects:
                for b in s.objects:
                    if a is b:
                        continue
                    for p in relations(a, b):
                        items.append({"relationship_id": rid, "predicate": p, "synsets": [], "subject": jo[a.object_id], "object": jo[b.object_id]})
                        rid += 1
            rels.append({"image_id": s.image_id, "relationships": items})
            objs.append({"image_id": s.image_id, "objects": list(jo.values())})
            attrs.append({"image_id": s.image_id, "attributes": [dict(jo[o.object_id], attributes=[o.colour, o.size]) for o in s.objects]})
        for name, obj in (("image_data.json", data), ("relationships.json", rels), ("objects.json", objs), ("attributes.json", attrs)):
            (folder / name).write_text(json.dumps(obj))
        vg_files[split] = {"image_data": folder / "image_data.json", "relationships": folder / "relationships.json",
                           "objects": folder / "objects.json", "attributes": folder / "attributes.json"}

    # ConceptNet: text knowledge about the world's concepts.
    facts = [
        ("IsA", "circle", "round_shape"), ("IsA", "round_shape", "shape"), ("IsA", "square", "quadrilateral"),
        ("IsA", "diamond", "quadrilateral"), ("IsA", "quadrilateral", "polygon"), ("IsA", "triangle", "polygon"),
        ("IsA", "polygon", "shape"), ("HasProperty", "circle", "round"), ("HasProperty", "square", "four_corners"),
        ("HasProperty", "diamond", "four_corners"), ("HasProperty", "triangle", "three_corners"), ("HasA", "square", "right_angle"),
        ("IsA", "red", "warm_colour"), ("IsA", "orange", "warm_colour"), ("IsA", "yellow", "warm_colour"), ("IsA", "blue", "cool_colour"),
        ("IsA", "green", "cool_colour"), ("IsA", "purple", "cool_colour"), ("IsA", "warm_colour", "colour"), ("IsA", "cool_colour", "colour"),
        ("Antonym", "left", "right"), ("Antonym", "right", "left"), ("Antonym", "above", "below"), ("Antonym", "below", "above"),
        ("Antonym", "big", "small"), ("Antonym", "small", "big"), ("Antonym", "bigger", "smaller"), ("Antonym", "smaller", "bigger"),
        ("RelatedTo", "left_of", "left"), ("RelatedTo", "right_of", "right"),
    ]
    for c in COLOURS:
        for s in SHAPES:
            if (c, s) in HELD_OUT:
                continue
            facts += [("IsA", f"{c}_{s}", s), ("HasProperty", f"{c}_{s}", c)]
    facts.append(("IsA", "kreis", "form"))  # a German row: filtered out by --lang en
    lines = []
    for rel, a, b in facts:
        lang = "de" if a == "kreis" else "en"
        info = {"dataset": "/d/demo", "license": "cc:by/4.0", "sources": [{"contributor": "/s/demo"}], "weight": 1.0}
        lines.append(f"/a/[/r/{rel}/,/c/{lang}/{a}/,/c/{lang}/{b}/]\t/r/{rel}\t/c/{lang}/{a}\t/c/{lang}/{b}\t{json.dumps(info)}\n")
    cn = raw / "conceptnet" / "assertions.csv"
    cn.parent.mkdir(parents=True, exist_ok=True)
    cn.write_text("".join(lines), encoding="utf-8")

    # VisualSem: a node per concept, with glosses and single-object images.
    vs = raw / "visualsem"
    vs_img = vs / "images"
    nodes, tuples, gl = {}, {}, [{"available_languages": ["en"]}]
    bn = {}
    concepts = [(s, None) for s in SHAPES] + [(None, c) for c in COLOURS] + [(s, c) for c in COLOURS for s in SHAPES if (c, s) not in HELD_OUT]
    for s, c in concepts:
        name = f"{c} {s}" if s and c else (s or c)
        bn[name] = f"bn:{_hash(name)[:8]}n"
        ims = []
        for k in range(3):
            shape = s or str(rng.choice([x for x in SHAPES if (c, x) not in HELD_OUT]))
            colour = c or str(rng.choice([x for x in COLOURS if (x, shape) not in HELD_OUT]))
            h = _hash(f"{name}/{k}/{seed}")
            p = vs_img / h[:2] / f"{h}.jpg"
            p.parent.mkdir(parents=True, exist_ok=True)
            single_object(shape, colour, rng).save(p, quality=95)
            ims.append(h)
        nodes[bn[name]] = {"ms": name, "se": [], "ims": ims}
        gloss = f"a {name} shape" if s and c else (f"the shape called {s}" if s else f"the colour {c}")
        gl.append({bn[name]: {"en": [gloss, f"a picture of a {name}"]}})
    bn["polygon"] = "bn:polygonn"
    nodes[bn["polygon"]] = {"ms": "polygon", "se": [], "ims": []}
    gl.append({bn["polygon"]: {"en": ["a plane figure with straight sides"]}})
    for s, c in concepts:
        if s and c:
            tuples.setdefault(bn[s], []).append({"s": bn[f"{c} {s}"], "r": "is-a", "r_id": "0"})
            tuples.setdefault(bn[c], []).append({"s": bn[f"{c} {s}"], "r": "has-property", "r_id": "8"})
    for s in ("square", "triangle", "diamond"):
        tuples.setdefault(bn["polygon"], []).append({"s": bn[s], "r": "is-a", "r_id": "0"})
    for name, obj in (("nodes.v2.json", nodes), ("tuples.v2.json", tuples), ("nodes.glosses.json", gl)):
        (vs / name).write_text(json.dumps(obj))

    # COCO captions, one file per split; images are the scenes.
    coco = {}
    crng = np.random.default_rng(seed + 2)
    aid = 1  # caption ids are unique across the split files, as COCO's are (they key the caption entities)
    for split in SPLITS:
        part = [s for s in world if s.split == split]
        imgs = [{"id": s.image_id, "file_name": f"VG_100K/{s.image_id}.jpg", "width": s.width, "height": s.height} for s in part]
        anns = []
        for s in part:
            for cap in captions(s, crng):
                anns.append({"id": aid, "image_id": s.image_id, "caption": cap})
                aid += 1
        path = raw / "coco" / f"captions_{split}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"info": {"description": "kgclip demo world"}, "images": imgs, "annotations": anns}))
        coco[split] = path

    # Evaluation items: zero-shot single objects (held-out combinations included) and binding tests.
    ev = root / "eval"
    items = write_zero_shot(ev, "zero_shot", np.random.default_rng(seed + 3))
    write_zero_shot(ev, "zero_shot_valid", np.random.default_rng(seed + 5))
    brng = np.random.default_rng(seed + 4)
    bitems = [it for s in world if s.split == "test" and (it := binding_item(s, brng))]
    for it in bitems:
        it["image"] = str(Path("..") / "raw" / it["image"])
    (ev / "binding.json").write_text(json.dumps({"items": bitems}, indent=1))
    from data_prep.demo_vqa import write_demo_vqa  # demo_vqa builds on this module's scenes

    vqa = write_demo_vqa(raw / "vqa", world, lambda sc: images / "VG_100K" / f"{sc.image_id}.jpg", seed=seed, per_type=vqa_per_type)
    vqa_counts = {f"vqa_{sp}_questions": len(json.loads(f["questions"].read_text())["questions"]) for sp, f in vqa.items()}
    pretrain = write_pretrain_corpus(raw / "pretrain", pretrain_scenes, seed, pretrain_captions) if pretrain_scenes else None
    simple = (write_pretrain_corpus(raw / "pretrain_simple", simple_scenes, seed + 100, pretrain_captions, objects=(1, 1), one_colour="blue")
              if simple_scenes else None)
    counts = {"scenes": len(world), **{f"{sp}_scenes": sum(s.split == sp for s in world) for sp in SPLITS},
              "objects": sum(len(s.objects) for s in world), "binding_items": len(bitems), "zero_shot_items": len(items),
              "pretrain_scenes": pretrain_scenes, "pretrain_pairs": pretrain_scenes * pretrain_captions,
              "simple_scenes": simple_scenes, **vqa_counts}
    (root / "world.json").write_text(json.dumps({"seed": seed, "held_out": [list(x) for x in HELD_OUT], **counts}, indent=1))
    return DemoWorldFiles(root, vg_files, cn, {"nodes": vs / "nodes.v2.json", "tuples": vs / "tuples.v2.json", "glosses": vs / "nodes.glosses.json",
                          "images": vs_img}, coco, images, ev, counts, world, pretrain, simple, vqa)


def convert_demo_world(files: DemoWorldFiles, seed: int = 0) -> dict[str, Path]:
    """Read the world back through the real converters into stores under ``root/stores``, then merge.

    ``store`` is merged with ``link="text"``: a Visual Genome name, the ConceptNet term and the
    VisualSem gloss of the same text are one entity, so the sources form one graph.

    Returns the paths of ``store`` (everything), ``pairs_store`` (the world's captions only) and,
    when the world has them, ``pretrain_store`` and ``pretrain_simple_store`` (the pretraining
    pairs, all in train, identical captions linked into one text entity). Valid
    and test scenes, with their captions, are all in the valid and test splits; ConceptNet and
    VisualSem are split by hash.
    """
    from data_prep.base import Converter
    from data_prep.conceptnet import ConceptNet
    from data_prep.pairs import Pairs
    from data_prep.visual_genome import VisualGenome
    from data_prep.visualsem import VisualSem
    from kgclip.store import SplitConfig, merge_stores

    stores = files.root / "stores"
    stores.mkdir(parents=True, exist_ok=True)
    only = {"train": SplitConfig(ratios=(1, 0, 0)), "valid": SplitConfig(ratios=(0, 1, 0)), "test": SplitConfig(ratios=(0, 0, 1))}
    hashed = SplitConfig(ratios=(0.8, 0.1, 0.1), seed=seed)
    quiet = lambda msg: None  # noqa: E731 - the demo world has no malformed records to report

    def write(name: str, converter: Converter, split: SplitConfig) -> Path:
        converter.write(stores / name, split=split, overwrite=True, echo=quiet)
        return stores / name

    present = [sp for sp in SPLITS if any(s.split == sp for s in files.scenes)]
    parts = [write(f"vg_{split}", VisualGenome(image_data=str(files.vg[split]["image_data"]), relationships=str(files.vg[split]["relationships"]),
                                               attributes=str(files.vg[split]["attributes"]), images=str(files.images), with_names=True),
                   only[split])
             for split in present]
    parts.append(write("conceptnet", ConceptNet(assertions=str(files.conceptnet), lang=["en"]), hashed))
    vs = files.visualsem
    parts.append(write("visualsem", VisualSem(nodes=str(vs["nodes"]), tuples=str(vs["tuples"]), glosses=str(vs["glosses"]),
                                              images=str(vs["images"])), hashed))
    pairs = [write(f"coco_{split}", Pairs(coco=str(files.coco[split]), images=str(files.images)), only[split]) for split in present]
    merge_stores([*parts, *pairs], files.root / "store", link="text", overwrite=True)
    merge_stores(pairs, files.root / "pairs_store", overwrite=True)
    out = {"store": files.root / "store", "pairs_store": files.root / "pairs_store"}
    # Pretraining pairs: identical captions are one text entity (--link text), so that the CLIP
    # loss counts "a circle" as a true caption of every image it describes, not as a negative.
    for key, tsv in (("pretrain_store", files.pretrain), ("pretrain_simple_store", files.pretrain_simple)):
        if tsv is not None:
            part = write(key.removesuffix("_store"), Pairs(tsv=str(tsv)), only["train"])
            merge_stores([part], files.root / key, link="text", overwrite=True)
            out[key] = files.root / key
    return out
