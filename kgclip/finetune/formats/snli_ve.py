"""SNLI-VE (visual entailment): one JSON object per line, as released by necla-ml/SNLI-VE.

Fields used: ``Flikr30kID`` (sic: the Flickr30k image, ``"2248275918.jpg"``; a bare id gets
``.jpg``), ``sentence2`` (the hypothesis), ``gold_label`` (``entailment``, ``neutral`` or
``contradiction``; ``-``, no majority, is skipped) and ``pairID`` (the record's id, else its line).
"""

import json
from dataclasses import dataclass
from pathlib import Path

from kgclip.errors import KgclipError
from kgclip.skips import Skips

LABELS = ("entailment", "neutral", "contradiction")


@dataclass
class VeExample:
    pair_id: str
    image: str
    hypothesis: str
    label: int


def read_snli_ve(path: str | Path, images: dict[str, Path], skips: Skips) -> list[VeExample]:
    """The usable records of a SNLI-VE jsonl file.

    Args:
        path: the jsonl file.
        images: image files by name (see :func:`kgclip.finetune.images.index_by_name`).
        skips: where unusable lines are counted.
    """
    path = Path(path)
    if not path.is_file():
        raise KgclipError(f"{path}: no such file")
    out: list[VeExample] = []
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise KgclipError(f"{path}: cannot read ({exc.strerror or exc})") from None
    with f:
        for lineno, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                rec = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                skips.add(where, "not UTF-8")
                continue
            except json.JSONDecodeError as exc:
                skips.add(where, f"not JSON ({exc.msg})")
                continue
            if not isinstance(rec, dict):
                skips.add(where, "not a JSON object")
                continue
            image, hyp, label = rec.get("Flikr30kID"), rec.get("sentence2"), rec.get("gold_label")
            if not isinstance(image, str | int) or isinstance(image, bool) or not str(image).strip():
                skips.add(where, "Flikr30kID missing")
            elif not isinstance(hyp, str) or not hyp.strip():
                skips.add(where, "sentence2 missing")
            elif label not in LABELS:
                skips.add(where, f"gold_label {label!r} is not one of {', '.join(LABELS)}")
            else:
                name = str(image).strip()
                name = name if "." in name else f"{name}.jpg"
                file = images.get(name)
                if file is None:
                    skips.add(where, f"image {name} not found")
                    continue
                pid = rec.get("pairID")
                out.append(VeExample(str(pid) if pid is not None else f"line{lineno}", str(file), hyp, LABELS.index(label)))
    if not out:
        raise KgclipError(f"{path}: no usable SNLI-VE record; {skips.summary() or 'the file is empty'}")
    return out
