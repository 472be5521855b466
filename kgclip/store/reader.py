"""Reading a knowledge store: tables, id maps, image paths."""

import hashlib
import json
import os
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from kgclip.errors import StoreError
from kgclip.store.format import ENTITIES_DIR, ENTITY_SCHEMA, MANIFEST, READABLE_VERSIONS, RELATIONS, TRIPLETS_DIR


def _read_parquet(path: Path, columns: list[str] | None = None) -> pa.Table:
    try:
        return pq.read_table(path, columns=columns)
    except (OSError, pa.ArrowException) as exc:
        raise StoreError(f"{path}: cannot read parquet ({str(exc).splitlines()[0]})") from None


def _with_none(frame: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
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
        if not self.path.is_dir():
            raise StoreError(f"{self.path}: no such store folder")
        mpath = self.path / MANIFEST
        if not mpath.is_file():
            raise StoreError(f"{mpath}: missing (not a knowledge store?)")
        try:
            self.manifest: dict[str, Any] = json.loads(mpath.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise StoreError(f"{mpath}: unreadable manifest ({exc})") from None
        version = self.manifest.get("format_version") if isinstance(self.manifest, dict) else None
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

    def _concat(self, files: list[Path], columns: list[str] | None) -> pa.Table:
        return pa.concat_tables([_read_parquet(p, columns) for p in files])

    def entity_table(self, columns: list[str] | None = None) -> pa.Table:
        """Entities as a pyarrow table (optionally only some columns).

        Columns a shard lacks (``concept`` in a version-1 store) come back null.
        """
        wanted = list(columns) if columns is not None else ENTITY_SCHEMA.names
        parts = []
        for p in self.entity_files:
            try:
                present = set(pq.read_schema(p).names)
            except (OSError, pa.ArrowException) as exc:
                raise StoreError(f"{p}: cannot read parquet ({str(exc).splitlines()[0]})") from None
            absent = [c for c in wanted if c not in present and c in ENTITY_SCHEMA.names]
            table = _read_parquet(p, [c for c in wanted if c not in absent])
            for c in absent:
                table = table.append_column(ENTITY_SCHEMA.field(c), pa.nulls(len(table), ENTITY_SCHEMA.field(c).type))
            parts.append(table.select(wanted))
        return pa.concat_tables(parts)

    def triplet_table(self, columns: list[str] | None = None) -> pa.Table:
        """Triplets as a pyarrow table (optionally only some columns)."""
        return self._concat(self.triplet_files, columns)

    @cached_property
    def entities(self) -> pd.DataFrame:
        """All entities, indexed by position (= entity_id in a valid store); missing values are None."""
        return _with_none(self.entity_table().to_pandas(), ("key", "modality", "text", "image", "source", "concept"))

    @cached_property
    def relations(self) -> pd.DataFrame:
        return _with_none(_read_parquet(self.path / RELATIONS).to_pandas(), ("key", "text"))

    @cached_property
    def triplets(self) -> pd.DataFrame:
        return self.triplet_table().to_pandas()

    @cached_property
    def entity_index(self) -> dict[str, int]:
        """key -> entity id."""
        e = self.entities
        return dict(zip(e["key"].tolist(), e["entity_id"].tolist(), strict=True))

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

    @property
    def num_entities(self) -> int:
        return int(self.manifest["counts"]["entities"])

    @property
    def num_relations(self) -> int:
        return int(self.manifest["counts"]["relations"])

    def image_root(self, source: str) -> Path:
        """The folder that image paths of ``source`` are relative to (relative roots: to the store)."""
        roots = self.manifest.get("image_roots", {})
        if source not in roots:
            raise StoreError(f"{self.path / MANIFEST}: no image root for source {source!r}")
        root = Path(roots[source])
        return root if root.is_absolute() else (self.path / root)

    def image_path(self, entity_id: int) -> Path:
        """Full path of an image entity's file."""
        row = self.entities.iloc[int(entity_id)]
        if row["image"] is None:
            raise StoreError(f"{self.path}: entity {row['key']!r} has no image")
        return self.image_root(row["source"]) / row["image"]

    def fingerprint(self) -> str:
        """A hash of the manifest; it changes whenever the store is rewritten."""
        return hashlib.sha256((self.path / MANIFEST).read_bytes()).hexdigest()[:16]

    def __repr__(self) -> str:
        c = self.manifest.get("counts", {})
        return f"KnowledgeStore({str(self.path)!r}, entities={c.get('entities')}, relations={c.get('relations')}, triplets={c.get('triplets')})"
