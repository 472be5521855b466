import numpy as np
import pytest

from kgclip.graph import KnowledgeGraph
from kgclip.store import KnowledgeStore, SplitConfig, StoreWriter


def random_store(path, n_img=30, n_txt=40, n_rel=4, n_tri=600, seed=0, image_root=None):
    rng = np.random.default_rng(seed)
    with StoreWriter(path, image_roots={"r": str(image_root or path.parent)}, split=SplitConfig(ratios=(0.8, 0.1, 0.1))) as w:
        ids = [w.add_entity(f"i{i}", "image", image=f"img{i % 3}.png", source="r") for i in range(n_img)]
        ids += [w.add_entity(f"t{i}", "text", text=f"word {i}", source="r") for i in range(n_txt)]
        for r in range(n_rel):
            w.add_relation(f"r{r}", f"relation {r}")
        n = n_img + n_txt
        w.add_triplets(rng.integers(0, n, n_tri), rng.integers(0, n_rel, n_tri), rng.integers(0, n, n_tri), source="r")
    return KnowledgeStore(path)


@pytest.fixture
def graph(tmp_path):
    return KnowledgeGraph.from_store(random_store(tmp_path / "s"))
