"""Streaming, atomic writer of a knowledge store.

Entities are written in shards as they come; triplets are spooled to a temporary file and
finished out of core (split by group, deduplicated, leakage counted: see :mod:`kgclip.store.splits`
and :mod:`kgclip.store.spool`) when the writer closes. Everything is written under a hidden temporary folder and renamed into place at
the end: an interrupted or failed write leaves no half store behind, and a replaced store is swapped atomically (see
:mod:`kgclip.store.placement`). The manifest records every data file's size and SHA-256
(``files``), from which :meth:`KnowledgeStore.fingerprint` and validation tell a changed store.
"""

import json
import os
import shutil
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from kgclip import __version__
from kgclip.errors import StoreError
from kgclip.store.files import file_table
from kgclip.store.format import (
    ALIAS_SCHEMA,
    ALIASES,
    BBOX_TYPE,
    ENTITIES_DIR,
    ENTITY_SCHEMA,
    FORMAT_VERSION,
    MANIFEST,
    RELATION_SCHEMA,
    RELATIONS,
    TRIPLETS_DIR,
)
from kgclip.store.keys import KeyIndex
from kgclip.store.placement import check_replaceable, clean_stale, swap_into_place, temp_path
from kgclip.store.splits import SplitConfig, entity_groups, key_hashes, split_codes
from kgclip.store.spool import RAW_SCHEMA, TripletSpool
from kgclip.typing import MODALITIES, SPLITS

