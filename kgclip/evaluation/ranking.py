"""Filtered, realistic rank-based evaluation (as PyKEEN does), in bounded memory.

For each query the true candidate is ranked among all candidates by score; every *other* known
true answer is filtered out (it neither outranks nor ties the true one); ties count half
(realistic rank = mean of the optimistic and the pessimistic rank).
"""

import torch
import torch.nn.functional as F
from torch import Tensor

from kgclip.errors import KgclipError


def filtered_ranks(
    query: Tensor,
    candidates: Tensor,
    true_index: Tensor,
    filter_query: Tensor | None = None,
    filter_candidate: Tensor | None = None,
    *,
    normalize: bool = True,
    chunk: int = 1024,
) -> Tensor:
    """Realistic filtered rank of each query's true candidate (1 = best).

    Raises:
        KgclipError: a score is NaN (a model with NaN weights would otherwise rank 0.5).

    Args:
        query: [Q, D] query vectors; candidates: [C, D] candidate vectors.
        true_index: [Q] index of each query's true candidate.
        filter_query, filter_candidate: parallel [F] tensors: candidate ``filter_candidate[k]``
            is another true answer of query ``filter_query[k]`` (filtered out). The true
            candidate itself may appear; it is never filtered.
        normalize: score by cosine (else by dot product).
        chunk: queries scored at once (memory is chunk x C scores).
    """
    if normalize:
        query, candidates = F.normalize(query, dim=-1), F.normalize(candidates, dim=-1)
    q = query.shape[0]
    ranks = torch.empty(q, dtype=torch.float64)
    if filter_query is not None and filter_query.numel():
        order = torch.argsort(filter_query, stable=True)
        fq, fc = filter_query[order], filter_candidate[order]
        bounds = torch.searchsorted(fq, torch.tensor([*range(0, q, chunk), q]))
    else:
        fq = fc = None
    for i, start in enumerate(range(0, q, chunk)):
        stop = min(start + chunk, q)
        scores = query[start:stop] @ candidates.T
        rows = torch.arange(stop - start)
        true_score = scores[rows, true_index[start:stop]].clone()
        nan = torch.isnan(scores).any(1)
        if nan.any():  # NaN compares false both ways: the rank would come out 0.5, better than first
            bad = (torch.nonzero(nan).flatten() + start).tolist()
            raise KgclipError(f"{int(nan.sum())} quer(ies) have NaN scores (the model's vectors hold NaN), e.g. query {bad[0]}; "
                              f"ranks would be meaningless")
        if fq is not None:
            lo, hi = int(bounds[i]), int(bounds[i + 1])
            r, c = fq[lo:hi] - start, fc[lo:hi]
            keep = c != true_index[start:stop][r]
            scores[r[keep], c[keep]] = float("-inf")
        greater = (scores > true_score[:, None]).sum(1)
        equal = (scores == true_score[:, None]).sum(1) - 1  # others tied with the true one
        ranks[start:stop] = 1 + greater.double() + 0.5 * equal.double()
    return ranks


def rank_metrics(ranks: Tensor, ks: tuple[int, ...] = (1, 3, 10)) -> dict[str, float]:
    """MRR and Hits@k of realistic ranks."""
    if ranks.numel() == 0:
        return {"mrr": float("nan"), **{f"hits@{k}": float("nan") for k in ks}, "count": 0}
    out = {"mrr": float((1.0 / ranks).mean())}
    for k in ks:
        out[f"hits@{k}"] = float((ranks <= k).double().mean())
    out["count"] = int(ranks.numel())
    return out
