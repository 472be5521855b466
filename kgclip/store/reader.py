"""Reading a knowledge store: tables, id maps, image paths (never outside their image root)."""

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from functools import cached_property
from glob import escape as glob_escape
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from kgclip.errors import StoreError, one_line
from kgclip.store.files import data_files, file_problems
from kgclip.store.format import (
    ALIAS_SCHEMA,
    ALIASES,
    ENTITIES_DIR,
    ENTITY_SCHEMA,
    MANIFEST,
    READABLE_VERSIONS,
    RELATION_SCHEMA,
    RELATIONS,
    TRIPLET_SCHEMA,
    TRIPLETS_DIR,
)

log = logging.getLogger(__name__)


def _read_parquet(path: Path, columns: list[str] | None = None, dictionary: Sequence[str] = ()) -> pa.Table:
    try:
        return pq.read_table(path, columns=columns, read_dictionary=[c for c in dictionary if columns is None or c in columns] or None)
    except (OSError, pa.ArrowException) as exc:
        raise StoreError(f"{path}: cannot read parquet ({one_line(exc)})") from None


def read_shards(files: list[Path], columns: list[str] | None, schema: pa.Schema, dictionary: Sequence[str] = ()) -> pa.Table:
    """Shards of one table as one pyarrow table, in ``schema``'s column order.

    Columns of the schema that a shard lacks (``concept`` in a version-1 store) come back null;
    columns of no schema are left out; columns of a compatible type (``large_string``, ``int32``, a
    list of four numbers for a box) are cast to the format's type. Columns named in ``dictionary``
    come as dictionary arrays (int32 indices into the type; a shard's own dictionary per chunk):
    a repeating string is then not made once per row.
    """
    wanted = list(columns) if columns is not None else schema.names
    schema = pa.schema([pa.field(f.name, pa.dictionary(pa.int32(), f.type)) if f.name in dictionary else f for f in schema])
    parts = []
    for p in files:
        try:
            present = set(pq.read_schema(p).names)
        except (OSError, pa.ArrowException) as exc:
            raise StoreError(f"{p}: cannot read parquet ({one_line(exc)})") from None
        absent = [c for c in wanted if c not in present and c in schema.names]
        table = _read_parquet(p, [c for c in wanted if c not in absent], dictionary)
        for c in absent:
            table = table.append_column(schema.field(c), pa.nulls(len(table), schema.field(c).type))
        table = table.select(wanted)
        for i, c in enumerate(wanted):  # e.g. large_string or int32 from a shard rewritten by pandas
            if c in schema.names and not table.schema.field(c).type.equals(schema.field(c).type):
                try:
                    table = table.set_column(i, schema.field(c), table.column(c).cast(schema.field(c).type))
                except pa.ArrowException as exc:
                    raise StoreError(f"{p}: column {c} is {table.schema.field(c).type}, not {schema.field(c).type} ({one_line(exc)})") from None
        parts.append(table)
    try:
        return pa.concat_tables(parts, promote_options="default")
    except pa.ArrowException as exc:
        raise StoreError(f"{files[0].parent}: shards of different schemas ({one_line(exc)})") from None


def inside_root(root: Path, relative: str, what: str) -> Path:
    """``root / relative``, refused unless it stays inside ``root`` with symbolic links resolved.

    Args:
        root: the image root.
        relative: the stored image path.
        what: names the record in the error (e.g. "entity 'vg:1/image'").

    Raises:
        StoreError: the path is absolute, climbs out with ``..``, or a link leads outside.
    """
    return Path(_RootCheck(root).check(relative, what))


