"""Finishing a triplet table: deduplication, deterministic splits, leakage blocking.

Splits are assigned from a hash of the triplet's *keys* (not its ids), so the same triplet lands
in the same split whatever else the store holds and in whatever order it was written.
"""

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from kgclip.errors import ConfigError
from kgclip.typing import SPLITS

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_K_HEAD = np.uint64(0x9E3779B97F4A7C15)
_K_REL = np.uint64(0xC2B2AE3D27D4EB4F)
_K_TAIL = np.uint64(0x165667B19E3779F9)


@dataclass
class SplitConfig:
    """How triplets without an explicit split are divided.

    Attributes:
        ratios: fractions of train, valid and test; they must sum to 1.
        leakage: ``"block"`` keeps out of train every triplet joining the same two entities as a
            valid or test triplet (its inverse, or a duplicate under another relation);
            ``"allow"`` does not.
        seed: salt of the hash; another seed gives another split.
    """

    ratios: tuple[float, float, float] = (0.9, 0.05, 0.05)
    leakage: str = "block"
    seed: int = 0

    def __post_init__(self) -> None:
        self.ratios = tuple(float(r) for r in self.ratios)  # type: ignore[assignment]
        if len(self.ratios) != 3 or min(self.ratios) < 0 or abs(sum(self.ratios) - 1) > 1e-6:
            raise ConfigError(f"split ratios must be three non-negative numbers summing to 1, got {self.ratios}")
        if self.leakage not in ("block", "allow"):
            raise ConfigError(f"split leakage must be 'block' or 'allow', got {self.leakage!r}")


@dataclass
class FinishReport:
    """What finishing the triplets changed, recorded in the manifest."""

    duplicates_removed: int = 0
    leakage_blocked: int = 0
    self_loops: int = 0
    splits: dict[str, int] = field(default_factory=dict)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser, vectorised (uint64 arithmetic wraps)."""
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


def key_hashes(keys: pd.Series | np.ndarray) -> np.ndarray:
    """A stable 64-bit hash per key string (pandas' fixed-key SipHash)."""
    return pd.util.hash_array(np.asarray(keys, dtype=object), categorize=False).astype(np.uint64)


def hash_splits(
    head_hash: np.ndarray, rel_hash: np.ndarray, tail_hash: np.ndarray, config: SplitConfig
) -> np.ndarray:
    """Assign ``train``/``valid``/``test`` from the key hashes of each triplet's three parts."""
    with np.errstate(over="ignore"):
        x = head_hash * _K_HEAD ^ rel_hash * _K_REL ^ tail_hash * _K_TAIL
        x = _mix(x + np.uint64(config.seed) * _K_HEAD)
    u = (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    r_train, r_valid, _ = config.ratios
    codes = np.where(u < r_train, 0, np.where(u < r_train + r_valid, 1, 2))
    return np.asarray(SPLITS, dtype=object)[codes]


def finish_triplets(
    triplets: pd.DataFrame,
    entity_hash: np.ndarray,
    relation_hash: np.ndarray,
    config: SplitConfig,
) -> tuple[pd.DataFrame, FinishReport]:
    """Deduplicate, fill missing splits and block leakage.

    Args:
        triplets: frame with the columns of ``TRIPLET_SCHEMA``; ``split`` may be null.
        entity_hash: hash of each entity's key, indexed by entity id.
        relation_hash: hash of each relation's key, indexed by relation id.
        config: the split settings.

    Returns:
        The finished frame (index reset) and a report of what changed.
    """
    report = FinishReport()
    n0 = len(triplets)
    triplets = triplets.drop_duplicates(subset=["head_id", "relation_id", "tail_id"], keep="first")
    report.duplicates_removed = n0 - len(triplets)
    triplets = triplets.reset_index(drop=True)

    h = triplets["head_id"].to_numpy(np.int64)
    r = triplets["relation_id"].to_numpy(np.int64)
    t = triplets["tail_id"].to_numpy(np.int64)
    split = triplets["split"].to_numpy(dtype=object).copy()
    missing = pd.isna(split)
    if missing.any():
        split[missing] = hash_splits(entity_hash[h[missing]], relation_hash[r[missing]], entity_hash[t[missing]], config)
    report.self_loops = int((h == t).sum())

    if config.leakage == "block":
        n_ent = int(max(h.max(initial=-1), t.max(initial=-1))) + 1
        pair = np.minimum(h, t) * n_ent + np.maximum(h, t)
        is_eval = split != "train"
        leaky = (~is_eval) & np.isin(pair, pair[is_eval])
        report.leakage_blocked = int(leaky.sum())
        keep = ~leaky
        triplets = triplets.loc[keep].reset_index(drop=True)
        split = split[keep]
    triplets["split"] = split
    report.splits = {s: int((split == s).sum()) for s in SPLITS}
    return triplets, report
