"""Finishing a triplet table: deduplication, leak-free splits, leakage counts.

A split that kgclip makes never leaks and never drops a triplet: it is drawn per *group*, and a
group holds everything that would leak if it were cut apart. By default a triplet's group is the
unordered pair of its entities, each entity taken as its concept when it is a view (so
(h, r, t), (t, r', h), (h, r2, t) and the same facts between sibling views land together); a
converter may name a coarser group per triplet (image-caption pairs: the image; Visual Genome:
the scene), which must hold the pair's group whole.

Groups are hashed from *keys* (not ids), so the same triplet lands in the same split whatever else
the store holds and in whatever order it was written. Splits given by the source (a benchmark's
train/valid/test files, the Karpathy split, stores merged) are kept as given; the triplets whose
entity pair also occurs in another split are counted, never removed.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from kgclip.errors import ConfigError, StoreError
from kgclip.typing import SPLITS

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_K_LO = np.uint64(0x9E3779B97F4A7C15)
_K_HI = np.uint64(0x165667B19E3779F9)
_K_SEED = np.uint64(0xC2B2AE3D27D4EB4F)
_SPLIT_NAMES = np.asarray(SPLITS, dtype=object)


@dataclass
class SplitConfig:
    """How triplets without a given split are divided.

    Attributes:
        ratios: fractions of train, valid and test; they must sum to 1. They are shares of
            groups (entity pairs, images), so the shares of triplets come close to them.
        seed: salt of the hash; another seed gives another split.
    """

    ratios: tuple[float, float, float] = (0.9, 0.05, 0.05)
    seed: int = 0

    def __post_init__(self) -> None:
        self.ratios = tuple(float(r) for r in self.ratios)  # type: ignore[assignment]
        if (len(self.ratios) != 3 or not all(math.isfinite(r) and r >= 0 for r in self.ratios)
                or abs(sum(self.ratios) - 1) > 1e-6):
            raise ConfigError(f"split ratios must be three non-negative numbers summing to 1, got {self.ratios}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int | np.integer) or not 0 <= self.seed < 2**64:
            raise ConfigError(f"split seed must be an integer from 0 to 2**64-1, got {self.seed!r}")
        self.seed = int(self.seed)


@dataclass
class FinishReport:
    """What finishing the triplets found, recorded in the manifest.

    Attributes:
        duplicates_removed: identical (head, relation, tail) triplets of one split beyond the first.
        self_loops: triplets whose head is their tail.
        splits: triplets per split.
        leakage: per split, its triplets whose unordered entity pair (views by concept) also
            occurs in another split. Zero for splits kgclip makes; counted for given splits.
    """

    duplicates_removed: int = 0
    self_loops: int = 0
    splits: dict[str, int] = field(default_factory=dict)
    leakage: dict[str, int] = field(default_factory=dict)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser, vectorised (uint64 arithmetic wraps)."""
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


def key_hashes(keys: pd.Series | np.ndarray) -> np.ndarray:
    """A stable, non-zero 64-bit hash per key string (pandas' fixed-key SipHash; 0 marks "no group")."""
    h = pd.util.hash_array(np.asarray(keys, dtype=object), categorize=False).astype(np.uint64)
    h[h == 0] = 1
    return h


def entity_groups(entity_keys: np.ndarray, concepts: np.ndarray) -> np.ndarray:
    """The hash each entity is grouped by: its concept's when it has one, else its key's."""
    keys = np.asarray(entity_keys, dtype=object).copy()
    concepts = np.asarray(concepts, dtype=object)
    has = pd.notna(concepts)
    keys[has] = concepts[has]
    return key_hashes(keys)


def pair_hashes(head_group: np.ndarray, tail_group: np.ndarray) -> np.ndarray:
    """A hash of the *unordered* pair of two group hashes (the same for (a, b) and (b, a))."""
    lo, hi = np.minimum(head_group, tail_group), np.maximum(head_group, tail_group)
    with np.errstate(over="ignore"):
        h = _mix(_mix(lo * _K_LO) ^ hi * _K_HI)
    h[h == 0] = 1
    return h