class _RootCheck:
    """Checks image paths against one root, cheaply for many paths.

    Each folder is resolved once (``realpath``) and listed once (``scandir``, which tells links
    apart without a ``stat`` per file); a file that is a link is then resolved in full. A path with
    a ``..`` component or an absolute path is resolved in full (``..`` after a link is not lexical).
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root_str = str(self.root)
        self.real_root = os.path.realpath(root)
        self.prefix = self.real_root.rstrip(os.sep) + os.sep
        self._folders: dict[str, tuple[str, frozenset[str]]] = {}

    def _folder(self, relative_folder: str) -> tuple[str, frozenset[str]]:
        real = os.path.realpath(os.path.join(self.real_root, relative_folder))
        try:
            with os.scandir(real) as it:
                links = frozenset(e.name for e in it if e.is_symlink())
        except OSError:  # a missing folder holds no links (its files are missing, a load error later)
            links = frozenset()
        self._folders[relative_folder] = (real, links)
        return real, links

    def _real(self, relative: str) -> str:
        if os.path.isabs(relative) or ".." in relative.split(os.sep):
            return os.path.realpath(os.path.join(self.real_root, relative))
        folder, name = os.path.split(relative)
        real_folder, links = self._folders.get(folder) or self._folder(folder)
        full = os.path.join(real_folder, name)
        return os.path.realpath(full) if name in links else full

    def check(self, relative: str, what: str) -> str:
        """``root/relative`` as a string, or the error naming ``what``."""
        real = self._real(relative)
        if real != self.real_root and not real.startswith(self.prefix):
            raise StoreError(f"{what}: image path {relative!r} escapes its image root {self.root}")
        return os.path.join(self.root_str, relative)


def with_none(frame: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    """String columns as Python objects with None for missing values (pandas would use NaN)."""
    for c in columns:
        col = frame[c].astype(object)
        frame[c] = col.where(col.notna(), None)
    return frame


class KnowledgeStore:
    """A knowledge store folder opened for reading.

    Opening checks the manifest and that every file is present; the tables are read lazily and
    kept. Use :func:`kgclip.store.validate_store` for the full content checks.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._warned_no_table = False
        if not self.path.is_dir():
            aside = sorted(self.path.parent.glob(f".{glob_escape(self.path.name)}.old-*")) if self.path.parent.is_dir() else []
            hint = f" (an interrupted overwrite left the old store at {aside[0].name}; the next prepare into {self.path.parent} restores it)" if aside else ""
            raise StoreError(f"{self.path}: no such store folder{hint}")
        mpath = self.path / MANIFEST
        if not mpath.is_file():
            raise StoreError(f"{mpath}: missing (not a knowledge store?)")
        try:
            self.manifest: dict[str, Any] = json.loads(mpath.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise StoreError(f"{mpath}: unreadable manifest ({one_line(exc)})") from None
        if not isinstance(self.manifest, dict):
            raise StoreError(f"{mpath}: not a JSON object (not a knowledge store?)")
        version = self.manifest.get("format_version")
        if version not in READABLE_VERSIONS:
            raise StoreError(f"{mpath}: format version {version!r}, this kgclip reads versions {', '.join(map(str, READABLE_VERSIONS))}")
        for sub, files in ((ENTITIES_DIR, self.entity_files), (TRIPLETS_DIR, self.triplet_files)):
            if not files:
                raise StoreError(f"{self.path / sub}: missing or holds no parquet shard")
        if not (self.path / RELATIONS).is_file():
            raise StoreError(f"{self.path / RELATIONS}: missing")

    @cached_property
    def entity_files(self) -> list[Path]:
        return sorted((self.path / ENTITIES_DIR).glob("*.parquet"))

    @cached_property
    def triplet_files(self) -> list[Path]:
        return sorted((self.path / TRIPLETS_DIR).glob("*.parquet"))

    def entity_table(self, columns: list[str] | None = None, dictionary: Sequence[str] = ()) -> pa.Table:
        """Entities as a pyarrow table (optionally only some columns, some as dictionaries; see :func:`read_shards`)."""
        return read_shards(self.entity_files, columns, ENTITY_SCHEMA, dictionary)

    def triplet_table(self, columns: list[str] | None = None, dictionary: Sequence[str] = ()) -> pa.Table:
        """Triplets as a pyarrow table (optionally only some columns, some as dictionaries; see :func:`read_shards`)."""
        return read_shards(self.triplet_files, columns, TRIPLET_SCHEMA, dictionary)

    @cached_property
    def entities(self) -> pd.DataFrame:
        """All entities, indexed by position (= entity_id in a valid store); missing values are None."""
        return with_none(self.entity_table().to_pandas(), ("key", "modality", "text", "image", "source", "concept"))

    @cached_property
    def relations(self) -> pd.DataFrame:
        return with_none(read_shards([self.path / RELATIONS], None, RELATION_SCHEMA).to_pandas(), ("key", "text"))

    @cached_property
    def triplets(self) -> pd.DataFrame:
        return self.triplet_table().to_pandas()

    @cached_property
    def aliases(self) -> pd.DataFrame:
        """Keys of entities merged into another one (``key``, ``entity_id``); empty when the store has none."""
        path = self.path / ALIASES
        if not path.is_file():
            return ALIAS_SCHEMA.empty_table().to_pandas()
        return read_shards([path], None, ALIAS_SCHEMA).to_pandas()

    @cached_property
    def entity_index(self) -> dict[str, int]:
        """key -> entity id, aliases (keys merged into another entity) included."""
        e, a = self.entities, self.aliases
        index = dict(zip(a["key"].tolist(), a["entity_id"].tolist(), strict=True))
        index.update(zip(e["key"].tolist(), e["entity_id"].tolist(), strict=True))
        return index

    @cached_property
    def relation_index(self) -> dict[str, int]:
        """key -> relation id."""
        r = self.relations
        return dict(zip(r["key"].tolist(), r["relation_id"].tolist(), strict=True))

    @property
    def entity_keys(self) -> np.ndarray:
        """id -> key."""
        return self.entities["key"].to_numpy(dtype=object)

    @property
    def relation_keys(self) -> np.ndarray:
        return self.relations["key"].to_numpy(dtype=object)

    def _count(self, name: str) -> int:
        counts = self.manifest.get("counts")
        n = counts.get(name) if isinstance(counts, dict) else None
        if not isinstance(n, int) or isinstance(n, bool):
            raise StoreError(f"{self.path / MANIFEST}: counts.{name} is {n!r}, expected a number")
        return n

    @property
    def num_entities(self) -> int:
        """Entities, as the manifest counts them (:func:`kgclip.store.open_valid` checks it against the files)."""
        return self._count("entities")

    @property
    def num_relations(self) -> int:
        """Relations, as the manifest counts them."""
        return self._count("relations")

    def image_root(self, source: str) -> Path:
        """The folder that image paths of ``source`` are relative to (relative roots: to the store)."""
        roots = self.manifest.get("image_roots") or {}
        if not isinstance(roots, dict) or not isinstance(roots.get(source), str):
            raise StoreError(f"{self.path / MANIFEST}: no image root for source {source!r}")
        root = Path(roots[source])
        return root if root.is_absolute() else (self.path / root)

    def image_path(self, entity_id: int) -> Path:
        """Full path of an image entity's file, checked to stay inside its image root.

        Raises:
            StoreError: the entity has no image, or its path leaves the image root (``..``, an
                absolute path, or a symbolic link leading outside); the message names the entity.
        """
        row = self.entities.iloc[int(entity_id)]
        if row["image"] is None:
            raise StoreError(f"{self.path}: entity {row['key']!r} has no image")
        return inside_root(self.image_root(row["source"]), row["image"], f"{self.path}: entity {row['key']!r}")

    def image_paths(self) -> np.ndarray:
        """Full image path (str) of every entity by id, None where it has no image; each checked like :meth:`image_path`.

        Every distinct image is checked once, without a system call per file (folders are
        resolved and listed once each).
        """
        e = self.entities
        out = np.full(len(e), None, dtype=object)
        has = e["image"].notna().to_numpy()
        if not has.any():
            return out
        pairs = pd.DataFrame({"source": e["source"].to_numpy()[has], "image": e["image"].to_numpy()[has], "key": e["key"].to_numpy()[has]})
        first = pairs.drop_duplicates(["source", "image"])
        checked, roots = {}, {}
        for src, img, key in zip(first["source"], first["image"], first["key"], strict=True):
            root = roots.get(src) or roots.setdefault(src, _RootCheck(self.image_root(src)))
            checked[(src, img)] = root.check(img, f"{self.path}: entity {key!r}")
        out[has] = [checked[(s, i)] for s, i in zip(pairs["source"], pairs["image"], strict=True)]
        return out

    def file_problems(self, hashes: bool = False) -> list[str]:
        """How the data files differ from the table the writer recorded in the manifest.

        Sizes and the list of files always (a ``stat`` per file); with ``hashes`` also every file's
        SHA-256 (reads all data). Stores written before the table existed have nothing to compare:
        an empty list, and a warning (once per store object) that changes cannot be detected.
        """
        table = self.manifest.get("files")
        if table is None:
            if not self._warned_no_table:
                self._warned_no_table = True
                log.warning("%s: no file hashes in %s: content changes cannot be detected; rewrite the store to add them", self.path, MANIFEST)
            return []
        return file_problems(self.path, table, hashes=hashes)

    def fingerprint(self) -> str:
        """A short hash that changes whenever the store is rewritten or a data file is added, removed or resized.

        It covers the manifest's bytes (which hold every data file's size and SHA-256 as written,
        and the counts) and the name and current size of every data file present. A file changed
        in place to the very same size is not seen here: :meth:`file_problems` with ``hashes=True``
        (run by ``kgclip info`` and when training resumes) finds it. Modification times are left out
        on purpose: a copied store (``cp``, ``git``, another machine) would count as changed, and its
        checkpoints and image cache with it. Stores written before the manifest held the file table
        are covered by their manifest and their files' current sizes.
        """
        h = hashlib.sha256((self.path / MANIFEST).read_bytes())
        for name in data_files(self.path):
            h.update(f"\n{name}:{(self.path / name).stat().st_size}".encode())
        return h.hexdigest()[:16]

    def __repr__(self) -> str:
        c = self.manifest.get("counts") if isinstance(self.manifest.get("counts"), dict) else {}
        return f"KnowledgeStore({str(self.path)!r}, entities={c.get('entities')}, relations={c.get('relations')}, triplets={c.get('triplets')})"
