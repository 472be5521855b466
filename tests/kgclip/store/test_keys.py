import builtins

import numpy as np
import pytest

from kgclip.errors import StoreError
from kgclip.store import keys as keys_module
from kgclip.store.keys import KeyIndex


def _fill(index, keys, bulk):
    if bulk:
        for i in range(0, len(keys), 7):
            index.add_missing(keys[i : i + 7])
    else:
        for k in keys:
            assert index.get(k) is None
            index.add(k)


@pytest.mark.parametrize("bulk", [False, True])
def test_ids_follow_the_order_of_addition_across_folds(bulk):
    keys = [f"k{i}" for i in range(100)]
    index = KeyIndex(min_fold=4, share=0.5)  # folds often
    _fill(index, keys, bulk)
    assert len(index) == 100
    assert [index.get(k) for k in keys] == list(range(100))
    assert index.lookup([*keys[::-1], "absent", "k100"]).tolist() == [*list(range(99, -1, -1)), -1, -1]
    assert "k5" in index and "k" not in index and index.get("") is None


def test_add_missing_returns_every_id_and_the_positions_added():
    index = KeyIndex(min_fold=2)
    index.add("b")
    ids, new = index.add_missing(["a", "b", "c"])
    assert ids.tolist() == [1, 0, 2] and new.tolist() == [0, 2]
    ids, new = index.add_missing(["c", "a"])
    assert ids.tolist() == [2, 1] and new.tolist() == []
    with pytest.raises(StoreError, match="distinct"):
        index.add_missing(["d", "e", "d"])


def test_keys_sharing_the_first_hash_stay_apart(monkeypatch):
    # every key gets the same first hash; the second (of "\0" + key) still tells them apart
    real = builtins.hash
    monkeypatch.setattr(keys_module, "hash", lambda s: real(s) if s.startswith("\0") else 42, raising=False)
    keys = [f"k{i}" for i in range(50)]
    for bulk in (False, True):
        index = KeyIndex(min_fold=3, share=0.5)
        _fill(index, keys, bulk)
        assert index.lookup(keys).tolist() == list(range(50)) and index.get("k49") == 49 and index.get("x") is None
        assert index.lookup(["x", "k0"]).tolist() == [-1, 0]


def test_two_keys_agreeing_in_both_hashes_are_refused(monkeypatch):
    monkeypatch.setattr(keys_module, "hash", lambda s: 7, raising=False)  # every key has the same two hashes
    index = KeyIndex(min_fold=1)
    index.add("a")
    with pytest.raises(StoreError, match="both 64-bit hashes"):
        index.add("b")  # two keys wait in the dict; folding them into the arrays finds them equal
    with pytest.raises(StoreError, match="both 64-bit hashes"):
        KeyIndex().add_missing(["a", "b"])


def test_many_keys_are_compact():
    index = KeyIndex()
    keys = [f"conceptnet:/c/en/term_{i}" for i in range(200_000)]
    for i in range(0, len(keys), 50_000):
        index.add_missing(keys[i : i + 50_000])
    assert index.lookup(keys[::1000]).tolist() == list(range(0, 200_000, 1000))
    assert not index._recent and len(index._young) + len(index._old) == 200_000
    arrays = [p.h1.nbytes + p.h2.nbytes + p.ids.nbytes for p in (index._young, index._old)]
    assert sum(arrays) == 24 * 200_000
    assert np.all(np.diff(index._old.h1) >= 0)
