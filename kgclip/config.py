"""Configs as dataclasses: built from YAML mappings, overridable as ``key=value``, checked strictly.

An unknown key is an error that lists the valid keys near it; a value of the wrong type names the
key and the expected type. The loader checks, once, everything a field's type states:

- ``Literal["pad", "drop"]``: one of the listed choices;
- ``Annotated[int, Range(ge=1)]``: a number in range (``float`` values are also finite: ``nan`` and
  ``inf`` are refused for every float field);
- ``tuple[float, float]``: exactly that many items;
- ``dict[str, float]``: a mapping whose keys and values are checked as their types.

:func:`check` runs the same checks on a config built in code (``dataclasses.replace``).
"""

import dataclasses
import difflib
import math
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml

from kgclip.errors import ConfigError

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Range:
    """Bounds of a numeric field, used as ``Annotated[int, Range(ge=1)]``; None: unbounded."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def check(self, value: float, key: str) -> None:
        """Raise a ConfigError naming ``key`` if ``value`` is out of range."""
        for bound, ok, word in ((self.ge, lambda b: value >= b, ">="), (self.gt, lambda b: value > b, ">"),
                                (self.le, lambda b: value <= b, "<="), (self.lt, lambda b: value < b, "<")):
            if bound is not None and not ok(bound):
                shown = bound if isinstance(bound, int) else f"{bound:g}"
                raise ConfigError(f"{key}: must be {word} {shown}, got {value!r}")


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Annotated:
        out = _coerce(value, args[0], key)
        for meta in args[1:]:
            if isinstance(meta, Range) and out is not None:
                meta.check(out, key)
        return out
    if origin is Literal:
        if isinstance(value, bool) and {"on", "off"} & set(args):  # YAML 1.1 reads a bare off/on as a boolean
            value = "on" if value else "off"
        if value in args and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except ConfigError:
                if len([b for b in args if b is not type(None)]) == 1:
                    raise  # one candidate type: its own message is the precise one
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping of {tp.__name__} fields, got {value!r}")
        return from_dict(tp, value, prefix=f"{key}.")
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        kt, vt = args if len(args) == 2 else (Any, Any)
        return {_coerce(k, kt, f"{key} key {k!r}"): _coerce(v, vt, f"{key}.{k}") for k, v in value.items()}
    if origin in (list, tuple):
        if isinstance(value, str | bytes) or not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{key}: expected {len(args)} items, got {len(value)} ({value!r})")
            return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
        inner = args[0] if args else Any
        items = [_coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is float:
        number = None
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                pass
        if number is None:
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if not math.isfinite(number):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return number
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    return value


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Build dataclass ``cls`` from a mapping; unknown keys and wrong types are ConfigErrors."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping of {cls.__name__} fields, got {data!r}")
    hints = typing.get_type_hints(cls, include_extras=True)
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    for k in data:
        if k not in names:
            near = difflib.get_close_matches(k, names, n=3)
            hint = f"; did you mean {', '.join(prefix + n for n in near)}?" if near else ""
            raise ConfigError(f"unknown config key '{prefix}{k}'{hint} (valid keys: {', '.join(prefix + n for n in names)})")
    kwargs = {k: _coerce(v, hints[k], prefix + k) for k, v in data.items()}
    return cls(**kwargs)


def check(obj: T) -> T:
    """Run the loader's checks on a config dataclass built in code; returns an equal, checked copy.

    Raises:
        ConfigError: naming the first key whose value does not fit its field.
    """
    return from_dict(type(obj), to_dict(obj))


def field_defaults(cls: type) -> dict[str, Any]:
    """``{field: default}`` of a dataclass, for the fields that have a plain default."""
    return {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}


def to_dict(obj: Any) -> dict[str, Any]:
    """A plain mapping (tuples as lists) fit for YAML."""

    def plain(v: Any) -> Any:
        if isinstance(v, tuple | list):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(obj))


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` strings (values parsed as YAML) to a nested mapping (a copy)."""
    import copy

    out = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not key=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {p} is not a section")
        node[parts[-1]] = value
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: invalid YAML ({str(exc).splitlines()[0]})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not a UTF-8 text file ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read ({exc.strerror or exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level")
    return data


def load_yaml_section(spec: str | Path, relative_to: Path | None = None) -> dict[str, Any]:
    """``FILE.yaml`` or ``FILE.yaml#section`` (a mapping inside the file, e.g. a demo config's ``run``).

    A relative FILE that does not exist is looked up beside ``relative_to`` (another config).
    """
    path, _, section = str(spec).partition("#")
    p = Path(path)
    if relative_to is not None and not p.is_absolute() and not p.exists():
        p = relative_to.parent / p
    data = load_yaml(p)
    if section:
        if not isinstance(data.get(section), dict):
            raise ConfigError(f"{p}: no section {section!r}")
        data = data[section]
    return data
