"""Triplets on their way into a store: spooled to disk as they come, finished out of core.

The writer hands each batch of raw triplets to a :class:`TripletSpool`, which buffers a few
thousand rows and writes them as row groups of one temporary parquet file. Closing the store
finishes them (splits, deduplication, leakage: :mod:`kgclip.store.splits`) in memory bounded by
``partition_rows`` rows, whatever the number of triplets:

1. the spool is read a row group at a time; every triplet gets its split code and the hash of
   its unordered entity pair, and (row number, head, relation, tail, split, pair) goes to one of
   P partition files chosen by the pair hash. Identical triplets, and all triplets of one entity
   pair, share a partition: deduplication and leakage are decided per partition;
2. per partition, the first occurrence of each (head, relation, tail, split) is marked kept, and
   its self-loops, split sizes and leakage are counted;
3. the spool is read again in order and the kept rows go to the store's triplet shards.

The result is that of :func:`kgclip.store.splits.finish_triplets` on the whole table: the same
rows in the same order, the same report. Besides one partition and one row group, memory holds
two bytes per triplet (its split code and whether it is kept).
"""

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from kgclip import progress
from kgclip.store.format import TRIPLET_SCHEMA
from kgclip.store.splits import FinishReport, SplitConfig, add_to_report, assign_split_codes, first_occurrences, pair_hashes
from kgclip.typing import SPLITS

RAW_SCHEMA = pa.schema(
    [
        ("head_id", pa.int64()),
        ("relation_id", pa.int64()),
        ("tail_id", pa.int64()),
        ("source", pa.int16()),  # index into the spool's source names
        ("split", pa.int8()),  # index into SPLITS, -1: none given
        ("weight", pa.float64()),  # NaN: none
        ("dataset", pa.string()),
        ("group_hash", pa.uint64()),  # the converter's split group, 0: none
    ]
)
"""A spooled triplet, before finishing."""
_PART_SCHEMA = pa.schema(
    [("row", pa.int64()), ("head_id", pa.int64()), ("relation_id", pa.int64()), ("tail_id", pa.int64()),
     ("split", pa.int8()), ("pair", pa.uint64())]
)
_SPLIT_NAMES = pa.array(SPLITS, type=pa.string())
_DICTIONARY = ["relation_id", "source", "split", "weight", "dataset", "group_hash"]
"""Columns parquet-encoded by dictionary: those that repeat (entity ids rarely do)."""