def hash_split_codes(group_hash: np.ndarray, config: SplitConfig) -> np.ndarray:
    """The split of each group hash as an int8 code, the index into ``SPLITS``: one group, one split."""
    with np.errstate(over="ignore"):
        x = _mix(np.asarray(group_hash, dtype=np.uint64) + np.uint64(config.seed) * _K_SEED)
    u = (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    r_train, r_valid, _ = config.ratios
    return np.where(u < r_train, 0, np.where(u < r_train + r_valid, 1, 2)).astype(np.int8)


def hash_splits(group_hash: np.ndarray, config: SplitConfig) -> np.ndarray:
    """Assign ``train``/``valid``/``test`` from each triplet's group hash: one group, one split."""
    return _SPLIT_NAMES[hash_split_codes(group_hash, config)]


def split_codes(split: Sequence[str | None] | np.ndarray | pd.Series) -> np.ndarray:
    """Split names as int8 codes (index into ``SPLITS``), -1 where missing (None or NaN).

    Raises:
        StoreError: a value that is not a split name.
    """
    cat = pd.Categorical(np.asarray(split, dtype=object), categories=SPLITS)
    codes = np.asarray(cat.codes, dtype=np.int8)
    unknown = (codes < 0) & pd.notna(np.asarray(split, dtype=object))
    if unknown.any():
        raise StoreError(f"unknown split {np.asarray(split, dtype=object)[np.argmax(unknown)]!r} (expected one of {SPLITS})")
    return codes


def assign_split_codes(
    given: np.ndarray, head_group: np.ndarray, tail_group: np.ndarray, group_hash: np.ndarray | None, config: SplitConfig
) -> np.ndarray:
    """Each triplet's split code: the given one (>= 0), else drawn from the converter's group hash
    (non-zero), else from the hash of its unordered entity pair (views by concept)."""
    codes = np.array(given, dtype=np.int8, copy=True)
    missing = codes < 0
    if missing.any():
        group = pair_hashes(head_group[missing], tail_group[missing])
        if group_hash is not None:
            named = np.asarray(group_hash, dtype=np.uint64)[missing]
            group = np.where(named != 0, named, group)
        codes[missing] = hash_split_codes(group, config)
    return codes


def first_occurrences(head: np.ndarray, relation: np.ndarray, tail: np.ndarray, code: np.ndarray) -> np.ndarray:
    """True for the first row of each distinct (head, relation, tail, split code), in row order."""
    h, r, t = (np.asarray(a, dtype=np.int64) for a in (head, relation, tail))
    if len(h) == 0:
        return np.ones(0, dtype=bool)
    n_ent = int(max(h.max(), t.max())) + 1
    n_rel = int(r.max()) + 1
    if min(h.min(), r.min(), t.min()) >= 0 and n_ent * n_ent * n_rel * len(SPLITS) < 2**63:
        # one int64 per row (exact: the mixed radix fits), hashed once by pandas
        key = ((h * n_rel + r) * n_ent + t) * len(SPLITS) + np.asarray(code, dtype=np.int64)
        return ~pd.Series(key).duplicated(keep="first").to_numpy()
    frame = pd.DataFrame({"h": h, "r": r, "t": t, "s": code})
    return ~frame.duplicated(keep="first").to_numpy()


def leakage_by_code(pair: np.ndarray, code: np.ndarray) -> np.ndarray:
    """Per split code, the rows whose pair hash also occurs with another split code (int64 [3])."""
    code = np.asarray(code, dtype=np.int8)
    seen = pd.DataFrame({"pair": np.asarray(pair, dtype=np.uint64), "split": code}).drop_duplicates()
    multi = seen["pair"].value_counts()
    shared = np.isin(pair, multi.index[multi > 1].to_numpy())
    return np.bincount(code[shared], minlength=len(SPLITS)).astype(np.int64)


def count_leakage(head_group: np.ndarray, tail_group: np.ndarray, split: np.ndarray) -> dict[str, int]:
    """Per split, its triplets whose unordered entity pair (as groups) also occurs in another split."""
    pair = pair_hashes(np.asarray(head_group, np.uint64), np.asarray(tail_group, np.uint64))
    counts = leakage_by_code(pair, split_codes(split))
    return {s: int(n) for s, n in zip(SPLITS, counts, strict=True)}


def finish_triplets(
    triplets: pd.DataFrame,
    entity_group: np.ndarray,
    config: SplitConfig,
) -> tuple[pd.DataFrame, FinishReport]:
    """Fill missing splits by group, deduplicate within each split, count leakage (in memory).

    The store writer finishes the same way out of core (:mod:`kgclip.store.spool`), with the
    same result.

    Args:
        triplets: frame with the columns of ``TRIPLET_SCHEMA``; ``split`` may be null. An optional
            ``group_hash`` column (uint64, 0 for none) names the converter's group of a triplet.
        entity_group: per entity id, the hash it is grouped by (:func:`entity_groups`).
        config: the split settings.

    Returns:
        The finished frame (index reset, without ``group_hash``) and a report.
    """
    h = triplets["head_id"].to_numpy(np.int64)
    r = triplets["relation_id"].to_numpy(np.int64)
    t = triplets["tail_id"].to_numpy(np.int64)
    head_group, tail_group = entity_group[h], entity_group[t]
    group_hash = triplets["group_hash"].to_numpy(np.uint64) if "group_hash" in triplets else None
    code = assign_split_codes(split_codes(triplets["split"].to_numpy(dtype=object)), head_group, tail_group, group_hash, config)
    keep = first_occurrences(h, r, t, code)
    out = triplets.drop(columns=["group_hash"], errors="ignore").assign(split=_SPLIT_NAMES[code])
    out = out[keep].reset_index(drop=True)
    report = FinishReport(duplicates_removed=int(len(keep) - keep.sum()))
    add_to_report(report, h[keep], t[keep], code[keep], pair_hashes(head_group[keep], tail_group[keep]))
    return out, report


def add_to_report(report: FinishReport, head: np.ndarray, tail: np.ndarray, code: np.ndarray, pair: np.ndarray) -> None:
    """Add the self-loops, split sizes and leakage of some kept triplets (all of an entity pair's) to ``report``."""
    report.self_loops += int((head == tail).sum())
    sizes = np.bincount(code, minlength=len(SPLITS))
    leak = leakage_by_code(pair, code)
    for i, s in enumerate(SPLITS):
        report.splits[s] = report.splits.get(s, 0) + int(sizes[i])
        report.leakage[s] = report.leakage.get(s, 0) + int(leak[i])
