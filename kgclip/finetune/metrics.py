"""Downstream metrics: accuracy, top-k, binary F1, Matthews correlation, Pearson and Spearman.

Small and exact (numpy only), checked against hand computations in the tests.
"""

import numpy as np


def accuracy(pred, gold) -> float:
    """Share of equal entries."""
    pred, gold = np.asarray(pred), np.asarray(gold)
    return float((pred == gold).mean()) if gold.size else float("nan")


def topk_accuracy(scores, gold, k: int) -> float:
    """Share of rows whose gold class is among the ``k`` highest scores (ties: the lower index first,
    as a stable sort puts them)."""
    scores, gold = np.asarray(scores), np.asarray(gold)
    if gold.size == 0:
        return float("nan")
    k = min(k, scores.shape[1])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float((top == gold[:, None]).any(axis=1).mean())


def f1_binary(pred, gold, positive: int = 1) -> float:
    """F1 of the positive class (0 when it is never predicted nor present)."""
    pred, gold = np.asarray(pred) == positive, np.asarray(gold) == positive
    tp = float((pred & gold).sum())
    denom = float(pred.sum() + gold.sum())
    return 2 * tp / denom if denom else 0.0


def matthews_corrcoef(pred, gold) -> float:
    """Matthews correlation coefficient (the multi-class R_K form; binary MCC for two classes); 0
    when undefined (a constant prediction or gold)."""
    pred, gold = np.asarray(pred), np.asarray(gold)
    classes = np.union1d(pred, gold)
    c = np.zeros((classes.size, classes.size))
    np.add.at(c, (np.searchsorted(classes, gold), np.searchsorted(classes, pred)), 1)
    t, p = c.sum(axis=1), c.sum(axis=0)
    n, correct = c.sum(), np.trace(c)
    cov_yp = correct * n - t @ p
    cov_yy = n * n - t @ t
    cov_pp = n * n - p @ p
    denom = np.sqrt(cov_yy * cov_pp)
    return float(cov_yp / denom) if denom else 0.0


def pearson(x, y) -> float:
    """Pearson correlation (nan when either side is constant)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    x, y = x - x.mean(), y - y.mean()
    denom = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / denom) if denom else float("nan")


def _ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks, ties given their average rank."""
    order = np.argsort(x, kind="stable")
    xs = x[order]
    ranks = np.empty(x.size, dtype=np.float64)
    start = 0
    for end in range(1, x.size + 1):
        if end == x.size or xs[end] != xs[start]:
            ranks[order[start:end]] = (start + end + 1) / 2
            start = end
    return ranks


def spearman(x, y) -> float:
    """Spearman rank correlation (Pearson of the average ranks)."""
    return pearson(_ranks(np.asarray(x, dtype=np.float64)), _ranks(np.asarray(y, dtype=np.float64)))