class TripletSpool:
    """Raw triplets in row groups of one parquet file under ``folder``, finished into triplet shards.

    Args:
        folder: a private temporary folder (the spool and its partitions live there).
        buffer_rows: rows held in memory before a row group is written.
        partition_rows: rows finished in memory at once (the number of partitions follows).
    """

    def __init__(self, folder: Path, *, buffer_rows: int = 1 << 15, partition_rows: int = 1 << 20) -> None:
        self.folder = Path(folder)
        self.buffer_rows = max(1, int(buffer_rows))
        self.partition_rows = max(1, int(partition_rows))
        self.sources: list[str] = []
        self.rows = 0
        self._source_code: dict[str, int] = {}
        self._buf: list[pa.RecordBatch] = []
        self._buf_rows = 0
        self._file: pq.ParquetWriter | None = None

    @property
    def path(self) -> Path:
        return self.folder / "raw.parquet"

    def source_code(self, source: str) -> int:
        """The int16 code of a source name (new names get the next code)."""
        code = self._source_code.get(source)
        if code is None:
            if len(self.sources) >= np.iinfo(np.int16).max:
                raise ValueError("more than 32767 triplet sources")
            code = self._source_code[source] = len(self.sources)
            self.sources.append(source)
        return code

    def add(self, batch: pa.RecordBatch) -> None:
        """Append a batch in ``RAW_SCHEMA``."""
        self._buf.append(batch)
        self._buf_rows += batch.num_rows
        self.rows += batch.num_rows
        if self._buf_rows >= self.buffer_rows:
            self.flush()

    def flush(self) -> None:
        """Write the buffered rows as a row group."""
        if not self._buf:
            return
        if self._file is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._file = pq.ParquetWriter(self.path, RAW_SCHEMA, use_dictionary=_DICTIONARY)
        self._file.write_table(pa.Table.from_batches(self._buf, schema=RAW_SCHEMA), row_group_size=self._buf_rows)
        self._buf, self._buf_rows = [], 0

    def close(self) -> None:
        """Close the spool file (idempotent); nothing more can be added after :meth:`finish`."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def remove(self) -> None:
        """Close and delete the spool's files."""
        self.close()
        _remove(self.folder)

    def _row_groups(self, columns: list[str] | None = None) -> Iterator[tuple[int, pa.Table]]:
        """(first row number, table) per row group of the spool, in order."""
        if self.rows == 0:
            return
        f = pq.ParquetFile(self.path)
        start = 0
        for i in range(f.num_row_groups):
            table = f.read_row_group(i, columns=columns)
            yield start, table
            start += table.num_rows

    # -- finishing ------------------------------------------------------------------------------
    def finish(self, out_dir: Path, entity_group: np.ndarray, config: SplitConfig, shard_rows: int) -> tuple[FinishReport, dict[str, int]]:
        """Finish the spooled triplets into ``out_dir/part-NNNNN.parquet`` shards of ``shard_rows``.

        Args:
            out_dir: the store's (temporary) triplet folder.
            entity_group: per entity id, the hash it is grouped by (:func:`kgclip.store.splits.entity_groups`).
            config: the split settings.
            shard_rows: rows per output shard.

        Returns:
            The report, and the kept triplets per source name.
        """
        self.flush()
        self.close()
        n = self.rows
        report = FinishReport()
        code = np.empty(n, dtype=np.int8)  # each row's split code
        keep = np.zeros(n, dtype=bool)
        parts = max(1, -(-n // self.partition_rows))
        part_dir = self.folder / "partitions"
        writers: list[pa.ipc.RecordBatchStreamWriter] = []
        held: list[pa.RecordBatch] = []  # the single partition, when there is one
        try:
            if parts > 1:
                part_dir.mkdir(exist_ok=True)
                writers = [pa.ipc.new_stream(part_dir / f"{p:05d}.arrows", _PART_SCHEMA) for p in range(parts)]
            cols = ["head_id", "relation_id", "tail_id", "split", "group_hash"]
            for start, table in progress.bar(self._row_groups(cols), desc="triplets: splits", unit=" row groups", leave=False):
                h, r, t = (table[c].to_numpy() for c in ("head_id", "relation_id", "tail_id"))
                head_group, tail_group = entity_group[h], entity_group[t]
                c = assign_split_codes(table["split"].to_numpy(), head_group, tail_group, table["group_hash"].to_numpy(), config)
                code[start : start + len(c)] = c
                rows = np.arange(start, start + len(c), dtype=np.int64)
                batch = pa.record_batch([rows, h, r, t, c, pair_hashes(head_group, tail_group)], schema=_PART_SCHEMA)
                if parts == 1:
                    held.append(batch)
                    continue
                part = (batch["pair"].to_numpy() % np.uint64(parts)).astype(np.int64)
                order = np.argsort(part, kind="stable")  # rows of one partition stay in row order
                bounds = np.searchsorted(part[order], np.arange(parts + 1))
                ordered = batch.take(pa.array(order))
                for p in np.flatnonzero(np.diff(bounds)):
                    writers[p].write_batch(ordered.slice(bounds[p], bounds[p + 1] - bounds[p]))
            for w in writers:
                w.close()
            if parts == 1:
                self._finish_part(pa.Table.from_batches(held, schema=_PART_SCHEMA), keep, report)
                held.clear()
            for p in progress.bar(range(len(writers)), desc="triplets: duplicates and leakage", unit=" parts", leave=False):
                self._finish_part(pa.ipc.open_stream(part_dir / f"{p:05d}.arrows").read_all(), keep, report)
        finally:
            for w in writers:
                w.close()
            _remove(part_dir)
        report.duplicates_removed = int(n - keep.sum())
        kept = self._write(out_dir, code, keep, shard_rows)
        return report, {s: int(kept[i]) for i, s in enumerate(self.sources)}

    @staticmethod
    def _finish_part(table: pa.Table, keep: np.ndarray, report: FinishReport) -> None:
        """Mark a partition's first occurrences kept (rows ascend within it) and count what they hold."""
        rows = table["row"].to_numpy()
        h, r, t = (table[c].to_numpy() for c in ("head_id", "relation_id", "tail_id"))
        c = table["split"].to_numpy()
        first = first_occurrences(h, r, t, c)
        keep[rows[first]] = True
        add_to_report(report, h[first], t[first], c[first], table["pair"].to_numpy()[first])

    def _write(self, out_dir: Path, code: np.ndarray, keep: np.ndarray, shard_rows: int) -> np.ndarray:
        """Write the kept rows, in spool order, as shards of ``shard_rows``; returns kept rows per source code."""
        kept = np.zeros(max(len(self.sources), 1), dtype=np.int64)
        names = pa.array(self.sources, type=pa.string())
        shard, fill, writer = 0, 0, None
        try:
            for start, table in progress.bar(self._row_groups(), desc="triplets: writing", unit=" row groups", leave=False):
                sel = keep[start : start + table.num_rows]
                if not sel.any():
                    continue
                table = table.filter(pa.array(sel))
                src = table["source"].to_numpy()
                kept += np.bincount(src, minlength=len(kept))
                out = pa.table(
                    [table["head_id"], table["relation_id"], table["tail_id"], names.take(pa.array(src)),
                     _SPLIT_NAMES.take(pa.array(code[start : start + len(sel)][sel])),
                     pc.if_else(pc.is_nan(table["weight"]), None, table["weight"]), table["dataset"]],
                    schema=TRIPLET_SCHEMA,
                )
                while out.num_rows:
                    if writer is None:
                        writer = pq.ParquetWriter(out_dir / f"part-{shard:05d}.parquet", TRIPLET_SCHEMA, use_dictionary=_DICTIONARY[:-1])
                    part = out.slice(0, shard_rows - fill)
                    writer.write_table(part)
                    fill += part.num_rows
                    out = out.slice(part.num_rows)
                    if fill >= shard_rows:
                        writer.close()
                        writer, shard, fill = None, shard + 1, 0
        finally:
            if writer is not None:
                writer.close()
        if shard == 0 and fill == 0:
            pq.write_table(TRIPLET_SCHEMA.empty_table(), out_dir / "part-00000.parquet")
        return kept


def _remove(folder: Path) -> None:
    """Delete a folder of plain files (the spool's own; no tree walk needed)."""
    if not folder.is_dir():
        return
    for p in folder.iterdir():
        if p.is_dir():
            _remove(p)
        else:
            p.unlink(missing_ok=True)
    folder.rmdir()
