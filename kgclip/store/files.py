"""The data files of a store and their table in the manifest.

The writer records every data file (``entities/*.parquet``, ``triplets/*.parquet``,
``relations.parquet``) in ``manifest.json`` under ``files`` as ``{"bytes": size, "sha256": hex}``.
Checking sizes and the list of files is a ``stat`` per file; checking the hashes reads every byte
once (``kgclip info`` does it).
"""

import hashlib
import os
from pathlib import Path
from typing import Any

from kgclip.progress import bar
from kgclip.store.format import ALIASES, ENTITIES_DIR, MANIFEST, RELATIONS, TRIPLETS_DIR

_CHUNK = 1 << 20


def data_files(folder: Path) -> list[str]:
    """The data files present in a store folder, as sorted paths relative to it (``/``-separated)."""
    found = [f"{sub}/{p.name}" for sub in (ENTITIES_DIR, TRIPLETS_DIR) for p in (folder / sub).glob("*.parquet")]
    found += [name for name in (RELATIONS, ALIASES) if (folder / name).exists()]
    return sorted(found)


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def file_table(folder: Path) -> dict[str, dict[str, Any]]:
    """``{relative path: {"bytes": size, "sha256": hex}}`` of every data file in ``folder``."""
    names = data_files(folder)
    total = sum((folder / n).stat().st_size for n in names)
    table = {}
    with bar(total=total, unit="B", unit_scale=True, desc="hashing store files", leave=False) as b:
        for n in names:
            p = folder / n
            table[n] = {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
            b.update(table[n]["bytes"])
    return table


def table_problems(table: Any) -> list[str]:
    """Whether the manifest's ``files`` value is a table of ``{path: {"bytes": int, "sha256": str}}``."""
    ok = isinstance(table, dict) and all(
        isinstance(v, dict) and isinstance(v.get("bytes"), int) and isinstance(v.get("sha256"), str) for v in table.values()
    )
    return [] if ok else [f"{MANIFEST}: files is not a table of {{path: {{bytes, sha256}}}}"]


def listing_problems(folder: Path, table: dict[str, Any]) -> list[str]:
    """Data files the table lists but ``folder`` lacks, and files present that it does not list."""
    present = set(data_files(folder))
    problems = [f"{n}: listed in {MANIFEST} but missing" for n in sorted(set(table) - present)]
    return problems + [f"{n}: present but not listed in {MANIFEST} (added after writing?)" for n in sorted(present - set(table))]


def change_problems(folder: Path, table: dict[str, Any], hashes: bool = False) -> list[str]:
    """Listed files whose size (and, with ``hashes``, SHA-256) differs from the table."""
    problems = []
    names = sorted(set(table) & set(data_files(folder)))
    sizes = {n: os.stat(folder / n).st_size for n in names}
    with bar(total=sum(sizes.values()), unit="B", unit_scale=True, desc="checking store hashes", leave=False, disable=not hashes) as b:
        for n in names:
            if sizes[n] != table[n]["bytes"]:
                problems.append(f"{n}: {sizes[n]} bytes, {MANIFEST} records {table[n]['bytes']} (changed after writing)")
            elif hashes and sha256_file(folder / n) != table[n]["sha256"]:
                problems.append(f"{n}: content differs from the SHA-256 in {MANIFEST} (changed after writing)")
            b.update(sizes[n])
    return problems


def file_problems(folder: Path, table: Any, hashes: bool = False) -> list[str]:
    """How the data files in ``folder`` differ from the manifest's ``files`` table.

    Args:
        folder: the store folder.
        table: the manifest's ``files`` value.
        hashes: also compare the SHA-256 of every file (reads all data).

    Returns:
        One line per problem (a malformed table, a missing, unlisted, resized or changed file);
        empty when they agree.
    """
    return table_problems(table) or listing_problems(folder, table) + change_problems(folder, table, hashes)
