"""Link prediction: each test triplet queried both ways, filtered realistic ranks, both sides.

(h, r, ?) ranks the true tail among all entities of the tail's modality; (?, r, t) the true head
among all entities of the head's modality. Other true answers from train + valid + test are
filtered. Facts hold between concepts: entities that are views of one concept (the store's
``concept`` column, e.g. a VisualSem synset's images and glosses) share them, so a query asked
of any view of a concept knows the answers of all its views, and every view of an answer's
concept is a known answer; the other views of the true answer's concept (its siblings) are
filtered. Entities without a concept (or a store without the column) stand for themselves.
Results: overall, per relation and per modality pair.
"""

import numpy as np
import pandas as pd
import torch

from kgclip.evaluation.ranking import filtered_ranks, rank_metrics
from kgclip.evaluation.scorers import Scorer
from kgclip.progress import bar
from kgclip.store.reader import KnowledgeStore
from kgclip.typing import IMAGE, MODALITIES, MODALITY_CODE, TEXT


def concept_groups(entities: pd.DataFrame) -> np.ndarray:
    """A group id per entity: views of one concept share one; an entity without a concept is its own.

    Args:
        entities: the store's entity table, rows in entity-id order (``concept`` may be missing).
    """
    n = len(entities)
    groups = np.arange(n, dtype=np.int64)
    if "concept" in entities.columns:
        concept = entities["concept"]
        has = concept.notna().to_numpy()
        if has.any():
            codes, _ = pd.factorize(concept[has])
            groups[has] = n + codes
    return groups


def _filter_pairs(queries: pd.DataFrame, known: pd.DataFrame, on: list[str], answer: str, cand_group: pd.DataFrame) -> tuple[torch.Tensor, torch.Tensor]:
    """(query row, candidate position) of every known answer of each query.

    ``queries`` and ``known`` carry concept groups (``hg``, ``tg``) in place of entities: a known
    triplet answers a query when it shares the query's ``on`` columns, and every candidate of the
    answer's group (``cand_group``: ``group``, ``pos``) is a known answer.
    """
    q = queries[on].reset_index(drop=True).reset_index(names="qrow")
    m = q.merge(known[[*on, answer]].drop_duplicates(), on=on, how="inner")[["qrow", answer]]
    m = m.merge(cand_group, left_on=answer, right_on="group", how="inner")
    return torch.from_numpy(m["qrow"].to_numpy().copy()), torch.from_numpy(m["pos"].to_numpy().copy())


