import numpy as np
import torch

from kgclip.sampling.views import ViewIndex

# entities 0..6: concept A = {1, 4, 5}, concept B = {2, 6}; 0 and 3 are no views
CONCEPT = np.array([-1, 0, 1, -1, 0, 0, 1])


def test_groups_views_and_canonical():
    v = ViewIndex(CONCEPT)
    assert v.has_choice
    assert v.views(4).tolist() == [1, 4, 5] and v.views(6).tolist() == [2, 6]
    assert v.views(0).tolist() == [0] and v.views(3).tolist() == [3]
    assert v.canonical(torch.arange(7)).tolist() == [0, 1, 2, 3, 1, 1, 2]


def test_no_concepts_means_no_choice():
    v = ViewIndex(np.full(4, -1))
    assert not v.has_choice
    assert v.draw(torch.tensor([3, 0, 3]), torch.Generator().manual_seed(0)).tolist() == [3, 0, 3]
    assert not ViewIndex(np.array([0, 1, -1])).has_choice  # one view per concept: nothing to draw


def test_draw_stays_in_the_concept_one_view_per_concept_and_is_uniform():
    v = ViewIndex(CONCEPT)
    g = torch.Generator().manual_seed(0)
    ents = torch.tensor([1, 5, 0, 6, 4, 3, 2])
    counts = torch.zeros(7)
    for _ in range(3000):
        out = v.draw(ents, g)
        assert out[2] == 0 and out[5] == 3  # no concept: itself
        assert out[0] == out[1] == out[4] and int(out[0]) in (1, 4, 5)  # one draw per concept
        assert out[3] == out[6] and int(out[3]) in (2, 6)
        counts[out[0]] += 1
        counts[out[3]] += 1
    assert torch.allclose(counts[[1, 4, 5]] / 3000, torch.full((3,), 1 / 3), atol=0.04)
    assert torch.allclose(counts[[2, 6]] / 3000, torch.full((2,), 1 / 2), atol=0.04)


def test_draw_is_a_function_of_the_generator():
    v = ViewIndex(CONCEPT)
    ents = torch.arange(7).repeat(5)
    a = v.draw(ents, torch.Generator().manual_seed(3))
    b = v.draw(ents, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert any(not torch.equal(a, v.draw(ents, torch.Generator().manual_seed(s))) for s in range(4, 10))
