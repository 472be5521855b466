"""Checks of a knowledge store: one clear line per problem.

Two levels:

- :func:`fast_problems` (run by :func:`open_valid`, which every command that reads a store calls
  before doing anything): the manifest's structure and counts against the shards' row counts,
  the data files against the manifest's file table (all listed present, none unlisted, sizes),
  every shard's schema, entity and relation ids dense, head / tail / relation ids in range, split
  values known, entity and relation keys unique, every entity readable (a known modality, a text
  entity's text, an image entity's image path), aliases naming entities. It reads only the id,
  key, split, modality, text and image columns, shard by shard.
- :func:`content_problems` (``kgclip info``): everything else about the rows (modalities, texts,
  images, boxes, concepts, image paths inside their roots) and the SHA-256 of every data file.
"""

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from kgclip.errors import StoreError
from kgclip.store.files import change_problems, listing_problems, table_problems
from kgclip.store.format import (
    ALIAS_SCHEMA,
    ALIASES,
    ENTITIES_DIR,
    ENTITY_SCHEMA,
    MANIFEST,
    RELATION_SCHEMA,
    RELATIONS,
    TRIPLET_SCHEMA,
    TRIPLETS_DIR,
)
from kgclip.store.reader import KnowledgeStore, one_line
from kgclip.typing import MODALITIES, SPLITS

REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    ENTITIES_DIR: ("entity_id", "key", "modality", "source"),
    RELATIONS: ("relation_id", "key", "text"),
    TRIPLETS_DIR: ("head_id", "relation_id", "tail_id", "source", "split"),
}
"""Columns every shard must have; the other columns of the format may be absent (read as null)."""

_SCHEMAS = {ENTITIES_DIR: ENTITY_SCHEMA, RELATIONS: RELATION_SCHEMA, TRIPLETS_DIR: TRIPLET_SCHEMA}
_COUNTED = ("entities", "relations", "triplets")

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


def check_aliases(a: pd.DataFrame, entity_keys: pd.Series, where: str = ALIASES) -> list[str]:
    """Problems of the alias table: an alias that is an entity key, duplicated, or names no entity."""
    problems = []
    clash = a["key"][a["key"].isin(entity_keys)]
    if len(clash):
        problems.append(f"{where}: {len(clash)} alias(es) that are entity keys: {_examples(clash.to_numpy())}")
    dup = a["key"][a["key"].duplicated()]
    if len(dup):
        problems.append(f"{where}: {len(dup)} duplicate alias(es): {_examples(dup.to_numpy())}")
    ids = a["entity_id"].to_numpy()
    bad = (ids < 0) | (ids >= len(entity_keys))
    if bad.any():
        problems.append(f"{where}: {int(bad.sum())} alias(es) of no entity: {_examples(a['key'].to_numpy()[bad])}")
    return problems


def _manifest_problems(m: dict[str, Any]) -> list[str]:
    problems = []
    counts = m.get("counts")
    if not isinstance(counts, dict):
        problems.append(f"{MANIFEST}: no counts (expected counts.entities, counts.relations, counts.triplets)")
    else:
        for name in _COUNTED:
            n = counts.get(name)
            if not isinstance(n, int) or isinstance(n, bool) or n < 0:
                problems.append(f"{MANIFEST}: counts.{name} is {n!r}, expected a number of rows")
        if "splits" in counts and not (isinstance(counts["splits"], dict) and all(isinstance(v, int) for v in counts["splits"].values())):
            problems.append(f"{MANIFEST}: counts.splits is not a table of split -> number")
    roots = m.get("image_roots", {})
    if not isinstance(roots, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in roots.items()):
        problems.append(f"{MANIFEST}: image_roots is not a table of source -> folder")
    sources = m.get("sources", {})
    if not isinstance(sources, dict) or not all(isinstance(v, dict) and isinstance(v.get("skipped", {}), dict) for v in sources.values()):
        problems.append(f"{MANIFEST}: sources is not a table of source -> facts")
    if "files" in m:
        problems += table_problems(m["files"])
    return problems


def _compatible(actual: pa.DataType, expected: pa.DataType) -> bool:
    """Whether the reader can cast a column of type ``actual`` to the format's ``expected`` without loss of meaning."""
    if actual.equals(expected):
        return True
    t = pa.types
    if t.is_string(expected):
        return t.is_string(actual) or t.is_large_string(actual) or t.is_string_view(actual)
    if t.is_integer(expected):
        return t.is_integer(actual)
    if t.is_floating(expected):
        return t.is_floating(actual) or t.is_integer(actual)
    if t.is_fixed_size_list(expected):
        lists = t.is_list(actual) or t.is_large_list(actual) or t.is_fixed_size_list(actual)
        return lists and _compatible(actual.value_type, expected.value_type)
    return False


def _schema_problems(path: Path, rel: str, part: str) -> tuple[list[str], int | None]:
    """(problems, rows) of one shard from its footer; rows is None when the shard is unusable."""
    return _schema_problems_of(path, rel, _SCHEMAS[part], REQUIRED_COLUMNS[part])