def link_prediction(scorer: Scorer, store: KnowledgeStore, split: str = "test", max_queries: int | None = None, chunk: int = 1024,
                    max_candidate_bytes: int = 2**30) -> dict:
    """Filtered link prediction of ``split`` triplets; returns overall, per-relation and per-modality-pair metrics.

    A score is the dot product of a query and a candidate vector (the scorer's vectors are unit
    length, so it is their cosine).

    Memory: the scorer's candidate matrix Y(-,-,t) ([entities, D]); for head prediction, the
    candidates Y(h, r, -) of as many relations at once as fit in ``max_candidate_bytes`` (at least
    one: [entities of a modality, D] each; asking for several relations in one call lets the
    scorer encode each entity once for all of them); and ``chunk`` x candidates scores.
    """
    t = store.triplets
    test = t[t["split"] == split][["head_id", "relation_id", "tail_id"]].reset_index(drop=True)
    if max_queries is not None and len(test) > max_queries:
        test = test.sample(n=max_queries, random_state=0).reset_index(drop=True)
    group = concept_groups(store.entities)
    known = pd.DataFrame({"hg": group[t["head_id"].to_numpy()], "relation_id": t["relation_id"].to_numpy(), "tg": group[t["tail_id"].to_numpy()]})
    test_g = test.assign(hg=group[test["head_id"].to_numpy()], tg=group[test["tail_id"].to_numpy()])
    modality = np.where(store.entities["modality"].to_numpy(dtype=object) == MODALITIES[TEXT], TEXT, IMAGE).astype(np.int64)
    n = len(modality)
    ranks = {"tail": np.full(len(test), np.nan), "head": np.full(len(test), np.nan)}
    for code in MODALITY_CODE.values():
        cand_ids = np.flatnonzero(modality == code)
        if cand_ids.size == 0:
            continue
        cand_pos = np.full(n, -1, dtype=np.int64)
        cand_pos[cand_ids] = np.arange(cand_ids.size)
        cand_group = pd.DataFrame({"group": group[cand_ids], "pos": np.arange(cand_ids.size)})
        cand_t = torch.from_numpy(cand_ids)
        # (h, r, ?): candidates Y(-,-,t) once per entity; queries Y(h,r,-).
        sel = np.flatnonzero(modality[test["tail_id"].to_numpy()] == code)
        if sel.size:
            q = test_g.iloc[sel]
            cands = scorer.candidates(cand_t)
            qv = scorer.queries(torch.tensor(q["head_id"].tolist()), torch.tensor(q["relation_id"].tolist()))
            fq, fc = _filter_pairs(q, known, ["hg", "relation_id"], "tg", cand_group)
            true = torch.from_numpy(cand_pos[q["tail_id"].to_numpy()])
            ranks["tail"][sel] = filtered_ranks(qv.cpu(), cands.cpu(), true, fq, fc, normalize=False, chunk=chunk).numpy()
            del cands
        # (?, r, t): candidates Y(h, r, -) for every h of the modality, some relations at a time; query Y(-,-,t).
        sel = np.flatnonzero(modality[test["head_id"].to_numpy()] == code)
        if sel.size:
            q_all = test_g.iloc[sel]
            relations = np.unique(q_all["relation_id"].to_numpy())
            width = scorer.candidates(cand_t[:1]).shape[1]
            at_once = int(max(1, min(len(relations), max_candidate_bytes // max(1, cand_ids.size * width * 4))))
            groups = [relations[i : i + at_once] for i in range(0, len(relations), at_once)]
            for rels in bar(groups, desc=f"{scorer.name}: head prediction", unit="relation group", leave=False):
                cands_all = scorer.queries(cand_t.repeat(len(rels)), torch.from_numpy(np.repeat(rels, cand_ids.size)))
                for k, r in enumerate(rels.tolist()):
                    rows = sel[np.flatnonzero(q_all["relation_id"].to_numpy() == r)]
                    q = q_all[q_all["relation_id"].to_numpy() == r]
                    cands = cands_all[k * cand_ids.size : (k + 1) * cand_ids.size]
                    qv = scorer.candidates(torch.from_numpy(q["tail_id"].to_numpy().copy()))
                    fq, fc = _filter_pairs(q, known, ["relation_id", "tg"], "hg", cand_group)
                    true = torch.from_numpy(cand_pos[q["head_id"].to_numpy()])
                    ranks["head"][rows] = filtered_ranks(qv.cpu(), cands.cpu(), true, fq, fc, normalize=False, chunk=chunk).numpy()
                del cands_all, cands
    both = np.concatenate([ranks["tail"], ranks["head"]])
    result = {"overall": rank_metrics(torch.from_numpy(both)), "tail": rank_metrics(torch.from_numpy(ranks["tail"])),
              "head": rank_metrics(torch.from_numpy(ranks["head"]))}
    rel_text = store.relations["text"].to_numpy(dtype=object)
    names = np.array(MODALITIES, dtype=object)
    pair = names[modality[test["head_id"].to_numpy()]] + "-" + names[modality[test["tail_id"].to_numpy()]]
    rel = rel_text[test["relation_id"].to_numpy()]
    result["per_relation"] = {str(k): rank_metrics(torch.from_numpy(np.concatenate([ranks["tail"][rel == k], ranks["head"][rel == k]]))) for k in np.unique(rel)}
    result["per_modality_pair"] = {str(k): rank_metrics(torch.from_numpy(np.concatenate([ranks["tail"][pair == k], ranks["head"][pair == k]]))) for k in np.unique(pair)}
    return result


def relation_prediction(scorer: Scorer, store: KnowledgeStore, split: str = "test", max_queries: int | None = None) -> dict:
    """Accuracy of predicting r from (h, ?, t) over the relation vocabulary."""
    t = store.triplets
    test = t[t["split"] == split].reset_index(drop=True)
    if max_queries is not None and len(test) > max_queries:
        test = test.sample(n=max_queries, random_state=0).reset_index(drop=True)
    if len(test) == 0:
        return {"accuracy": float("nan"), "count": 0}
    scores = scorer.relation_scores(torch.from_numpy(test["head_id"].to_numpy().copy()), torch.from_numpy(test["tail_id"].to_numpy().copy()))
    pred = scores.argmax(-1).cpu().numpy()
    return {"accuracy": float((pred == test["relation_id"].to_numpy()).mean()), "count": len(test)}
