import math

import pytest
import torch

from kgclip.training.schedule import cosine_schedule, cosine_with_warmup


def test_warmup_then_cosine_by_hand():
    # warm-up of 4: 1/4, 2/4, 3/4, 4/4; then cosine over the 8 - 4 remaining steps down to 0.1
    got = [cosine_with_warmup(s, 4, 8, 0.1) for s in range(9)]
    want = [0.25, 0.5, 0.75, 1.0] + [0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * k / 4)) for k in range(1, 5)] + [0.1]
    assert got[:4] == want[:4]
    assert got[4] == pytest.approx(1.0)  # step 4: progress 0
    assert got[5:] == pytest.approx([0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * k / 4)) for k in range(1, 5)])
    assert cosine_with_warmup(100, 4, 8, 0.1) == pytest.approx(0.1)  # past the end: the floor
    assert cosine_with_warmup(0, 0, 10, 0.0) == pytest.approx(1.0)


def test_scheduler_scales_each_group_by_its_own_rate():
    p, q = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [p], "lr": 1.0}, {"params": [q], "lr": 0.01}])
    sched = cosine_schedule(opt, 2, 4, 0.0)
    assert [g["lr"] for g in opt.param_groups] == [0.5, 0.005]
    opt.step()
    sched.step()
    assert [g["lr"] for g in opt.param_groups] == [1.0, 0.01]
