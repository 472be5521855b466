"""What a converter is: one class per source, its arguments declared as dataclass fields.

A converter names itself (``name``, the ``kgclip prepare`` verb), the source it writes
(``source``), the image folders its image paths are relative to (``image_roots``) and converts
with one signature, ``convert(writer, conv)``. :mod:`data_prep.registry` finds converters by
name; the command line builds each verb's options from the fields (:func:`option` carries the
help text), so a converter never sees argparse::

    VisualSem(nodes="nodes.v2.json", tuples="tuples.v2.json", glosses="nodes.glosses.json",
              images="visualsem/images").write("stores/visualsem")
"""

import dataclasses
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from data_prep.common import Conversion
from kgclip.errors import SourceError
from kgclip.store import SplitConfig, StoreWriter


def option(default: Any = None, *, help: str, positional: bool = False, flag: str | None = None, **argparse_kwargs: Any) -> Any:
    """A converter argument: a dataclass field with its command-line help.

    Args:
        default: the default value (a list default is copied per instance).
        help: one line for ``--help``.
        positional: a positional argument instead of ``--name``.
        flag: the option's spelling when it is not ``--field-name`` (``--no-check-images``).
        argparse_kwargs: passed on as they are (``required``, ``nargs``, ``type``, ``choices``).
    """
    meta = {"help": help, "positional": positional, "flag": flag, "argparse": argparse_kwargs}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def resolved(path: str | os.PathLike) -> str:
    """An absolute path, as image roots are recorded."""
    return str(Path(path).resolve())


@dataclasses.dataclass
class Converter(ABC):
    """One source's conversion into a knowledge store.

    Subclasses are dataclasses whose fields are the arguments they take (declared with
    :func:`option`); they check argument combinations in :meth:`check` and convert in
    :meth:`convert`.
    """

    name: ClassVar[str]
    """The verb of ``kgclip prepare`` and the name the registry finds the converter by."""
    description: ClassVar[str]
    """One line for ``kgclip prepare --help``."""
    source_name: ClassVar[str | None] = None
    """The source written in the store, when it is not ``name``."""

    def __post_init__(self) -> None:
        for f in self.options():
            kw = f.metadata["argparse"]
            needed = kw.get("required") or (f.metadata["positional"] and kw.get("nargs") not in ("?", "*"))
            if needed and getattr(self, f.name) is None:
                raise SourceError(f"{self.name}: {f.name} is required")
        self.check()

    def check(self) -> None:
        """Raise :class:`kgclip.errors.SourceError` for a wrong combination of arguments (none by default)."""
        return None

    @property
    def source(self) -> str:
        """The source name written in the store (its entities', triplets' and manifest's)."""
        return self.source_name or self.name

    def image_roots(self) -> dict[str, str]:
        """Source -> folder that its image paths are relative to (empty for text-only sources)."""
        return {}

    @abstractmethod
    def convert(self, writer: StoreWriter, conv: Conversion) -> None:
        """Read the source's files into ``writer``, counting records in ``conv``."""

    @classmethod
    def options(cls) -> list[dataclasses.Field]:
        """The declared arguments, in order."""
        return [f for f in dataclasses.fields(cls) if "help" in f.metadata]

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> "Converter":
        """Build from a mapping holding (at least) every declared argument, e.g. parsed options."""
        return cls(**{f.name: values[f.name] for f in cls.options() if f.name in values})

    def write(
        self,
        out: str | os.PathLike,
        *,
        split: SplitConfig | None = None,
        settings: dict[str, Any] | None = None,
        overwrite: bool = False,
        inputs: Sequence[str | os.PathLike] = (),
        max_bad_fraction: float = 0.01,
        limit: int | None = None,
        echo: Callable[[str], None] | None = None,
    ) -> tuple[dict[str, Any], Conversion]:
        """Convert into a new store at ``out``; returns its manifest and the record counts.

        Nothing is left at ``out`` when the conversion fails (a bad input, too many bad records,
        no record kept).
        """
        with StoreWriter(out, image_roots=self.image_roots(), split=split, settings=settings, overwrite=overwrite,
                         inputs=[str(p) for p in inputs]) as w:
            conv = Conversion(self.source, w, max_bad_fraction=max_bad_fraction, limit=limit, echo=echo)
            self.convert(w, conv)
            conv.check(final=True)
            conv.check_kept()
            w.note_source(self.source, read=conv.read, kept=conv.kept)
            manifest = w.close()
        return manifest, conv
