"""Shared fixtures: small stores built through the real writer."""

import pytest

from kgclip.store import SplitConfig, StoreWriter

pytest_plugins = ["tests.model_fixtures"]


def write_toy_store(path, *, split=None, image_root=None):
    """A store of 3 text and 2 image entities, 3 relations, 6 triplets across all modality pairs.

    Returns the manifest. Entity ids: 0 t:dog, 1 t:animal, 2 i:dog.jpg, 3 i:cat.jpg, 4 t:cat.
    """
    roots = {"toy": str(image_root)} if image_root else {"toy": "images"}
    with StoreWriter(path, image_roots=roots, split=split or SplitConfig(ratios=(1, 0, 0))) as w:
        dog = w.add_entity("t:dog", "text", text="dog", source="toy")
        animal = w.add_entity("t:animal", "text", text="animal", source="toy")
        img_dog = w.add_entity("i:dog.jpg", "image", image="dog.jpg", bbox=(0, 0, 8, 8), image_size=(16, 16), source="toy")
        img_cat = w.add_entity("i:cat.jpg", "image", image="cat.jpg", source="toy")
        cat = w.add_entity("t:cat", "text", text="cat", source="toy")
        isa = w.add_relation("/r/IsA", "is a")
        of = w.add_relation("image of", "image of")
        near = w.add_relation("near", "near")
        w.add_triplet(dog, isa, animal, source="toy")
        w.add_triplet(cat, isa, animal, source="toy")
        w.add_triplet(img_dog, of, dog, source="toy")
        w.add_triplet(img_cat, of, cat, source="toy")
        w.add_triplet(img_dog, near, img_cat, source="toy")
        w.add_triplet(animal, of, img_cat, source="toy")
        return w.close()


@pytest.fixture
def toy_store(tmp_path):
    path = tmp_path / "toy"
    write_toy_store(path)
    return path
