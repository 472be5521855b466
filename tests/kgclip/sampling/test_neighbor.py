import pytest
import torch
from torch_geometric.loader import LinkLoader, NodeLoader

from kgclip.sampling import HeteroNeighborSampler, make_sampler, pyg_lib_available


def test_node_sampling_subgraph_is_valid(graph):
    data = graph.to_hetero_data()
    s = HeteroNeighborSampler(data, [3, 2], seed=0)
    seeds = torch.arange(10)
    from torch_geometric.sampler import NodeSamplerInput

    out = s.sample_from_nodes(NodeSamplerInput(input_id=seeds, node=seeds, input_type="text"))
    assert torch.equal(out.node["text"][:10], seeds)
    for nt, nodes in out.node.items():
        assert nodes.unique().numel() == nodes.numel(), f"node twice in {nt}"
    for et in data.edge_types:
        ei = data[et].edge_index
        existing = set(zip(ei[0].tolist(), ei[1].tolist(), strict=True))
        gs, gd = out.node[et[0]][out.row[et]], out.node[et[2]][out.col[et]]
        assert set(zip(gs.tolist(), gd.tolist(), strict=True)) <= existing
        assert torch.equal(ei[0][out.edge[et]], gs) and torch.equal(ei[1][out.edge[et]], gd)
        # hop 1 fan-out: at most 3 in-edges per seed per edge type
        if et[2] == "text" and out.num_sampled_edges[et][0]:
            hop1 = out.col[et][: out.num_sampled_edges[et][0]]
            assert torch.bincount(hop1).max() <= 3


def test_node_loader_accepts_it(graph):
    data = graph.to_hetero_data()
    loader = NodeLoader(data, node_sampler=HeteroNeighborSampler(data, [2]), input_nodes=("image", torch.arange(8)), batch_size=4)
    batches = list(loader)
    assert len(batches) == 2
    b = batches[0]
    assert b["image"].batch_size == 4 and torch.equal(b["image"].n_id[:4], torch.arange(4))
    assert b["image", "rel", "text"].relation.numel() == b["image", "rel", "text"].edge_index.shape[1]


def test_link_loader_accepts_it(graph):
    data = graph.to_hetero_data()
    et = ("text", "rel", "image")
    loader = LinkLoader(data, link_sampler=HeteroNeighborSampler(data, [2]), edge_label_index=(et, data[et].edge_index[:, :6]), batch_size=3)
    b = next(iter(loader))
    eli = b[et].edge_label_index
    assert eli.shape == (2, 3)
    gsrc, gdst = b["text"].n_id[eli[0]], b["image"].n_id[eli[1]]
    assert torch.equal(torch.stack([gsrc, gdst]), data[et].edge_index[:, :3])


def test_same_seed_same_subgraph(graph):
    data = graph.to_hetero_data()
    from torch_geometric.sampler import NodeSamplerInput

    inp = NodeSamplerInput(input_id=None, node=torch.arange(5), input_type="text")
    a = HeteroNeighborSampler(data, [3, 3], seed=3).sample_from_nodes(inp)
    b = HeteroNeighborSampler(data, [3, 3], seed=3).sample_from_nodes(inp)
    for nt in a.node:
        assert torch.equal(a.node[nt], b.node[nt])


@pytest.mark.skipif(not pyg_lib_available(), reason="pyg-lib is not installed (it is not on the package index)")
def test_same_distribution_as_pyg_lib(graph):
    """Where pyg-lib is installed, make_sampler uses it; both samplers give each in-edge the same chance."""
    from torch_geometric.sampler import NodeSamplerInput

    data = graph.to_hetero_data()
    seeds = torch.arange(5).repeat(400)
    ours = HeteroNeighborSampler(data, [2]).sample_from_nodes(NodeSamplerInput(None, seeds, input_type="text"))
    theirs = make_sampler(data, [2]).sample_from_nodes(NodeSamplerInput(None, seeds, input_type="text"))
    for et in data.edge_types:
        if et[2] != "text":
            continue
        a = torch.bincount(ours.edge[et], minlength=data[et].edge_index.shape[1]).double()
        b = torch.bincount(theirs.edge[et], minlength=data[et].edge_index.shape[1]).double()
        if a.sum() > 0:
            assert ((a / a.sum() - b / b.sum()).abs().max()) < 0.05
