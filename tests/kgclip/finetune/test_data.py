import torch

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
