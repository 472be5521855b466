"""Entity key -> id while a store is written: exact, compact, and vectorised for many keys at once.

A Python dict costs about 140 bytes a key (the string, the id, the slot): 1.4 GB for ten million
entities. Here only the newest keys sit in a dict; older ones are folded into sorted numpy arrays
holding two 64-bit hashes of each key (Python's string hash of the key, and of the key behind a NUL
character: two outputs of a keyed SipHash, independent) and its id: 24 bytes a key. A key is
taken for another only if both hashes agree: for n keys the chance that this happens at all is
about n**2 / 2**129 (1e-23 for a hundred million keys); a pair of keys agreeing in both hashes
that are both added is refused with an error.

Looking up many keys at once (:meth:`KeyIndex.lookup`) hashes them in a C-level loop and
searches the arrays in numpy, without a Python step per key.
"""

from collections.abc import Sequence

import numpy as np

from kgclip.errors import StoreError

_NUL = "\0"


def _hashes(keys: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    n = len(keys)
    return (np.fromiter(map(hash, keys), dtype=np.int64, count=n),
            np.fromiter(map(hash, map(_NUL.__add__, keys)), dtype=np.int64, count=n))


class KeyIndex:
    """Distinct string keys, each with the id it was added with (0, 1, 2, ... in order).

    Args:
        min_recent: keys kept in the dict before the first fold into the arrays.
        recent_share: the dict is folded once it holds more than this share of the keys in the
            arrays (the larger, the fewer folds; the smaller, the less memory).
    """

    def __init__(self, min_recent: int = 1 << 16, recent_share: float = 0.125) -> None:
        self.min_recent = int(min_recent)
        self.recent_share = float(recent_share)
        self._recent: dict[str, int] = {}
        self._h1 = np.empty(0, dtype=np.int64)  # sorted
        self._h2 = np.empty(0, dtype=np.int64)
        self._ids = np.empty(0, dtype=np.int64)

    def __len__(self) -> int:
        return len(self._recent) + len(self._ids)

    def __contains__(self, key: str) -> bool:
        return self.get(key) is not None

    def get(self, key: str) -> int | None:
        """The id of ``key``, or None."""
        eid = self._recent.get(key)
        if eid is not None or not len(self._ids):
            return eid
        h1 = hash(key)
        i = int(np.searchsorted(self._h1, h1))
        if i == len(self._h1) or self._h1[i] != h1:
            return None
        h2 = hash(_NUL + key)
        while i < len(self._h1) and self._h1[i] == h1:
            if self._h2[i] == h2:
                return int(self._ids[i])
            i += 1
        return None

    def add(self, key: str) -> int:
        """Add a key that is not present; returns its id (the number of keys before it)."""
        eid = len(self)
        self._recent[key] = eid
        self._maybe_fold()
        return eid

    def lookup(self, keys: Sequence[str]) -> np.ndarray:
        """The ids of ``keys`` (int64), -1 for a key not present."""
        n = len(keys)
        ids = np.full(n, -1, dtype=np.int64)
        if self._recent:
            ids[:] = np.fromiter(map(self._recent.get, keys, [-1] * n), dtype=np.int64, count=n)
        todo = np.flatnonzero(ids < 0)
        if len(todo) and len(self._ids):
            sub = [keys[i] for i in todo.tolist()] if len(todo) < n else keys
            h1, h2 = _hashes(sub)
            pos = np.searchsorted(self._h1, h1)
            hit = pos < len(self._h1)
            pos_c = np.minimum(pos, len(self._h1) - 1)
            same1 = hit & (self._h1[pos_c] == h1)
            found = same1 & (self._h2[pos_c] == h2)
            ids[todo[found]] = self._ids[pos_c[found]]
            for j in np.flatnonzero(same1 & ~found).tolist():  # rare: another key shares the first hash
                eid = self.get(sub[j])
                ids[todo[j]] = -1 if eid is None else eid
        return ids

    def add_many(self, keys: Sequence[str]) -> np.ndarray:
        """Add distinct keys that are not present; returns their ids (consecutive)."""
        start = len(self)
        ids = np.arange(start, start + len(keys), dtype=np.int64)
        before = len(self._recent)
        self._recent.update(zip(keys, range(start, start + len(keys)), strict=True))
        if len(self._recent) - before != len(keys):
            raise StoreError("entity keys added at once must be distinct and new")
        self._maybe_fold()
        return ids

    def _maybe_fold(self) -> None:
        if len(self._recent) > max(self.min_recent, self.recent_share * len(self._ids)):
            self.fold()

    def fold(self) -> None:
        """Move the dict's keys into the sorted arrays."""
        if not self._recent:
            return
        keys = list(self._recent)
        new_ids = np.fromiter(self._recent.values(), dtype=np.int64, count=len(keys))
        h1, h2 = _hashes(keys)
        del keys
        order = np.lexsort((h2, h1))
        h1, h2, new_ids = h1[order], h2[order], new_ids[order]
        at = np.searchsorted(self._h1, h1)
        self._h1 = np.insert(self._h1, at, h1)
        self._h2 = np.insert(self._h2, at, h2)
        self._ids = np.insert(self._ids, at, new_ids)
        self._recent = {}
        same = np.flatnonzero(self._h1[1:] == self._h1[:-1])
        if len(same):  # rare: check the runs of an equal first hash for a pair agreeing in both
            for i in same.tolist():
                run = self._h2[i : np.searchsorted(self._h1, self._h1[i], side="right")]
                if len(np.unique(run)) < len(run):
                    raise StoreError("two entity keys agree in both 64-bit hashes (about a 1e-20 chance); "
                                     "write the store again (another process hashes differently)")