def _schema_problems_of(path: Path, rel: str, expected: pa.Schema, required: tuple[str, ...]) -> tuple[list[str], int | None]:
    try:
        meta = pq.read_metadata(path)
        schema = meta.schema.to_arrow_schema()
    except (OSError, pa.ArrowException) as exc:
        return [f"{rel}: cannot read parquet ({one_line(exc)})"], None
    problems = [f"{rel}: no column {c} (a shard of another schema?)" for c in required if c not in schema.names]
    for f in expected:
        if f.name in schema.names and not _compatible(schema.field(f.name).type, f.type):
            problems.append(f"{rel}: column {f.name} is {schema.field(f.name).type}, expected {f.type}")
    return problems, (None if problems else meta.num_rows)


def _read(path: Path, rel: str, columns: list[str], **kw: Any) -> pa.Table:
    try:
        return pq.read_table(path, columns=columns, **kw)
    except (OSError, pa.ArrowException) as exc:
        raise StoreError(f"{rel}: cannot read parquet ({one_line(exc)})") from None


def _dangling(rel: str, col: str, column: pa.ChunkedArray, n: int, what: str) -> list[str]:
    if column.null_count:
        return [f"{rel}: {column.null_count} null {col}"]
    values = column.to_numpy()
    bad = (values < 0) | (values >= n)
    if not bad.any():
        return []
    rows = np.flatnonzero(bad)
    return [f"{rel}: {int(bad.sum())} dangling {col} (no such {what}; {n} exist) at row(s) {_examples(rows)}: ids {_examples(values[rows])}"]


def _duplicates(rel: str, keys: pa.ChunkedArray | pa.Array, what: str) -> list[str]:
    if keys.null_count:
        return [f"{rel}: {keys.null_count} {what}(s) without a key"]
    if pc.count_distinct(keys).as_py() == len(keys):
        return []
    s = pd.Series(keys.to_numpy(zero_copy_only=False))
    dup = s[s.duplicated()]
    return [f"{rel}: {len(dup)} duplicate {what} key(s): {_examples(dup.to_numpy())}"]


def _unusable_entities(t: pa.Table) -> dict[str, list[str]]:
    """Keys of entities that no model can read, by problem: an unknown modality, a text entity
    without text, an image entity without an image (training and evaluation would fail on them)."""
    modality = t.column("modality")
    text = t.column("text") if "text" in t.column_names else pa.nulls(len(t), pa.string())
    image = t.column("image") if "image" in t.column_names else pa.nulls(len(t), pa.string())
    is_text, is_image = pc.fill_null(pc.equal(modality, "text"), False), pc.fill_null(pc.equal(modality, "image"), False)
    masks = {
        "entity(ies) of unknown modality": pc.invert(pc.or_(is_text, is_image)),
        "text entity(ies) without text": pc.and_(is_text, pc.fill_null(pc.equal(pc.utf8_length(text), 0), True)),
        "image entity(ies) without an image": pc.and_(is_image, pc.fill_null(pc.equal(pc.utf8_length(image), 0), True)),
    }
    keys = t.column("key")
    return {what: pc.filter(keys, mask).to_pylist() for what, mask in masks.items() if pc.any(mask).as_py()}


def _alias_problems(path: Path, n_entities: int) -> list[str]:
    """The alias table's shape and ids (an alias of no entity fails the lookups that follow it)."""
    problems, _ = _schema_problems_of(path, ALIASES, ALIAS_SCHEMA, ("key", "entity_id"))
    if problems:
        return problems
    t = _read(path, ALIASES, ["key", "entity_id"])
    if t.column("key").null_count:
        return [f"{ALIASES}: {t.column('key').null_count} alias(es) without a key"]
    return _dangling(ALIASES, "entity_id", t.column("entity_id"), n_entities, "entity")


