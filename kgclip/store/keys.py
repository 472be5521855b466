"""Entity key -> id while a store is written: exact, compact, and vectorised for many keys at once.

A Python dict costs about 140 bytes a key (the string, the id, the slot): 1.4 GB for ten million
entities. Here keys live as two 64-bit hashes each (Python's string hash of the key, and of the key
behind a NUL character: two outputs of a keyed SipHash, independent) with their id, in sorted
numpy arrays: 24 bytes a key. A key is taken for another only if both hashes agree: for n keys the
chance that this happens at all is about n**2 / 2**129 (1e-23 for a hundred million keys); two
added keys that agree in both hashes are refused with an error.

Keys added one at a time wait in a small dict; keys added in bulk are hashed in a C-level loop
and searched and inserted in numpy, without a Python step per key. Both are folded into the large
sorted arrays once they exceed a share of them, so that the arrays are rebuilt a logarithmic
number of times.
"""

from collections.abc import Sequence

import numpy as np

from kgclip.errors import StoreError

_NUL = "\0"
_COLLISION = ("two entity keys agree in both 64-bit hashes (a chance of about 1e-20); write the store again "
              "(another process hashes differently)")


def _hashes(keys: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    n = len(keys)
    return (np.fromiter(map(hash, keys), dtype=np.int64, count=n),
            np.fromiter(map(hash, map(_NUL.__add__, keys)), dtype=np.int64, count=n))


class _Sorted:
    """(first hash, second hash, id) rows sorted by the hashes."""

    def __init__(self) -> None:
        self.h1 = np.empty(0, dtype=np.int64)
        self.h2 = np.empty(0, dtype=np.int64)
        self.ids = np.empty(0, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.ids)

    def find(self, h1: np.ndarray, h2: np.ndarray) -> np.ndarray:
        """The id of each (h1, h2), -1 where absent."""
        out = np.full(len(h1), -1, dtype=np.int64)
        n = len(self.ids)
        if not n or not len(h1):
            return out
        order = np.argsort(h1)  # sorted probes: numpy's search narrows from the last hit, and memory is walked once
        lo = np.empty(len(h1), dtype=np.int64)
        lo[order] = np.searchsorted(self.h1, h1[order])
        at = np.minimum(lo, n - 1)
        same1 = self.h1[at] == h1
        found = same1 & (self.h2[at] == h2)
        out[found] = self.ids[at[found]]
        nxt = np.minimum(at + 1, n - 1)
        for j in np.flatnonzero(same1 & ~found & (nxt > at) & (self.h1[nxt] == h1)).tolist():  # rare: a shared first hash
            i = int(lo[j]) + 1
            while i < n and self.h1[i] == h1[j]:
                if self.h2[i] == h2[j]:
                    out[j] = self.ids[i]
                    break
                i += 1
        return out

    def find_one(self, h1: int, h2: int) -> int | None:
        """The id of one (h1, h2), or None."""
        i = int(np.searchsorted(self.h1, h1))
        while i < len(self.h1) and self.h1[i] == h1:
            if self.h2[i] == h2:
                return int(self.ids[i])
            i += 1
        return None

    def insert(self, h1: np.ndarray, h2: np.ndarray, ids: np.ndarray) -> None:
        """Insert rows of keys that are absent and distinct; one merge of sorted arrays."""
        order = np.argsort(h1)
        h1, h2, ids = h1[order], h2[order], ids[order]
        for i in np.flatnonzero(h1[1:] == h1[:-1]).tolist():  # rare: a first hash repeated among the new keys
            run = h2[i : int(np.searchsorted(h1, h1[i], side="right"))]
            if len(np.unique(run)) < len(run):
                raise StoreError(_COLLISION)
        at = np.searchsorted(self.h1, h1)
        self.h1 = np.insert(self.h1, at, h1)  # one array at a time: the old and new copies of only one coexist
        self.h2 = np.insert(self.h2, at, h2)
        self.ids = np.insert(self.ids, at, ids)
        nxt = np.minimum(at + np.arange(1, len(at) + 1), len(self.h1) - 1)  # the row after each inserted one
        for i in np.flatnonzero(self.h1[nxt] == h1).tolist():  # rare: a first hash already there (or repeated)
            lo, hi = np.searchsorted(self.h1, h1[i], side="left"), np.searchsorted(self.h1, h1[i], side="right")
            run = self.h2[lo:hi]
            if len(np.unique(run)) < len(run):
                raise StoreError(_COLLISION)


class KeyIndex:
    """Distinct string keys, each with the id it was added with (0, 1, 2, ... in order).

    Args:
        min_fold: keys waiting (in the dict, or in the bulk arrays) before they may be folded.
        share: they are folded once they exceed this share of the folded keys (the larger, the
            fewer rebuilds; the smaller, the less memory the dict takes).
    """

    def __init__(self, min_fold: int = 1 << 14, share: float = 0.125) -> None:
        self.min_fold = int(min_fold)
        self.share = float(share)
        self._recent: dict[str, int] = {}  # added one at a time
        self._young = _Sorted()  # added in bulk
        self._old = _Sorted()

    def __len__(self) -> int:
        return len(self._recent) + len(self._young) + len(self._old)

    def __contains__(self, key: str) -> bool:
        return self.get(key) is not None

    def get(self, key: str) -> int | None:
        """The id of ``key``, or None."""
        eid = self._recent.get(key)
        if eid is not None or not (len(self._young) or len(self._old)):
            return eid
        h1, h2 = hash(key), hash(_NUL + key)
        for part in (self._young, self._old):
            if len(part):
                found = part.find_one(h1, h2)
                if found is not None:
                    return found
        return None

    def add(self, key: str) -> int:
        """Add a key that is not present; returns its id (the number of keys before it)."""
        eid = len(self)
        self._recent[key] = eid
        if len(self._recent) > max(self.min_fold, self.share * len(self._old)):
            keys = list(self._recent)
            h1, h2 = _hashes(keys)
            self._old.insert(h1, h2, np.fromiter(self._recent.values(), dtype=np.int64, count=len(keys)))
            self._recent = {}
        return eid

    def lookup(self, keys: Sequence[str]) -> np.ndarray:
        """The ids of ``keys`` (int64), -1 for a key not present."""
        return self._lookup(keys)[0]

    def add_missing(self, keys: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Look up distinct keys and add the missing ones, in order, with the next ids.

        Returns:
            The id of every key (int64), and the positions of the keys that were added.
        """
        ids, h1, h2 = self._lookup(keys)
        new = np.flatnonzero(ids < 0)
        if not len(new):
            return ids, new
        start = len(self)
        ids[new] = np.arange(start, start + len(new), dtype=np.int64)
        nh1, nh2 = h1[new], h2[new]
        if len(np.unique(nh1)) < len(new) and len({keys[i] for i in new.tolist()}) < len(new):
            raise StoreError("entity keys added at once must be distinct")
        self._young.insert(nh1, nh2, ids[new])
        if len(self._young) > max(self.min_fold, self.share * len(self._old)):
            self._old.insert(self._young.h1, self._young.h2, self._young.ids)
            self._young = _Sorted()
        return ids, new

    def _lookup(self, keys: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = len(keys)
        if self._recent:
            ids = np.fromiter(map(self._recent.get, keys, [-1] * n), dtype=np.int64, count=n)
        else:
            ids = np.full(n, -1, dtype=np.int64)
        h1, h2 = _hashes(keys)
        for part in (self._young, self._old):
            todo = np.flatnonzero(ids < 0)
            if len(todo) and len(part):
                ids[todo] = part.find(h1[todo], h2[todo])
        return ids, h1, h2
