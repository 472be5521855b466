"""Content checks of a knowledge store: one clear message per problem."""

import numpy as np
import pandas as pd

from kgclip.errors import StoreError
from kgclip.store.format import ENTITIES_DIR, MANIFEST, RELATIONS, TRIPLETS_DIR
from kgclip.store.reader import KnowledgeStore
from kgclip.typing import MODALITIES, SPLITS

MAX_SHOWN = 3


def _examples(values: pd.Series | np.ndarray) -> str:
    vals = np.asarray(values)[:MAX_SHOWN].tolist()
    return ", ".join(repr(v) for v in vals) + (" ..." if len(values) > MAX_SHOWN else "")


def check_entities(e: pd.DataFrame, where: str = ENTITIES_DIR) -> list[str]:
    """Problems of an entity table, each naming the rows' keys."""
    problems = []
    ids = e["entity_id"].to_numpy()
    if not np.array_equal(ids, np.arange(len(e))):
        problems.append(f"{where}: entity_id is not dense from 0 in row order")
    dup = e["key"][e["key"].duplicated()]
    if len(dup):
        problems.append(f"{where}: {len(dup)} duplicate key(s): {_examples(dup.to_numpy())}")
    bad = e[~e["modality"].isin(MODALITIES)]
    if len(bad):
        problems.append(f"{where}: {len(bad)} entity(ies) of unknown modality {_examples(bad['modality'].unique())}: {_examples(bad['key'].to_numpy())}")
    img = e["modality"] == "image"
    no_img = e[img & e["image"].isna()]
    if len(no_img):
        problems.append(f"{where}: {len(no_img)} image entity(ies) without an image: {_examples(no_img['key'].to_numpy())}")
    no_txt = e[(e["modality"] == "text") & (e["text"].isna() | (e["text"].fillna("").str.len() == 0))]
    if len(no_txt):
        problems.append(f"{where}: {len(no_txt)} text entity(ies) without text: {_examples(no_txt['key'].to_numpy())}")
    if "concept" in e:
        concept = e["concept"]
        empty = e[concept.notna() & (concept.fillna("").astype(str).str.len() == 0)]
        if len(empty):
            problems.append(f"{where}: {len(empty)} entity(ies) with an empty concept (null means no concept): {_examples(empty['key'].to_numpy())}")
    has_box = e["bbox"].notna()
    if has_box.any():
        boxes = np.stack(e.loc[has_box, "bbox"].to_numpy())
        keys = e.loc[has_box, "key"].to_numpy()
        nonpos = (boxes[:, 2] <= 0) | (boxes[:, 3] <= 0)
        if nonpos.any():
            problems.append(f"{where}: {int(nonpos.sum())} bbox(es) of non-positive size: {_examples(keys[nonpos])}")
        w = e.loc[has_box, "image_width"].to_numpy(dtype=float, na_value=np.nan)
        h = e.loc[has_box, "image_height"].to_numpy(dtype=float, na_value=np.nan)
        outside = (boxes[:, 0] < 0) | (boxes[:, 1] < 0) | (boxes[:, 0] + boxes[:, 2] > w) | (boxes[:, 1] + boxes[:, 3] > h)
        outside &= ~np.isnan(w) & ~np.isnan(h)
        if outside.any():
            problems.append(f"{where}: {int(outside.sum())} bbox(es) outside their image: {_examples(keys[outside])}")
    return problems


def check_relations(r: pd.DataFrame, where: str = RELATIONS) -> list[str]:
    problems = []
    if not np.array_equal(r["relation_id"].to_numpy(), np.arange(len(r))):
        problems.append(f"{where}: relation_id is not dense from 0 in row order")
    dup = r["key"][r["key"].duplicated()]
    if len(dup):
        problems.append(f"{where}: {len(dup)} duplicate relation key(s): {_examples(dup.to_numpy())}")
    return problems


def check_triplets(t: pd.DataFrame, n_entities: int, n_relations: int, where: str = TRIPLETS_DIR) -> list[str]:
    problems = []
    for col, n, what in (("head_id", n_entities, "entity"), ("tail_id", n_entities, "entity"), ("relation_id", n_relations, "relation")):
        v = t[col].to_numpy()
        bad = (v < 0) | (v >= n)
        if bad.any():
            rows = np.flatnonzero(bad)
            problems.append(f"{where}: {int(bad.sum())} dangling {col} (no such {what}) at row(s) {_examples(rows)}: ids {_examples(v[rows])}")
    bad_split = t[~t["split"].isin(SPLITS)]
    if len(bad_split):
        problems.append(f"{where}: {len(bad_split)} triplet(s) of unknown split {_examples(bad_split['split'].unique())}")
    return problems


def validate_store(store: KnowledgeStore) -> list[str]:
    """All content problems of a store; an empty list means valid."""
    e, r, t = store.entities, store.relations, store.triplets
    problems = check_entities(e) + check_relations(r) + check_triplets(t, len(e), len(r))
    counts = store.manifest.get("counts", {})
    for name, n in (("entities", len(e)), ("relations", len(r)), ("triplets", len(t))):
        if counts.get(name) != n:
            problems.append(f"{MANIFEST}: counts.{name} is {counts.get(name)!r} but the files hold {n}")
    return problems


def open_valid(path) -> KnowledgeStore:
    """Open a store and raise :class:`StoreError` naming the first problems if it is invalid."""
    store = KnowledgeStore(path)
    problems = validate_store(store)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise StoreError(f"{store.path}: invalid store: {problems[0]}{more}")
    return store