def fast_problems(store: KnowledgeStore) -> list[str]:
    """The fast checks (see the module doc): structural problems first, changed files last; empty means valid.

    Never raises on a malformed store: every problem is a line of the result.
    """
    m, root = store.manifest, store.path
    manifest = _manifest_problems(m)
    table = m.get("files")
    listing = listing_problems(root, table) if isinstance(table, dict) and not table_problems(table) else []
    parts = {ENTITIES_DIR: store.entity_files, RELATIONS: [root / RELATIONS], TRIPLETS_DIR: store.triplet_files}
    schema: list[str] = []
    rows: dict[str, list[int | None]] = {}
    for part, files in parts.items():
        rows[part] = []
        for p in files:
            problems, n = _schema_problems(p, p.relative_to(root).as_posix(), part)
            schema += problems
            rows[part].append(n)
    usable = {part: all(n is not None for n in ns) for part, ns in rows.items()}
    total = {part: sum(n or 0 for n in ns) for part, ns in rows.items()}

    counts = m.get("counts") if isinstance(m.get("counts"), dict) else {}
    count: list[str] = []
    for name, part in zip(_COUNTED, (ENTITIES_DIR, RELATIONS, TRIPLETS_DIR), strict=True):
        if usable[part] and isinstance(counts.get(name), int) and counts[name] != total[part]:
            count.append(f"{MANIFEST}: counts.{name} is {counts[name]} but the shards hold {total[part]}")

    content: list[str] = []
    n_ent, n_rel = total[ENTITIES_DIR], total[RELATIONS]
    if usable[ENTITIES_DIR]:
        keys, offset = [], 0
        unusable: dict[str, list[str]] = {}
        for p in store.entity_files:
            rel = p.relative_to(root).as_posix()
            present = pq.read_schema(p).names
            t = _read(p, rel, ["entity_id", "key", "modality", *(c for c in ("text", "image") if c in present)])
            ids = t.column("entity_id")
            if ids.null_count or not np.array_equal(ids.to_numpy(), np.arange(offset, offset + len(ids))):
                content.append(f"{rel}: entity_id is not dense from 0 in row order (expected {offset}..{offset + len(ids) - 1})")
            offset += len(ids)
            keys.extend(t.column("key").chunks)
            for what, bad in _unusable_entities(t).items():
                unusable.setdefault(what, []).extend(bad)
        content += _duplicates(ENTITIES_DIR, pa.chunked_array(keys, pa.string()), "entity")
        content += [f"{ENTITIES_DIR}: {len(bad)} {what}: {_examples(np.array(bad, dtype=object))}" for what, bad in unusable.items()]
    if usable[ENTITIES_DIR] and (root / ALIASES).is_file():
        content += _alias_problems(root / ALIASES, n_ent)
    if usable[RELATIONS]:
        r = _read(root / RELATIONS, RELATIONS, ["relation_id", "key"])
        rid = r.column("relation_id")
        if rid.null_count or not np.array_equal(rid.to_numpy(), np.arange(len(r))):
            content.append(f"{RELATIONS}: relation_id is not dense from 0 in row order")
        content += _duplicates(RELATIONS, r.column("key"), "relation")
    if usable[TRIPLETS_DIR]:
        splits: dict[Any, int] = {}
        for p in store.triplet_files:
            rel = p.relative_to(root).as_posix()
            t = _read(p, rel, ["head_id", "relation_id", "tail_id", "split"], read_dictionary=["split"])
            if usable[ENTITIES_DIR]:
                content += _dangling(rel, "head_id", t.column("head_id"), n_ent, "entity")
                content += _dangling(rel, "tail_id", t.column("tail_id"), n_ent, "entity")
            if usable[RELATIONS]:
                content += _dangling(rel, "relation_id", t.column("relation_id"), n_rel, "relation")
            for row in pc.value_counts(t.column("split")).to_pylist():
                splits[row["values"]] = splits.get(row["values"], 0) + row["counts"]
        unknown = sorted((k for k in splits if k not in SPLITS), key=repr)
        if unknown:
            content.append(f"{TRIPLETS_DIR}: {sum(splits[k] for k in unknown)} triplet(s) of unknown split {_examples(np.array(unknown, dtype=object))} "
                           f"(expected one of {', '.join(SPLITS)})")
        stated = counts.get("splits")
        if isinstance(stated, dict) and not unknown:
            for k in SPLITS:
                if stated.get(k, 0) != splits.get(k, 0):
                    count.append(f"{MANIFEST}: counts.splits.{k} is {stated.get(k, 0)} but the shards hold {splits.get(k, 0)}")
    changed = change_problems(root, table) if listing == [] and isinstance(table, dict) and not table_problems(table) else []
    return manifest + listing + schema + count + content + changed


def content_problems(store: KnowledgeStore, hashes: bool = True) -> list[str]:
    """The row checks beyond :func:`fast_problems` (run them on a store that passed it) and, with ``hashes``, the files' SHA-256."""
    e, r = store.entities, store.relations
    problems = check_entities(e) + check_relations(r) + check_aliases(store.aliases, e["key"])
    try:
        store.image_paths()
    except StoreError as exc:  # an image path that escapes its root, or a source without a root
        problems.append(str(exc).removeprefix(f"{store.path}: "))
    table = store.manifest.get("files")
    if hashes and isinstance(table, dict):
        problems += [p for p in change_problems(store.path, table, hashes=True) if "SHA-256" in p]
    return problems


def validate_store(store: KnowledgeStore) -> list[str]:
    """All problems of a store (the fast checks, then the rest when they pass); an empty list means valid."""
    return fast_problems(store) or content_problems(store)


def open_valid(path: str | os.PathLike | KnowledgeStore) -> KnowledgeStore:
    """Open a store and run the fast checks; the one function to call before using a store.

    Args:
        path: the store folder (or a store already opened).

    Returns:
        The opened store.

    Raises:
        StoreError: one line naming the store, the first problem and how many more there are.
    """
    store = path if isinstance(path, KnowledgeStore) else KnowledgeStore(path)
    problems = fast_problems(store)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise StoreError(f"{store.path}: invalid store: {problems[0]}{more}")
    return store
