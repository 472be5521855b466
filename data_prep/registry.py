"""Converters found by name (as PyKEEN's ``class_resolver``): ``converter_class("visual-genome")``.

One class per source (:class:`data_prep.base.Converter`); the names are the ``kgclip prepare``
verbs. Lookup ignores case, ``-`` and ``_``; an unknown name is an error listing the known ones.
"""

from data_prep.base import Converter
from data_prep.conceptnet import ConceptNet
from data_prep.pairs import Pairs
from data_prep.triples import Triples
from data_prep.visual_genome import VisualGenome
from data_prep.visualsem import VisualSem
from kgclip.errors import ConfigError

CONVERTERS: dict[str, type[Converter]] = {cls.name: cls for cls in (ConceptNet, VisualGenome, VisualSem, Pairs, Triples)}
"""Verb -> converter class, in the order ``kgclip prepare --help`` lists them."""


def _normalise(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "")


_BY_NORMALISED = {_normalise(n): cls for n, cls in CONVERTERS.items()}


def converter_class(name: str) -> type[Converter]:
    """The converter class registered as ``name`` (``visual-genome``, ``visual_genome`` and ``VisualGenome`` alike)."""
    cls = _BY_NORMALISED.get(_normalise(name))
    if cls is None:
        raise ConfigError(f"unknown source {name!r}; known sources: {', '.join(CONVERTERS)}")
    return cls