Bbox = Sequence[float] | None
_ROW_BLOCK = 16_384
"""Triplets added one at a time wait as tuples (about 200 bytes each) until this many are handed on in bulk."""
_ENTITY_DICTIONARY = ["modality", "image", "image_width", "image_height", "source", "concept"]
"""Entity columns parquet-encoded by dictionary: those that repeat (keys, texts and ids rarely do,
and encoding them by dictionary first costs time to fall back from)."""
_ENTITY_BUFFER_ROWS = 16_384


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON to ``path`` through a temporary file and a rename."""
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


class StoreWriter:
    """Write a knowledge store folder.

    Use as a context manager; the store appears at ``path`` only when the block ends without an
    exception::

        with StoreWriter("stores/cn", image_roots={}) as w:
            dog = w.add_entity("conceptnet:/c/en/dog", "text", text="dog", source="conceptnet")
            isa = w.add_relation("/r/IsA", "is a")
            ...
            w.add_triplet(dog, isa, animal, source="conceptnet")

    Args:
        path: the store folder to create.
        image_roots: source name -> folder that image paths of that source are relative to.
        split: how triplets without an explicit split are divided.
        shard_rows: rows per parquet shard.
        partition_rows: triplets finished in memory at once; more are hash-partitioned on disk
            first (memory stays bounded, the store is the same).
        settings: free-form creation settings recorded in the manifest.
        overwrite: replace an existing store at ``path`` (only once the new one is complete); anything
            else at ``path`` (a file, a folder that is not a store, one of ``inputs``) is refused.
        inputs: files or folders the write reads (never replaced).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        image_roots: dict[str, str] | None = None,
        split: SplitConfig | None = None,
        shard_rows: int = 1_000_000,
        partition_rows: int = 1 << 20,
        settings: dict[str, Any] | None = None,
        overwrite: bool = False,
        inputs: Iterable[str | os.PathLike] = (),
    ) -> None:
        self.path = Path(path)
        clean_stale(self.path.parent)
        if os.path.lexists(self.path) and not overwrite:
            raise StoreError(f"{self.path}: already exists (pass overwrite to replace it)")
        self._inputs = [str(p) for p in inputs]
        check_replaceable(self.path, self._inputs)
        self.image_roots = {k: str(v) for k, v in (image_roots or {}).items()}
        self.split = split or SplitConfig()
        self.shard_rows = int(shard_rows)
        # Entity rows wait in Python lists (about 1 KB each with a box): they go out as row groups
        # of the open shard every few thousand rows.
        self._entity_rows = min(self.shard_rows, _ENTITY_BUFFER_ROWS)
        self.settings = dict(settings or {})
        self._tmp = temp_path(self.path)
        # folders above the store that this writer makes: removed again when it aborts
        self._made_parents = [p for p in (self.path.parent, *self.path.parent.parents) if not os.path.lexists(p)]
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            (self._tmp / ENTITIES_DIR).mkdir(parents=True)
            (self._tmp / TRIPLETS_DIR).mkdir()
        except OSError as exc:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._remove_made_parents()
            raise StoreError(f"{self.path}: cannot create the store folder ({exc.strerror or exc})") from None
        self._overwrite = overwrite
        self._entity_ids = KeyIndex()
        self._entity_groups: list[np.ndarray] = []  # per flushed entity row group: the hash each entity is split by
        self._aliases: dict[str, int] = {}
        self._entity_buf: dict[str, list] = {f.name: [] for f in ENTITY_SCHEMA}  # rows added one by one
        self._entity_tables: list[pa.Table] = []  # rows added in bulk, and the rows above before them
        self._entity_table_rows = 0
        self._entity_shards = 0
        self._entity_file: pq.ParquetWriter | None = None
        self._entity_shard_fill = 0
        self._relation_ids: dict[str, int] = {}
        self._relation_text: list[str] = []
        self._relation_keys: list[str] = []
        self._rows: list[tuple] = []
        self._spool = TripletSpool(self._tmp / "spool", buffer_rows=min(self.shard_rows, 1 << 15), partition_rows=partition_rows)
        self._skips: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self._notes: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self._source_counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self._closed = False

    # -- entities ---------------------------------------------------------------------------
    @property
    def num_entities(self) -> int:
        """Entities added so far (the next new entity gets this id)."""
        return len(self._entity_ids)

    def entity_id(self, key: str) -> int | None:
        """The id of an entity already added, or None."""
        return self._entity_ids.get(key)

    def add_entity(
        self,
        key: str,
        modality: str,
        *,
        source: str,
        text: str | None = None,
        image: str | None = None,
        bbox: Bbox = None,
        image_size: tuple[int, int] | None = None,
        concept: str | None = None,
    ) -> int:
        """Add an entity and return its id; a key already present returns the existing id.

        ``concept`` names the source node whose view this entity is (see ``ENTITY_SCHEMA``).
        """
        eid = self._entity_ids.get(key)
        if eid is not None:
            return eid
        if modality not in MODALITIES:
            raise StoreError(f"entity {key!r}: unknown modality {modality!r} (expected one of {MODALITIES})")
        if concept is not None and not concept:
            raise StoreError(f"entity {key!r}: empty concept (use None for an entity that is no view)")
        eid = self._entity_ids.add(key)
        buf = self._entity_buf
        buf["entity_id"].append(eid)
        buf["key"].append(key)
        buf["modality"].append(modality)
        buf["text"].append(text)
        buf["image"].append(image)
        buf["bbox"].append(None if bbox is None else [float(v) for v in bbox])
        buf["image_width"].append(None if image_size is None else int(image_size[0]))
        buf["image_height"].append(None if image_size is None else int(image_size[1]))
        buf["source"].append(source)
        buf["concept"].append(concept)
        self._source_counts[source]["entities"] += 1
        if len(buf["entity_id"]) + self._entity_table_rows >= self._entity_rows:
            self._flush_entities()
        return eid

    def add_entities(
        self,
        keys: Sequence[str] | pa.Array,
        modality: str,
        *,
        source: str,
        texts: Sequence[str | None] | pa.Array | None = None,
        concepts: Sequence[str | None] | pa.Array | None = None,
    ) -> np.ndarray:
        """Add many entities of one modality at once (keys must be distinct); returns their ids.

        Keys already present keep their id and attributes. Only text (or image-less) entities:
        use :meth:`add_entity` for images with boxes. ``concepts`` as in :meth:`add_entity`.
        Keys, texts and concepts may be pyarrow string arrays: keys are looked up all at once
        (:class:`kgclip.store.keys.KeyIndex`) and the new rows stay in arrow until written.
        """
        if modality not in MODALITIES:
            raise StoreError(f"unknown modality {modality!r} (expected one of {MODALITIES})")
        key_list = keys.to_pylist() if isinstance(keys, pa.Array | pa.ChunkedArray) else list(keys)
        all_concepts = _strings(concepts, len(key_list))
        if pc.any(pc.equal(pc.utf8_length(all_concepts), 0)).as_py():
            raise StoreError("add_entities: empty concept (use None for an entity that is no view)")
        ids, new = self._entity_ids.add_missing(key_list)
        n = len(new)
        if n == 0:
            return ids
        take = pa.array(new)
        new_keys = keys.take(take) if isinstance(keys, pa.Array | pa.ChunkedArray) else pa.array([key_list[i] for i in new.tolist()], type=pa.string())
        new_concepts = all_concepts.take(take)
        self._pending_entities()
        self._entity_tables.append(pa.Table.from_arrays(
            [pa.array(ids[new]), new_keys.cast(pa.string()), pa.repeat(modality, n), _strings(texts, len(key_list)).take(take),
             pa.nulls(n, pa.string()), pa.nulls(n, BBOX_TYPE), pa.nulls(n, pa.int64()), pa.nulls(n, pa.int64()),
             pa.repeat(source, n), new_concepts],
            schema=ENTITY_SCHEMA,
        ))
        self._entity_table_rows += n
        self._source_counts[source]["entities"] += n
        if self._entity_table_rows >= self._entity_rows:
            self._flush_entities()
        return ids

    def _pending_entities(self) -> None:
        """Move the rows added one by one into the tables (they keep their order)."""
        if self._entity_buf["entity_id"]:
            table = pa.Table.from_pydict(self._entity_buf, schema=ENTITY_SCHEMA)
            self._entity_buf = {f.name: [] for f in ENTITY_SCHEMA}
            self._entity_tables.append(table)
            self._entity_table_rows += table.num_rows

    def _flush_entities(self, end_shard: bool = False) -> None:
        """Write buffered entity rows as a row group of the open shard; a shard closes at ``shard_rows``."""
        self._pending_entities()
        if self._entity_tables:
            table = pa.concat_tables(self._entity_tables)
            self._entity_tables, self._entity_table_rows = [], 0
            self._entity_groups.append(entity_groups(table["key"].to_numpy(zero_copy_only=False),
                                                     table["concept"].to_numpy(zero_copy_only=False)))
            if self._entity_file is None:
                path = self._tmp / ENTITIES_DIR / f"part-{self._entity_shards:05d}.parquet"
                self._entity_file = pq.ParquetWriter(path, ENTITY_SCHEMA, use_dictionary=_ENTITY_DICTIONARY)
                self._entity_shards += 1
            self._entity_file.write_table(table)
            self._entity_shard_fill += table.num_rows
        if self._entity_file is not None and (end_shard or self._entity_shard_fill >= self.shard_rows):
            self._entity_file.close()
            self._entity_file, self._entity_shard_fill = None, 0

    # -- relations --------------------------------------------------------------------------
    def add_alias(self, key: str, entity_id: int) -> None:
        """Record ``key`` as another key of entity ``entity_id`` (an entity merged into it); never an entity key."""
        if key in self._entity_ids:
            raise StoreError(f"alias {key!r} is an entity key")
        if not 0 <= entity_id < len(self._entity_ids):
            raise StoreError(f"alias {key!r}: no entity {entity_id}")
        self._aliases[key] = int(entity_id)

    def add_relation(self, key: str, text: str) -> int:
        """Add a relation (deduplicated by key) and return its id."""
        rid = self._relation_ids.get(key)
        if rid is None:
            rid = len(self._relation_keys)
            self._relation_ids[key] = rid
            self._relation_keys.append(key)
            self._relation_text.append(text)
        return rid

    # -- triplets ---------------------------------------------------------------------------
    def add_triplet(
        self,
        head: int,
        relation: int,
        tail: int,
        *,
        source: str,
        split: str | None = None,
        weight: float | None = None,
        dataset: str | None = None,
        group: str | None = None,
    ) -> None:
        """Add one triplet of ids; rows are buffered and handed to :meth:`add_triplets` in blocks.

        ``group`` (optional) names what the triplet is split with when it has no ``split``: all
        triplets of one group land in one split (image-caption pairs: the image). Without it the
        group is the unordered pair of its entities (views by concept).
        """
        if split is not None and split not in SPLITS:
            raise StoreError(f"unknown split {split!r} (expected one of {SPLITS})")
        self._rows.append((head, relation, tail, source, split, weight, dataset, group))
        if len(self._rows) >= _ROW_BLOCK:
            self._flush_rows()

    def _flush_rows(self) -> None:
        if not self._rows:
            return
        h, r, t, src, split, weight, dataset, group = zip(*self._rows, strict=True)
        self._rows = []
        weight = np.array([np.nan if w is None else w for w in weight], dtype=np.float64)
        names = dict.fromkeys(src)  # the sources in order of first appearance, each a block of its rows
        for name in names:
            if len(names) == 1:
                self.add_triplets(h, r, t, source=name, split=split, weight=weight, dataset=dataset, group=group)
                continue
            idx = [i for i, s in enumerate(src) if s == name]
            self.add_triplets([h[i] for i in idx], [r[i] for i in idx], [t[i] for i in idx], source=name,
                              split=[split[i] for i in idx], weight=weight[idx], dataset=[dataset[i] for i in idx],
                              group=[group[i] for i in idx])

    def add_triplets(
        self,
        heads: Iterable[int],
        relations: Iterable[int],
        tails: Iterable[int],
        *,
        source: str,
        split: Sequence[str | None] | str | None = None,
        weight: Sequence[float | None] | None = None,
        dataset: Sequence[str | None] | str | None = None,
        group: Sequence[str | None] | str | None = None,
    ) -> None:
        """Add a batch of triplets given as id arrays (optionally with split, weight, dataset, group).

        ``group`` as in :meth:`add_triplet`: one name for all, or one per triplet (None: the pair).
        """
        h, r, t = (np.asarray(a, dtype=np.int64).reshape(-1) for a in (heads, relations, tails))
        n = len(h)
        if len(r) != n or len(t) != n:
            raise StoreError(f"add_triplets: {n} heads, {len(r)} relations and {len(t)} tails")
        if n == 0:
            return
        if split is None or isinstance(split, str):
            if split is not None and split not in SPLITS:
                raise StoreError(f"unknown split {split!r} (expected one of {SPLITS})")
            codes = np.full(n, -1 if split is None else SPLITS.index(split), dtype=np.int8)
        else:
            codes = split_codes(list(split) if not isinstance(split, np.ndarray | pd.Series) else split)
        columns = [
            h, r, t,
            np.full(n, self._spool.source_code(source), dtype=np.int16),
            codes,
            np.full(n, np.nan) if weight is None else np.asarray(weight, dtype=np.float64).reshape(-1),
            _strings(dataset, n),
            _group_hashes(group, n),
        ]
        lengths = {len(c) for c in columns}
        if lengths != {n}:
            raise StoreError(f"add_triplets: {n} triplets but columns of lengths {sorted(lengths)}")
        self._source_counts[source]["triplets_in"] += n
        self._spool.add(pa.record_batch(columns, schema=RAW_SCHEMA))

    # -- skips ------------------------------------------------------------------------------
    def count_skip(self, source: str, reason: str, n: int = 1) -> None:
        """Record ``n`` input records of ``source`` skipped for ``reason`` (kept in the manifest)."""
        self._skips[source][reason] += n

    def count_note(self, source: str, reason: str, n: int = 1) -> None:
        """Record ``n`` records of ``source`` kept but changed for ``reason`` (texts cut, self-loops)."""
        self._notes[source][reason] += n

    def note_source(self, source: str, **info: Any) -> None:
        """Record free-form facts about a source (counts read, settings) in the manifest."""
        self._source_counts[source].update(info)

    # -- finishing --------------------------------------------------------------------------
    def close(self) -> dict[str, Any]:
        """Finish the triplets, write relations and the manifest, and move the store into place."""
        if self._closed:
            raise StoreError(f"{self.path}: writer already closed")
        self._flush_entities(end_shard=True)
        self._flush_rows()
        if self._entity_shards == 0:
            pq.write_table(ENTITY_SCHEMA.empty_table(), self._tmp / ENTITIES_DIR / "part-00000.parquet")
        rel = pa.Table.from_pydict(
            {
                "relation_id": list(range(len(self._relation_keys))),
                "key": self._relation_keys,
                "text": self._relation_text,
            },
            schema=RELATION_SCHEMA,
        )
        pq.write_table(rel, self._tmp / RELATIONS)
        if self._aliases:
            aliases = {"key": list(self._aliases), "entity_id": list(self._aliases.values())}
            pq.write_table(pa.Table.from_pydict(aliases, schema=ALIAS_SCHEMA), self._tmp / ALIASES)

        entity_group = np.concatenate(self._entity_groups) if self._entity_groups else np.zeros(0, dtype=np.uint64)
        num_entities = len(self._entity_ids)
        self._entity_groups, self._entity_ids = [], KeyIndex()  # nothing is added any more: free the keys before finishing
        report, kept = self._spool.finish(self._tmp / TRIPLETS_DIR, entity_group, self.split, self.shard_rows)
        self._spool.remove()
        sources: dict[str, Any] = {}
        for name in sorted(set(self._source_counts) | set(self._skips) | set(self._notes)):
            info = dict(self._source_counts.get(name, {}))
            info["triplets"] = int(kept.get(name, 0))
            info["skipped"] = dict(self._skips.get(name, {}))
            info["noted"] = dict(self._notes.get(name, {}))
            sources[name] = info
        manifest = {
            "format_version": FORMAT_VERSION,
            "kgclip_version": __version__,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "sources": sources,
            "image_roots": self.image_roots,
            "counts": {
                "entities": num_entities,
                "relations": len(self._relation_keys),
                "triplets": sum(report.splits.values()),
                "splits": report.splits,
            },
            "split": {"ratios": list(self.split.ratios), "seed": self.split.seed,
                      "groups": "converter's group, else the unordered entity pair (views by concept)"},
            "duplicates_removed": report.duplicates_removed,
            "leakage": report.leakage,
            "self_loops": report.self_loops,
            "aliases": len(self._aliases),
            "settings": self.settings,
        }
        manifest["files"] = file_table(self._tmp)
        write_json_atomic(self._tmp / MANIFEST, manifest)
        self._move_into_place()
        self._closed = True
        return manifest

    def _move_into_place(self) -> None:
        if os.path.lexists(self.path):
            if not self._overwrite:
                raise StoreError(f"{self.path}: appeared while writing; not replaced")
            check_replaceable(self.path, self._inputs)
        try:
            swap_into_place(self._tmp, self.path)
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot move the new store into place ({exc.strerror or exc})") from None

    def abort(self) -> None:
        """Remove everything written so far; the target path is left untouched."""
        if self._entity_file is not None:
            self._entity_file.close()
            self._entity_file = None
        self._spool.close()
        shutil.rmtree(self._tmp, ignore_errors=True)
        self._remove_made_parents()
        self._closed = True

    def _remove_made_parents(self) -> None:
        for p in self._made_parents:  # the deepest first; one that is no longer empty stays
            try:
                p.rmdir()
            except OSError:
                return

    def __enter__(self) -> "StoreWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        elif not self._closed:
            try:
                self.close()
            except BaseException:
                self.abort()
                raise


def _group_hashes(group: Sequence[str | None] | str | None, n: int) -> np.ndarray:
    """The hash of each triplet's split group; 0 where none is named."""
    if group is None:
        return np.zeros(n, dtype=np.uint64)
    names = np.full(n, group, dtype=object) if isinstance(group, str) else np.asarray(list(group), dtype=object)
    out = np.zeros(n, dtype=np.uint64)
    has = pd.notna(names)
    if has.any():
        out[has] = key_hashes(names[has])
    return out


def _strings(values: Sequence[str | None] | str | pa.Array | pa.ChunkedArray | None, n: int) -> pa.Array:
    """A string column of ``n`` rows: all null, one value for all, or one per row (None or NaN: null)."""
    if values is None:
        return pa.nulls(n, pa.string())
    if isinstance(values, str):
        return pa.repeat(values, n)
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        return values.cast(pa.string())
    return pa.array(list(values) if not isinstance(values, np.ndarray | pd.Series) else values, type=pa.string(), from_pandas=True)
