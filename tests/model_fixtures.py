import pytest
import torch

from kgclip.model import KnowledgeCLIP, ModelConfig
from kgclip.model.clip import create_clip
from kgclip.sampling.content import EntityInputs
from kgclip.sampling.triplets import TripletBatch

TINY = ModelConfig(fusion_width=32, fusion_layers=1, fusion_heads=4, drop_path=0.0, max_text_tokens=8)


@pytest.fixture(scope="session")
def tiny_clip():
    torch.manual_seed(0)
    return create_clip("kgclip-tiny")


@pytest.fixture
def model(tiny_clip):
    import copy

    torch.manual_seed(0)
    bundle = copy.deepcopy(tiny_clip)
    return KnowledgeCLIP(TINY, num_relations=3, clip=bundle)


def hand_batch(model, with_g2e=True):
    """Entities: 0,1 images; 2,3,4 texts. Triplets cover all four modality pairs:
    (0 r0 1) img-img, (0 r1 2) img-text, (3 r2 1) text-img, (4 r0 2) text-text.
    G2E: in-edge (3 -> 1) for tail 1 and (0 -> 2) for tail 2 (not the batch's own triplets: relations differ)."""
    g = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, 64, 64, generator=g)
    texts = model.tokenizer(["a red circle", "left of", "a blue square"])
    inputs = EntityInputs(images, torch.tensor([0, 1]), texts, torch.tensor([2, 3, 4]))
    head = torch.tensor([0, 0, 3, 4])
    tail = torch.tensor([1, 2, 1, 2])
    ei = torch.tensor([[3, 0], [1, 2]]) if with_g2e else torch.empty(2, 0, dtype=torch.long)
    return TripletBatch(
        triplet=torch.arange(4), head=head + 100, relation=torch.tensor([0, 1, 2, 0]), tail=tail + 100,
        entities=torch.arange(5) + 100, modality=torch.tensor([0, 0, 1, 1, 1]), head_index=head, tail_index=tail,
        g2e_edge_index=ei, g2e_relation=torch.tensor([1, 2])[: ei.shape[1]], g2e_hop=torch.ones(ei.shape[1], dtype=torch.long), inputs=inputs,
    )


@pytest.fixture
def relation_tokens(model):
    return model.tokenizer(["is a", "left of", "image of"])
