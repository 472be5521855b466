"""Pre-resized image cache: every image entity's crop after the PIL stage of the model's transform
(resize, centre crop), as uint8 rows of memory-mapped ``.npy`` shards, decoded once for all epochs.

Layout, inside the store folder (``kgclip prepare cache-images STORE --size 224`` writes it)::

    image_cache/224x224/cache.json        format, store fingerprint, transform spec, counts
    image_cache/224x224/index.npy         int64 [num_entities]: row of each entity, -1 if none
    image_cache/224x224/shard-00000.npy   uint8 [rows, 224, 224, 3]

Rows hold exactly what the JPEG path would feed to ``ToTensor``, so the loader's tensors are the
same to the bit. A cache is used only while the store's fingerprint and the transform's PIL steps
are those it was written for. It is written under a temporary name and renamed into place.
"""

import json
import logging
import multiprocessing as mp
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kgclip.errors import SourceError, StoreError
from kgclip.progress import bar
from kgclip.sampling.images import ImageStages, crop_box, decode, entity_images
from kgclip.store.reader import KnowledgeStore

log = logging.getLogger(__name__)

CACHE_DIR = "image_cache"
META = "cache.json"
INDEX = "index.npy"
FORMAT_VERSION = 1
SHARD_BYTES = 4 << 30
_TASK_CROPS = 64


def cache_folder(store: KnowledgeStore, size: tuple[int, int]) -> Path:
    """Where the cache of ``size`` (height, width) lives in a store."""
    return store.path / CACHE_DIR / f"{size[0]}x{size[1]}"


