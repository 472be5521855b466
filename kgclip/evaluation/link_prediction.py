"""Link prediction: each test triplet queried both ways, filtered realistic ranks, both sides.

(h, r, ?) ranks the true tail among all entities of the tail's modality; (?, r, t) the true head
among all entities of the head's modality. Other true answers from train + valid + test are
filtered. Results: overall, per relation and per modality pair.
"""

import numpy as np
import pandas as pd
import torch

from kgclip.evaluation.ranking import filtered_ranks, rank_metrics
from kgclip.progress import bar
from kgclip.store.reader import KnowledgeStore


def _filter_pairs(queries: pd.DataFrame, known: pd.DataFrame, on: list[str], answer: str, cand_pos: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(query row, candidate position) of every known answer sharing the query's ``on`` columns."""
    q = queries[on].reset_index(drop=True).reset_index(names="qrow")
    m = q.merge(known[[*on, answer]], on=on, how="inner")
    pos = cand_pos[m[answer].to_numpy()]
    ok = pos >= 0
    return torch.from_numpy(m["qrow"].to_numpy()[ok].copy()), torch.from_numpy(pos[ok])


def link_prediction(scorer, store: KnowledgeStore, split: str = "test", max_queries: int | None = None, chunk: int = 1024) -> dict:
    """Filtered link prediction of ``split`` triplets; returns overall, per-relation and per-modality-pair metrics."""
    t = store.triplets
    test = t[t["split"] == split][["head_id", "relation_id", "tail_id"]].reset_index(drop=True)
    if max_queries is not None and len(test) > max_queries:
        test = test.sample(n=max_queries, random_state=0).reset_index(drop=True)
    known = t[["head_id", "relation_id", "tail_id"]]
    modality = (store.entities["modality"].to_numpy(dtype=object) == "text").astype(np.int64)
    n = len(modality)
    ranks = {"tail": np.full(len(test), np.nan), "head": np.full(len(test), np.nan)}
    for code in (0, 1):
        cand_ids = np.flatnonzero(modality == code)
        if cand_ids.size == 0:
            continue
        cand_pos = np.full(n, -1, dtype=np.int64)
        cand_pos[cand_ids] = np.arange(cand_ids.size)
        cand_t = torch.from_numpy(cand_ids)
        # (h, r, ?): candidates Y(-,-,t) once per entity; queries Y(h,r,-).
        sel = np.flatnonzero(modality[test["tail_id"].to_numpy()] == code)
        if sel.size:
            q = test.iloc[sel]
            cands = scorer.candidates(cand_t)
            qv = scorer.queries(torch.tensor(q["head_id"].tolist()), torch.tensor(q["relation_id"].tolist()))
            fq, fc = _filter_pairs(q, known, ["head_id", "relation_id"], "tail_id", cand_pos)
            true = torch.from_numpy(cand_pos[q["tail_id"].to_numpy()])
            ranks["tail"][sel] = filtered_ranks(qv.cpu(), cands.cpu(), true, fq, fc, chunk=chunk).numpy()
        # (?, r, t): per relation, candidates Y(h, r, -) for every h of the modality; query Y(-,-,t).
        sel = np.flatnonzero(modality[test["head_id"].to_numpy()] == code)
        if sel.size:
            q_all = test.iloc[sel]
            for r, q in bar(q_all.groupby("relation_id"), desc=f"{scorer.name}: head prediction", unit="relation", leave=False):
                rows = sel[np.flatnonzero(q_all["relation_id"].to_numpy() == r)]
                cands = scorer.queries(cand_t, torch.full((cand_ids.size,), int(r), dtype=torch.long))
                qv = scorer.candidates(torch.from_numpy(q["tail_id"].to_numpy().copy()))
                fq, fc = _filter_pairs(q, known, ["relation_id", "tail_id"], "head_id", cand_pos)
                true = torch.from_numpy(cand_pos[q["head_id"].to_numpy()])
                ranks["head"][rows] = filtered_ranks(qv.cpu(), cands.cpu(), true, fq, fc, chunk=chunk).numpy()
    both = np.concatenate([ranks["tail"], ranks["head"]])
    result = {"overall": rank_metrics(torch.from_numpy(both)), "tail": rank_metrics(torch.from_numpy(ranks["tail"])),
              "head": rank_metrics(torch.from_numpy(ranks["head"]))}
    rel_text = store.relations["text"].to_numpy(dtype=object)
    names = np.array(["image", "text"], dtype=object)
    pair = names[modality[test["head_id"].to_numpy()]] + "-" + names[modality[test["tail_id"].to_numpy()]]
    rel = rel_text[test["relation_id"].to_numpy()]
    result["per_relation"] = {str(k): rank_metrics(torch.from_numpy(np.concatenate([ranks["tail"][rel == k], ranks["head"][rel == k]]))) for k in np.unique(rel)}
    result["per_modality_pair"] = {str(k): rank_metrics(torch.from_numpy(np.concatenate([ranks["tail"][pair == k], ranks["head"][pair == k]]))) for k in np.unique(pair)}
    return result


def relation_prediction(scorer, store: KnowledgeStore, split: str = "test", max_queries: int | None = None) -> dict:
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
