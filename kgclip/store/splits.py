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
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from kgclip.errors import ConfigError
from kgclip.typing import SPLITS

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_K_LO = np.uint64(0x9E3779B97F4A7C15)
_K_HI = np.uint64(0x165667B19E3779F9)
_K_SEED = np.uint64(0xC2B2AE3D27D4EB4F)


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


def hash_splits(group_hash: np.ndarray, config: SplitConfig) -> np.ndarray:
    """Assign ``train``/``valid``/``test`` from each triplet's group hash: one group, one split."""
    with np.errstate(over="ignore"):
        x = _mix(np.asarray(group_hash, dtype=np.uint64) + np.uint64(config.seed) * _K_SEED)
    u = (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    r_train, r_valid, _ = config.ratios
    codes = np.where(u < r_train, 0, np.where(u < r_train + r_valid, 1, 2))
    return np.asarray(SPLITS, dtype=object)[codes]


def count_leakage(head_group: np.ndarray, tail_group: np.ndarray, split: np.ndarray) -> dict[str, int]:
    """Per split, its triplets whose unordered entity pair (as groups) also occurs in another split."""
    pair = pd.factorize(pair_hashes(np.asarray(head_group, np.uint64), np.asarray(tail_group, np.uint64)))[0]
    split = np.asarray(split, dtype=object)
    seen = pd.DataFrame({"pair": pair, "split": split}).drop_duplicates()
    multi = seen["pair"].value_counts()
    shared = np.isin(pair, multi.index[multi > 1].to_numpy())
    return {s: int((shared & (split == s)).sum()) for s in SPLITS}


def finish_triplets(
    triplets: pd.DataFrame,
    entity_group: np.ndarray,
    config: SplitConfig,
) -> tuple[pd.DataFrame, FinishReport]:
    """Fill missing splits by group, deduplicate within each split, count leakage.

    Args:
        triplets: frame with the columns of ``TRIPLET_SCHEMA``; ``split`` may be null. An optional
            ``group_hash`` column (uint64, 0 for none) names the converter's group of a triplet.
        entity_group: per entity id, the hash it is grouped by (:func:`entity_groups`).
        config: the split settings.

    Returns:
        The finished frame (index reset, without ``group_hash``) and a report.
    """
    report = FinishReport()
    h = triplets["head_id"].to_numpy(np.int64)
    t = triplets["tail_id"].to_numpy(np.int64)
    split = triplets["split"].to_numpy(dtype=object).copy()
    missing = pd.isna(split)
    if missing.any():
        group = pair_hashes(entity_group[h[missing]], entity_group[t[missing]])
        if "group_hash" in triplets:
            given = triplets["group_hash"].to_numpy(np.uint64)[missing]
            group = np.where(given != 0, given, group)
        split[missing] = hash_splits(group, config)
    triplets = triplets.drop(columns=["group_hash"], errors="ignore").assign(split=split)

    n0 = len(triplets)
    triplets = triplets.drop_duplicates(subset=["head_id", "relation_id", "tail_id", "split"], keep="first").reset_index(drop=True)
    report.duplicates_removed = n0 - len(triplets)
    h = triplets["head_id"].to_numpy(np.int64)
    t = triplets["tail_id"].to_numpy(np.int64)
    split = triplets["split"].to_numpy(dtype=object)
    report.self_loops = int((h == t).sum())
    report.splits = {s: int((split == s).sum()) for s in SPLITS}
    report.leakage = count_leakage(entity_group[h], entity_group[t], split)
    return triplets, report
