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


def _edge_set(s):
    return sorted(zip(s.src.tolist(), s.dst.tolist(), s.edge.tolist(), s.edge_type.tolist(), s.hop.tolist(), strict=True))


def test_sample_edges_per_call_generator(graph):
    data = graph.to_hetero_data()
    s = HeteroNeighborSampler(data, [2, 2], seed=0)
    seeds = {"text": torch.arange(6), "image": torch.arange(4)}
    a = s.sample_edges(seeds, torch.Generator().manual_seed(5))
    s.sample_edges(seeds)  # moves the sampler's own generator: no effect on calls that bring theirs
    b = HeteroNeighborSampler(data, [2, 2], seed=9).sample_edges(seeds, torch.Generator().manual_seed(5))
    assert _edge_set(a) == _edge_set(b) and a.src.numel() > 0
    others = [_edge_set(s.sample_edges(seeds, torch.Generator().manual_seed(k))) for k in range(6, 10)]
    assert any(o != _edge_set(a) for o in others)


def test_sample_edges_structure(graph):
    """Every edge exists with its type; fan-out per node, hop and edge type; hop 2 expands exactly the nodes hop 1 reached first."""
    data = graph.to_hetero_data()
    s = HeteroNeighborSampler(data, [3, 2], seed=0)
    lay = s.layout
    seeds = {"text": torch.tensor([0, 5, 7]), "image": torch.tensor([2])}
    out = s.sample_edges(seeds, torch.Generator().manual_seed(1))
    for i, et in enumerate(lay.edge_types):
        sel = out.edge_type == i
        local = out.edge[sel] - lay.edge_offset[i]
        assert ((local >= 0) & (local < data[et].edge_index.shape[1])).all()
        ei = data[et].edge_index[:, local]
        assert torch.equal(ei[0] + lay.node_offset[lay.node_type_index(et[0])], out.src[sel])
        assert torch.equal(ei[1] + lay.node_offset[lay.node_type_index(et[2])], out.dst[sel])
    for hop, k in ((1, 3), (2, 2)):
        at = out.hop == hop
        if at.any():
            assert torch.bincount(out.dst[at] * 8 + out.edge_type[at]).max() <= k
    seed_joint = set(torch.cat([lay.joint(nt, x) for nt, x in seeds.items()]).tolist())
    assert set(out.dst[out.hop == 1].tolist()) <= seed_joint
    reached_first = set(out.src[out.hop == 1].tolist()) - seed_joint
    assert set(out.dst[out.hop == 2].tolist()) <= reached_first


def test_flat_and_pyg_outputs_agree(graph):
    """sample_from_nodes (PyG's output) and sample_edges (flat) give the same edges for the same random state."""
    data = graph.to_hetero_data()
    from torch_geometric.sampler import NodeSamplerInput

    from kgclip.sampling.neighbor import flatten_output

    a, b = HeteroNeighborSampler(data, [2, 3], seed=4), HeteroNeighborSampler(data, [2, 3], seed=4)
    seeds = torch.tensor([6, 1, 3])
    out = a.sample_from_nodes(NodeSamplerInput(input_id=None, node=seeds, input_type="text"))
    assert torch.equal(out.node["text"][:3], seeds)  # seeds first, in the given order (NodeLoader relies on it)
    flat = b.sample_edges({"text": seeds})
    assert _edge_set(flatten_output(out, a.layout)) == _edge_set(flat)
    assert sum(sum(v) for v in out.num_sampled_edges.values()) == flat.src.numel()


def test_module_sample_edges_drives_a_pyg_style_sampler(graph):
    """The path PyG's NeighborSampler takes (global torch RNG, edge ids through edge_permutation):
    seeded from the call's generator, global RNG state left as it was."""
    from torch_geometric.sampler import BaseSampler

    from kgclip.sampling.neighbor import JointLayout, sample_edges

    data = graph.to_hetero_data()
    ours = HeteroNeighborSampler(data, [2])
    lay = JointLayout.of(data)
    perms = {et: torch.randperm(data[et].edge_index.shape[1], generator=torch.Generator().manual_seed(0)) for et in lay.edge_types}

    class PygLike(BaseSampler):
        edge_permutation = perms
        sample_from_nodes = sample_from_edges = None

        def _sample(self, seed, seed_time=None):
            g = torch.Generator().manual_seed(int(torch.randint(0, 2**31, (1,))))  # draws from the global RNG, as pyg-lib does
            out, _ = ours._output(seed, g)
            out.edge = {et: torch.argsort(perms[et])[e] for et, e in out.edge.items()}  # PyG reports permuted edge ids
            return out

    seeds = lay.joint("text", torch.tensor([0, 2, 4]))
    torch.manual_seed(123)
    before = torch.get_rng_state()
    x = sample_edges(PygLike(), lay, seeds, torch.Generator().manual_seed(8))
    assert torch.equal(torch.get_rng_state(), before)
    y = sample_edges(PygLike(), lay, seeds, torch.Generator().manual_seed(8))
    assert _edge_set(x) == _edge_set(y) and x.src.numel() > 0
    for i, et in enumerate(lay.edge_types):  # edge ids point at the graph's own edges again
        sel = x.edge_type == i
        local = x.edge[sel] - lay.edge_offset[i]
        assert torch.equal(data[et].edge_index[0, local] + lay.node_offset[lay.node_type_index(et[0])], x.src[sel])
        assert torch.equal(data[et].edge_index[1, local] + lay.node_offset[lay.node_type_index(et[2])], x.dst[sel])


def test_edges_in_any_order_give_the_same_neighbourhoods(graph):
    """The sampler sorts edges that do not come sorted by destination; edge ids stay the graph's."""
    data = graph.to_hetero_data()
    shuffled = data.clone()
    perms = {}
    for et in data.edge_types:
        perms[et] = torch.randperm(data[et].edge_index.shape[1], generator=torch.Generator().manual_seed(1))
        shuffled[et].edge_index = data[et].edge_index[:, perms[et]]
    a, b = HeteroNeighborSampler(data, [-1, -1]), HeteroNeighborSampler(shuffled, [-1, -1])
    assert a.csr.eid is None and b.csr.eid is not None
    seeds = {"text": torch.tensor([1, 3]), "image": torch.tensor([0])}
    x, y = a.sample_edges(seeds), b.sample_edges(seeds)
    lay = a.layout

    def graph_edges(s, perm_of):
        out = set()
        for src, dst, e, t, hop in zip(s.src.tolist(), s.dst.tolist(), s.edge.tolist(), s.edge_type.tolist(), s.hop.tolist(), strict=True):
            et = lay.edge_types[t]
            local = e - int(lay.edge_offset[t])
            out.add((src, dst, int(perm_of[et][local]) if perm_of else local, hop))
        return out

    assert graph_edges(x, None) == graph_edges(y, perms) and x.src.numel() > 0