def human_bytes(n: float) -> str:
    """A byte count for people (binary units)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:,.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    raise AssertionError("unreachable")


@dataclass
class CachePlan:
    """What a cache will hold, known before anything is written.

    Attributes:
        folder: the cache folder.
        entity_ids: the image entities, in row order.
        size: (height, width) of every row.
        rows_per_shard: rows in each full shard.
        bytes: pixel bytes in all (the index adds 8 bytes per entity).
    """

    folder: Path
    entity_ids: np.ndarray
    size: tuple[int, int]
    rows_per_shard: int
    bytes: int

    @property
    def rows(self) -> int:
        return int(self.entity_ids.size)

    @property
    def shards(self) -> int:
        return -(-self.rows // self.rows_per_shard)

    @property
    def row_bytes(self) -> int:
        return self.size[0] * self.size[1] * 3


def plan_image_cache(store: KnowledgeStore, stages: ImageStages, shard_bytes: int = SHARD_BYTES) -> CachePlan:
    """The cache's folder, rows and size for this store and transform."""
    paths, _ = entity_images(store)
    ids = np.flatnonzero(np.array([p is not None for p in paths], dtype=bool))
    row_bytes = stages.size[0] * stages.size[1] * 3
    per_shard = max(1, shard_bytes // row_bytes)
    return CachePlan(cache_folder(store, stages.size), ids, stages.size, per_shard, row_bytes * int(ids.size))


@dataclass
class CacheSummary:
    """What a cache write did: rows written and the entities whose image could not be loaded."""

    folder: Path
    written: int
    failures: dict[str, str] = field(default_factory=dict)


# -- writing -----------------------------------------------------------------------------------
_worker: dict = {}  # per writing process: folder, stages, rows per shard, open shards


def _init_worker(folder: Path, stages: ImageStages, per_shard: int) -> None:
    _worker.clear()
    _worker.update(folder=folder, stages=stages, per_shard=per_shard, shards={})


def _shard(i: int) -> np.ndarray:
    arr = _worker["shards"].get(i)
    if arr is None:
        arr = _worker["shards"][i] = np.load(_worker["folder"] / f"shard-{i:05d}.npy", mmap_mode="r+")
    return arr


def _write_task(groups: list[tuple[str, list[tuple[int, int, object]]]]) -> tuple[int, list[tuple[int, str]]]:
    """Decode each image of the task once and write the PIL-stage output of each of its crops.

    Returns:
        Crops written, and (entity id, reason) of those that failed.
    """
    stages, per_shard = _worker["stages"], _worker["per_shard"]
    done, failed = 0, []
    want = (*stages.size, 3)
    for path, crops in groups:
        try:
            im = decode(path)
        except (OSError, ValueError) as exc:
            failed += [(eid, f"cannot load image {path} ({exc})") for _, eid, _ in crops]
            continue
        for row, eid, box in crops:
            try:
                out = np.asarray(stages.pil(im if box is None else im.crop(crop_box(box))))
            except (OSError, ValueError, TypeError) as exc:
                failed.append((eid, f"cannot crop {path} to {box} ({exc})"))
                continue
            if out.shape != want or out.dtype != np.uint8:
                failed.append((eid, f"{path}: the transform gave {out.shape} {out.dtype}, expected {want} uint8"))
                continue
            _shard(row // per_shard)[row % per_shard] = out
            done += 1
    for arr in _worker["shards"].values():
        arr.flush()
    return done, failed


def _tasks(plan: CachePlan, paths: np.ndarray, boxes: np.ndarray) -> Iterator[list]:
    """Crops grouped by image file (one decode per file), files in path order, about 64 crops a task."""
    ids = plan.entity_ids
    order = np.argsort(paths[ids].astype(str), kind="stable")
    groups: list[tuple[str, list]] = []
    n = 0
    for row in order.tolist():
        eid = int(ids[row])
        p = paths[eid]
        if groups and groups[-1][0] == p:
            groups[-1][1].append((row, eid, boxes[eid]))
        else:
            if n >= _TASK_CROPS:
                yield groups
                groups, n = [], 0
            groups.append((p, [(row, eid, boxes[eid])]))
        n += 1
    if groups:
        yield groups


def write_image_cache(
    store: KnowledgeStore, stages: ImageStages, plan: CachePlan | None = None, *, workers: int = 1, max_bad_fraction: float = 0.01
) -> CacheSummary:
    """Write (or replace) the store's image cache for ``stages``.

    Args:
        store: the knowledge store (the cache goes into its folder).
        stages: the model's transform split at ``ToTensor`` (:func:`~kgclip.sampling.images.split_transform`).
        plan: from :func:`plan_image_cache` (made here when None).
        workers: processes decoding in parallel (each image file is decoded once for all its crops).
        max_bad_fraction: above this share of image entities failing to load, nothing is written.

    Raises:
        StoreError: not enough free disk space.
        SourceError: too many images could not be loaded (the first ones are named).
    """
    plan = plan or plan_image_cache(store, stages)
    parent = plan.folder.parent
    parent.mkdir(exist_ok=True)
    free = shutil.disk_usage(parent).free
    if plan.bytes > free:
        raise StoreError(f"{plan.folder}: the cache needs {human_bytes(plan.bytes)}, only {human_bytes(free)} free")
    fingerprint = store.fingerprint()
    paths, boxes = entity_images(store)
    keys = store.entity_keys
    tmp = parent / f".{plan.folder.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        h, w = plan.size
        for i in range(plan.shards):
            rows = min(plan.rows_per_shard, plan.rows - i * plan.rows_per_shard)
            np.lib.format.open_memmap(tmp / f"shard-{i:05d}.npy", mode="w+", dtype=np.uint8, shape=(rows, h, w, 3)).flush()
        failed_ids: dict[int, str] = {}
        written = 0
        tasks = _tasks(plan, paths, boxes)
        init = (tmp, stages, plan.rows_per_shard)
        with bar(total=plan.rows, unit="img", desc="caching images") as pb:
            if workers > 1:
                with mp.get_context("fork").Pool(workers, initializer=_init_worker, initargs=init) as pool:
                    for done, failed in pool.imap_unordered(_write_task, tasks):
                        written += done
                        failed_ids.update(failed)
                        pb.update(done + len(failed))
            else:
                _init_worker(*init)
                try:
                    for task in tasks:
                        done, failed = _write_task(task)
                        written += done
                        failed_ids.update(failed)
                        pb.update(done + len(failed))
                finally:
                    _worker.clear()
        failures = {str(keys[e]): why for e, why in sorted(failed_ids.items())}
        if len(failures) > max_bad_fraction * max(plan.rows, 1):
            first = "; ".join(f"{k}: {v}" for k, v in list(failures.items())[:3])
            raise SourceError(f"{store.path}: {len(failures)} of {plan.rows} images could not be loaded (first: {first}); "
                              f"no cache written (raise --max-bad-fraction to keep the others)")
        index = np.full(store.num_entities, -1, dtype=np.int64)
        index[plan.entity_ids] = np.arange(plan.rows)
        index[np.array(sorted(failed_ids), dtype=np.int64)] = -1  # left to the JPEG path, which reports them as it always does
        np.save(tmp / INDEX, index)
        for f in tmp.iterdir():
            with open(f, "rb+") as fh:
                os.fsync(fh.fileno())
        meta = {"format_version": FORMAT_VERSION, "store_fingerprint": fingerprint, "spec": stages.spec, "size": list(plan.size),
                "num_entities": store.num_entities, "rows": plan.rows, "rows_per_shard": plan.rows_per_shard, "shards": plan.shards,
                "written": written, "failed": len(failures), "first_failures": dict(list(failures.items())[:5])}
        (tmp / META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        old = None
        if plan.folder.exists():
            old = parent / f".{plan.folder.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(plan.folder, old)
        os.replace(tmp, plan.folder)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return CacheSummary(plan.folder, written, failures)


# -- reading -----------------------------------------------------------------------------------
class ImageCache:
    """An image cache opened for reading (shards are memory-mapped lazily, once per process).

    Attributes:
        folder: the cache folder; size: (height, width); index: [num_entities] row or -1.
    """

    def __init__(self, folder: Path, meta: dict) -> None:
        self.folder = folder
        self.size = (int(meta["size"][0]), int(meta["size"][1]))
        self.rows_per_shard = int(meta["rows_per_shard"])
        self.shards = int(meta["shards"])
        self.index = np.load(folder / INDEX, mmap_mode="r")
        self._maps: list[np.ndarray] | None = None
        self._pid = -1

    def _arrays(self) -> list[np.ndarray]:
        if self._maps is None or self._pid != os.getpid():
            self._maps = [np.load(self.folder / f"shard-{i:05d}.npy", mmap_mode="r") for i in range(self.shards)]
            self._pid = os.getpid()
        return self._maps

    def rows(self, entity_ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Row of each entity, -1 where the cache has none."""
        return np.asarray(self.index[np.asarray(entity_ids, dtype=np.int64)])

    def read(self, rows: np.ndarray) -> np.ndarray:
        """[n, H, W, 3] uint8 pixels of the given rows (all >= 0)."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((rows.size, *self.size, 3), dtype=np.uint8)
        shard = rows // self.rows_per_shard
        maps = self._arrays()
        for s in np.unique(shard).tolist():
            sel = shard == s
            out[sel] = maps[s][rows[sel] - s * self.rows_per_shard]
        return out

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_maps": None, "_pid": -1}


def open_image_cache(store: KnowledgeStore, stages: ImageStages | None) -> tuple[ImageCache | None, str]:
    """The store's valid cache for this transform, or None and the reason it is not used.

    A cache is valid when it was written for this store's fingerprint, this transform's PIL steps
    and this entity count, and its files are all present with the recorded shapes.
    """
    if stages is None:
        return None, "the image transform cannot be split at ToTensor, so no cache fits it"
    folder = cache_folder(store, stages.size)
    if not (folder / META).is_file():
        return None, f"no image cache at {folder} (kgclip prepare cache-images {store.path} --size {stages.size[0]})"
    try:
        meta = json.loads((folder / META).read_text(encoding="utf-8"))
        if meta.get("format_version") != FORMAT_VERSION:
            return None, f"{folder}: cache format {meta.get('format_version')!r}, this kgclip reads {FORMAT_VERSION}"
        if meta.get("store_fingerprint") != store.fingerprint():
            return None, f"{folder}: written for another version of the store (fingerprint changed); rebuild it with kgclip prepare cache-images"
        if meta.get("spec") != stages.spec:
            return None, f"{folder}: written for the image steps {meta.get('spec')!r}, the model uses {stages.spec!r}"
        if meta.get("num_entities") != store.num_entities:
            return None, f"{folder}: written for {meta.get('num_entities')} entities, the store has {store.num_entities}"
        cache = ImageCache(folder, meta)
        if cache.index.shape != (store.num_entities,):
            return None, f"{folder / INDEX}: shape {cache.index.shape}, expected ({store.num_entities},)"
        total = 0
        for i, arr in enumerate(cache._arrays()):
            if arr.dtype != np.uint8 or arr.shape[1:] != (*cache.size, 3) or (i < cache.shards - 1 and arr.shape[0] != cache.rows_per_shard):
                return None, f"{folder}: shard {i} has shape {arr.shape} {arr.dtype}"
            total += arr.shape[0]
        if total != meta.get("rows") or (cache.index.size and int(cache.index.max(initial=-1)) >= total):
            return None, f"{folder}: shards hold {total} rows, {META} records {meta.get('rows')}"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return None, f"{folder}: unreadable image cache ({exc})"
    return cache, f"image cache {folder} ({total} crops at {cache.size[1]}x{cache.size[0]})"
