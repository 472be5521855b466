"""Small files in each source's exact published format, with the nasty cases."""

import gzip
import json
from pathlib import Path

from PIL import Image


def write_image(path: Path, size=(40, 30), color=(200, 30, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def conceptnet_line(rel, start, end, info) -> str:
    return f"/a/[{rel}/,{start}/,{end}/]\t{rel}\t{start}\t{end}\t{json.dumps(info, ensure_ascii=False)}\n"


CONCEPTNET_ROWS = [
    ("/r/IsA", "/c/en/dog/n/wn/animal", "/c/en/animal", {"dataset": "/d/wordnet/3.1", "license": "cc:by/4.0", "sources": [{"contributor": "/s/resource/wordnet/rdf/3.1"}], "weight": 2.0}),
    ("/r/IsA", "/c/en/dog/n/wn/animal", "/c/en/animal", {"dataset": "/d/wordnet/3.1", "weight": 2.0}),  # duplicate
    ("/r/IsA", "/c/de/hund/n", "/c/en/animal", {"dataset": "/d/wiktionary/de", "weight": 1.0}),  # mixed language
    ("/r/Synonym", "/c/fr/chien", "/c/de/hund", {"dataset": "/d/wiktionary/fr", "weight": 1.0}),  # non-English
    ("/r/ExternalURL", "/c/en/dog", "http://dbpedia.org/resource/Dog", {"dataset": "/d/dbpedia/en", "weight": 1.0}),
    ("/r/UsedFor", "/c/en/café", "/c/en/drinking_coffee", {"dataset": "/d/conceptnet/4/en", "surfaceText": "[[café]] is for [[drinking coffee]]", "surfaceStart": "café", "surfaceEnd": "drinking coffee", "weight": 1.0}),
    ("/r/NotDesires", "/c/en/cat", "/c/en/bath", {"dataset": "/d/conceptnet/4/en", "weight": 0.5}),
    ("/r/dbpedia/genre", "/c/en/metallica", "/c/en/heavy_metal", {"dataset": "/d/dbpedia/en", "weight": 0.5}),
    ("/r/RelatedTo", "/c/en/loop", "/c/en/loop", {"dataset": "/d/verbosity", "weight": 0.1}),  # self-loop
]


def write_conceptnet(path: Path, rows=CONCEPTNET_ROWS, extra: bytes = b"") -> Path:
    data = "".join(conceptnet_line(*r) for r in rows).encode("utf-8") + extra
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)
    return path


def write_visual_genome(root: Path, n_images: int = 3) -> dict[str, Path]:
    """Images 1..n; image 1 in VG_100K, the others in VG_100K_2; image n's file is missing.

    Image 1 (w 40, h 30): objects 10 'man' (names list), 11 'horse' (name), 12 box outside the
    image (clamped), 13 zero-area box. Relationships: 10 riding 11, 11 'Next  To' 12,
    10 ON 13 (skipped: zero area), 10 riding 11 again (same object_id, duplicate triplet).
    Images 2..n-1: objects 20i, 20i+1 with 'near'.
    """
    images = root / "images"
    data, rels, attrs = [], [], []
    for i in range(1, n_images + 1):
        folder = "VG_100K" if i == 1 else "VG_100K_2"
        entry = {"width": 40, "height": 30, "url": f"https://cs.stanford.edu/people/rak248/{folder}/{i}.jpg", "coco_id": None, "flickr_id": None}
        entry["image_id" if i % 2 else "id"] = i  # both spellings occur
        data.append(entry)
        if i < n_images:
            write_image(images / folder / f"{i}.jpg")
    man = {"object_id": 10, "x": 2, "y": 3, "w": 10, "h": 20, "names": ["man"], "synsets": ["man.n.01"]}
    horse = {"object_id": 11, "x": 15, "y": 5, "w": 20, "h": 20, "name": "horse", "synsets": ["horse.n.01"]}
    big = {"object_id": 12, "x": 30, "y": 20, "w": 50, "h": 50, "names": ["field"], "synsets": []}
    flat = {"object_id": 13, "x": 5, "y": 5, "w": 0, "h": 4, "names": ["line"], "synsets": []}
    nameless = {"object_id": 14, "x": 1, "y": 1, "w": 5, "h": 5, "names": [" "], "synsets": []}
    rels.append({"image_id": 1, "relationships": [
        {"relationship_id": 100, "predicate": "riding", "synsets": ["ride.v.01"], "subject": man, "object": horse},
        {"relationship_id": 101, "predicate": "Next  To", "synsets": [], "subject": horse, "object": big},
        {"relationship_id": 102, "predicate": "ON", "synsets": [], "subject": man, "object": flat},
        {"relationship_id": 103, "predicate": "riding", "synsets": [], "subject": man, "object": horse},
        {"relationship_id": 104, "predicate": "near", "synsets": [], "subject": nameless, "object": man},
    ]})
    attrs.append({"image_id": 1, "attributes": [dict(man, attributes=["tall ", "Smiling"])]})
    for i in range(2, n_images + 1):
        a = {"object_id": 20 * i, "x": 0, "y": 0, "w": 10, "h": 10, "names": ["cup"], "synsets": []}
        b = {"object_id": 20 * i + 1, "x": 10, "y": 10, "w": 10, "h": 10, "names": ["table"], "synsets": []}
        rels.append({"image_id": i, "relationships": [{"relationship_id": 1000 + i, "predicate": "near", "synsets": [], "subject": a, "object": b}]})
    (root / "image_data.json").write_text(json.dumps(data))
    (root / "relationships.json").write_text(json.dumps(rels))
    (root / "attributes.json").write_text(json.dumps(attrs))
    return {"image_data": root / "image_data.json", "relationships": root / "relationships.json", "attributes": root / "attributes.json", "images": images}


def write_visualsem(root: Path) -> dict[str, Path]:
    """Nodes A (2 images, 2 glosses), B (1 image, no English gloss), C (no image, gloss), D (nothing), E (1 image).

    Tuples (head -r-> tail): A is-a B, C has-part B, A related-to C, A is-a D (D has no view:
    skipped), B similar-to E, B part-of A: every modality pair between canonical views.
    """
    images = root / "images"
    ims = {"bn:A": ["aa11", "ab22"], "bn:B": ["bb33"], "bn:C": [], "bn:D": [], "bn:E": ["ee44"]}
    for hashes in ims.values():
        for h in hashes:
            write_image(images / h[:2] / f"{h}.jpg")
    nodes = {bn: {"ms": bn, "se": [], "ims": hs} for bn, hs in ims.items()}
    tuples = {
        "bn:B": [{"s": "bn:A", "r": "is-a", "r_id": "0"}, {"s": "bn:C", "r": "has-part", "r_id": "1"}],
        "bn:C": [{"s": "bn:A", "r": "related-to", "r_id": "2"}],
        "bn:D": [{"s": "bn:A", "r": "is-a", "r_id": "0"}],  # D has no view: skipped
        "bn:E": [{"s": "bn:B", "r": "similar-to", "r_id": "3"}],
        "bn:A": [{"s": "bn:B", "r": "part-of", "r_id": "4"}],
    }
    glosses = [
        {"available_languages": ["en", "de"]},
        {"bn:A": {"en": ["a domesticated animal", "a pet"], "de": ["ein Haustier"]}},
        {"bn:B": {"de": ["nur Deutsch"]}},
        {"bn:C": {"en": ["a thing with parts"]}},
    ]
    for name, obj in (("nodes.v2.json", nodes), ("tuples.v2.json", tuples), ("nodes.glosses.json", glosses)):
        (root / name).write_text(json.dumps(obj, ensure_ascii=False))
    return {"nodes": root / "nodes.v2.json", "tuples": root / "tuples.v2.json", "glosses": root / "nodes.glosses.json", "images": images}


def write_coco(root: Path) -> dict[str, Path]:
    images = root / "images"
    write_image(images / "000000000001.jpg")
    write_image(images / "000000000002.jpg", color=(0, 0, 255))
    coco = {
        "info": {"description": "fixture"},
        "images": [{"id": 1, "file_name": "000000000001.jpg", "width": 40, "height": 30},
                   {"id": 2, "file_name": "000000000002.jpg", "width": 40, "height": 30},
                   {"id": 3, "file_name": "000000000003.jpg", "width": 40, "height": 30}],  # file missing
        "annotations": [{"id": 11, "image_id": 1, "caption": "A red  square."}, {"id": 12, "image_id": 1, "caption": "Something red"},
                        {"id": 13, "image_id": 2, "caption": "A blue square"}, {"id": 14, "image_id": 3, "caption": "lost"},
                        {"id": 15, "image_id": 2, "caption": "   "}],
    }
    (root / "captions.json").write_text(json.dumps(coco))
    return {"coco": root / "captions.json", "images": images}


def write_umls_like(root: Path, seed: int = 0) -> dict[str, Path | list[tuple[str, str, str]]]:
    """Tab-separated triples shaped like UMLS: inverse relations, pairs under several relations.

    40 entities, relations r0..r4 with inverses r0_inv..r4_inv. 300 distinct facts; about 40%
    also appear inverted and 20% under a second relation, so an entity pair often carries several
    triples. The shuffled lines are written whole (``all.txt``) and cut 80/10/10 into
    ``train.txt`` / ``valid.txt`` / ``test.txt``. Returns the paths and the lines of each file.
    """
    import random

    rnd = random.Random(seed)
    ents = [f"semantic_type_{i}" for i in range(40)]
    rows: set[tuple[str, str, str]] = set()
    while len(rows) < 300:
        h, t = rnd.sample(ents, 2)
        r = rnd.randrange(5)
        rows.add((h, f"r{r}", t))
        if rnd.random() < 0.4:
            rows.add((t, f"r{r}_inv", h))
        if rnd.random() < 0.2:
            rows.add((h, f"r{(r + 1) % 5}", t))
    lines = sorted(rows)
    rnd.shuffle(lines)
    n_train, n_valid = int(0.8 * len(lines)), int(0.1 * len(lines))
    parts = {"all": lines, "train": lines[:n_train], "valid": lines[n_train:n_train + n_valid], "test": lines[n_train + n_valid:]}
    root.mkdir(parents=True, exist_ok=True)
    out: dict = {}
    for name, part in parts.items():
        (root / f"{name}.txt").write_text("".join("\t".join(x) + "\n" for x in part))
        out[name], out[f"{name}_lines"] = root / f"{name}.txt", part
    return out


def write_karpathy(root: Path, *, dataset: str = "coco", with_filepath: bool = True) -> dict[str, Path]:
    """A Karpathy split file as published: 4 images (train, restval, val, test), 2-3 sentences each;
    image 4's file is missing; one sentence has no ``raw`` (its tokens are used), one is blank."""
    images = root / "images"
    names = []
    for k, split in enumerate(("train", "restval", "val", "test"), start=1):
        folder = ("train2014" if split == "train" else "val2014") if with_filepath else ""
        name = f"COCO_{folder or 'x'}_{k:012d}.jpg"
        if k < 4:
            write_image(images / folder / name if folder else images / name)
        names.append((folder, name, split))
    recs, sid = [], 0
    for k, (folder, name, split) in enumerate(names):
        sents = []
        for j in range(3 if k % 2 == 0 else 2):
            sents.append({"tokens": ["a", "shape", str(k), str(j)], "raw": f"A shape {k} {j}.", "imgid": k, "sentid": sid})
            sid += 1
        rec = {"filename": name, "imgid": k, "split": split, "sentences": sents, "sentids": [s["sentid"] for s in sents]}
        if with_filepath:
            rec["filepath"], rec["cocoid"] = folder, 1000 + k
        recs.append(rec)
    del recs[0]["sentences"][1]["raw"]
    recs[1]["sentences"][1]["raw"] = "   "
    recs[1]["sentences"][1]["tokens"] = []
    path = root / f"dataset_{dataset}.json"
    path.write_text(json.dumps({"images": recs, "dataset": dataset}))
    return {"karpathy": path, "images": images}


def write_pairs_tsv(root: Path) -> dict[str, Path]:
    """A CC3M-style TSV beside its images a.jpg and sub/b.jpg: 5 pairs, one image file missing, one caption of spaces."""
    write_image(root / "a.jpg")
    write_image(root / "sub" / "b.jpg", color=(0, 0, 255))
    lines = ["a.jpg\tA red  square.", "a.jpg\tsomething red", "sub/b.jpg\ta blue square", "missing.jpg\tlost", "sub/b.jpg\t   "]
    path = root / "pairs.tsv"
    path.write_text("".join(f"{line}\n" for line in lines))
    return {"tsv": path}
