import pytest
import torch

from kgclip.errors import KgclipError
from kgclip.finetune.data import ExampleLoader, eval_batches
from kgclip.finetune.images import ImageLoadError


def _load(i, seed):
    if i == 3:
        raise ImageLoadError("x/3.jpg", "image does not decode (OSError)")
    noise = torch.rand(1, generator=torch.Generator().manual_seed(seed)).item() if seed is not None else 0.0
    return i, noise


def _collate(indices, items):
    return {"x": torch.tensor([i for i, _ in items]), "noise": torch.tensor([n for _, n in items])}


def _loader(**kw):
    args = {"seed": 1, "augment": True, **kw}
    return ExampleLoader(10, 4, _load, _collate, lambda i: f"ex{i}", **args)


def _epoch(loader):
    return [b["x"].tolist() for b in loader]


def test_epochs_shuffle_cover_everything_and_repeat_exactly():
    a, b = _loader(), _loader()
    e1, e1b = _epoch(a), _epoch(b)
    assert e1 == e1b
    flat = sorted(x for batch in e1 for x in batch)
    assert flat == [0, 1, 2, 4, 5, 6, 7, 8, 9]  # example 3 fails to load and is dropped
    assert _epoch(a) != e1 and a.epoch == 2


def test_failed_examples_are_named_and_counted():
    batches = list(_loader())
    bad = [b for b in batches if b.dropped]
    assert len(bad) == 1 and bad[0].skipped == [("ex3 (x/3.jpg)", "image does not decode (OSError)")]
    assert len(bad[0]) == len(bad[0]["x"]) == bad[0].index.numel()


def test_resume_mid_epoch_yields_the_remaining_batches():
    full = _loader()
    it = iter(full)
    first = next(it)
    state = full.state_dict()
    rest = [(b["x"].tolist(), b["noise"].tolist()) for b in it]
    again = _loader()
    again.load_state_dict(state)
    assert [(b["x"].tolist(), b["noise"].tolist()) for b in again] == rest
    assert first["x"].tolist() not in [r[0] for r in rest]


def test_ranks_share_an_epoch_without_overlap():
    r0, r1 = _loader(rank=0, world_size=2), _loader(rank=1, world_size=2)
    a, b = r0.rank_order(0).tolist(), r1.rank_order(0).tolist()
    assert len(a) == len(b) == 5 and sorted(a + b) == list(range(10))


def test_augmentation_seeds_differ_per_example_and_epoch():
    x = _loader()
    e0 = [n for b in x for n in b["noise"].tolist()]
    e1 = [n for b in x for n in b["noise"].tolist()]
    assert len(set(e0)) == len(e0) and e0 != e1
    plain = [n for b in _loader(augment=False) for n in b["noise"].tolist()]
    assert set(plain) == {0.0}


def test_eval_batches_in_order_with_workers():
    out = [b["x"].tolist() for b in eval_batches(list(range(7)), 3, _load, _collate, str, num_workers=2)]
    assert out == [[0, 1, 2], [4, 5], [6]]


def test_a_batch_whose_every_example_fails_is_not_yielded_and_its_skips_ride_along():
    def load(i, seed):
        if i % 2:
            raise ImageLoadError(f"x/{i}.jpg", "image file missing")
        return i, 0.0

    # batch_size 1: the odd examples make batches with nothing in them (the task's loss got one: KeyError)
    loader = ExampleLoader(6, 1, load, _collate, lambda i: f"ex{i}", seed=3)
    first = list(loader)
    assert sorted(b["x"].item() for b in first) == [0, 2, 4] and all(len(b) == 1 for b in first)
    named = [w for b in first + list(loader) for w, _ in b.skipped]
    assert set(named) == {f"ex{i} (x/{i}.jpg)" for i in (1, 3, 5)}  # an epoch's trailing empty batches are named with the next


def test_an_epoch_without_any_loadable_example_is_one_error():
    def load(i, seed):
        raise ImageLoadError(f"x/{i}.jpg", "image does not decode (OSError)")

    loader = ExampleLoader(5, 2, load, _collate, lambda i: f"ex{i}")
    with pytest.raises(KgclipError, match=r"^none of the 5 training examples of an epoch could be loaded \(ex\d \(x/\d.jpg\): image does not decode"):
        next(iter(loader))


def test_one_loadable_example_is_enough_however_the_epochs_fall():
    def load(i, seed):
        if i:
            raise ImageLoadError(f"x/{i}.jpg", "image file missing")
        return i, 0.0

    loader = ExampleLoader(2, 1, load, _collate, lambda i: f"ex{i}", seed=0)
    got = [b["x"].tolist() for _, b in zip(range(20), _forever(loader), strict=False)]
    assert got == [[0]] * 20  # an epoch ending and the next starting with the failing example is no error


def _forever(loader):
    while True:
        yield from loader
