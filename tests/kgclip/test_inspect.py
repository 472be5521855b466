import matplotlib
import pytest
from PIL import Image

from kgclip.inspect import UnknownEntityError, draw_neighbourhood, find_entities, neighbourhood, resolve_entity, triplet_sample_html
from kgclip.store import KnowledgeStore
from tests.conftest import write_toy_store


@pytest.fixture
def store(tmp_path):
    (tmp_path / "images").mkdir()
    for name in ("dog.jpg", "cat.jpg"):
        Image.new("RGB", (16, 16), (200, 10, 10)).save(tmp_path / "images" / name)
    write_toy_store(tmp_path / "toy", image_root=tmp_path / "images")
    return KnowledgeStore(tmp_path / "toy")


def test_find_by_key_and_text(store):
    assert find_entities(store, "t:cat")["entity_id"].tolist() == [4]
    assert set(find_entities(store, "CAT")["key"]) == {"t:cat", "i:cat.jpg"}
    assert resolve_entity(store, "animal") == 1


def test_unknown_entity_suggests_nearest_keys(store):
    with pytest.raises(UnknownEntityError, match=r"no entity matches 't:dgo'.*nearest: t:dog"):
        resolve_entity(store, "t:dgo")


def test_neighbourhood_content_matches_the_store(store):
    nb = neighbourhood(store, "t:dog", hops=1)
    assert set(zip(nb.triplets["head"], nb.triplets["relation"], nb.triplets["tail"], strict=True)) == {
        ("t:dog", "is a", "t:animal"), ("i:dog.jpg", "image of", "t:dog")}
    assert not nb.truncated and nb.total == 2
    nb2 = neighbourhood(store, "t:dog", hops=2, max_triplets=3)
    assert nb2.truncated and len(nb2.triplets) == 3 and nb2.total == 5


def test_drawing_has_the_expected_nodes(store, tmp_path):
    nb = neighbourhood(store, "t:dog", hops=2)
    _, n = draw_neighbourhood(store, nb, png=str(tmp_path / "n.png"))
    assert n == nb.graph.number_of_nodes() == 5
    assert (tmp_path / "n.png").stat().st_size > 1000
    _, n_cut = draw_neighbourhood(store, nb, max_nodes=2)
    assert n_cut == 2
    matplotlib.pyplot.close("all")


def test_sample_table_has_thumbnails(store):
    html = triplet_sample_html(store, n=6)
    assert html.count("<tr>") == 7 and "data:image/png;base64" in html
