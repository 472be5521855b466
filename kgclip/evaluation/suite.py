"""Run a set of tasks for one scorer and flatten the results into one row of columns."""

from pathlib import Path
from typing import Any

from kgclip.errors import KgclipError
from kgclip.evaluation.link_prediction import link_prediction, relation_prediction
from kgclip.evaluation.scorers import Scorer
from kgclip.evaluation.tasks import binding, retrieval, zero_shot
from kgclip.store.reader import KnowledgeStore
from kgclip.vocabulary import image_of_relation

TASKS = ("link", "relation", "zero_shot", "retrieval", "binding")


def evaluate(scorer: Scorer, store: KnowledgeStore, tasks: tuple[str, ...] | list[str] = TASKS, assets: str | Path | None = None,
             max_queries: int | None = None) -> dict[str, Any]:
    """Results of each task (nested). ``assets`` is the folder holding zero_shot.json / binding.json."""
    unknown = set(tasks) - set(TASKS)
    if unknown:
        raise KgclipError(f"unknown task(s) {sorted(unknown)}; known: {', '.join(TASKS)}")
    out: dict[str, Any] = {"model": scorer.name}
    if "link" in tasks:
        out["link"] = link_prediction(scorer, store, max_queries=max_queries)
    if "relation" in tasks:
        out["relation"] = relation_prediction(scorer, store, max_queries=max_queries)
    if "retrieval" in tasks:
        out["retrieval"] = retrieval(scorer, store)
    for name, fn in (("zero_shot", zero_shot), ("binding", binding)):
        if name not in tasks:
            continue
        path = Path(assets) / f"{name}.json" if assets else None
        if path is None or not path.is_file():
            out[name] = {}
            continue
        if name == "binding":
            out[name] = fn(scorer, path, image_of_relation(store))
        else:
            out[name] = fn(scorer, path)
    return out


def flat_metrics(result: dict[str, Any]) -> dict[str, float]:
    """One row: link_mrr, link_hits@k, link_<pair>_mrr, relation_acc, zero-shot, retrieval, binding."""
    row: dict[str, float] = {}
    if "link" in result:
        for k, v in result["link"]["overall"].items():
            if k != "count":
                row[f"link_{k}"] = v
        for pair, m in result["link"]["per_modality_pair"].items():
            row[f"link_mrr_{pair}"] = m["mrr"]
    if "relation" in result:
        row["relation_acc"] = result["relation"]["accuracy"]
    for name in ("zero_shot", "retrieval", "binding"):
        row.update(result.get(name, {}))
    return row
