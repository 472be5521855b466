"""Evaluation: filtered link prediction, relation prediction, zero-shot, retrieval, binding tests."""

from kgclip.evaluation.link_prediction import link_prediction, relation_prediction
from kgclip.evaluation.ranking import filtered_ranks, rank_metrics
from kgclip.evaluation.scorers import ClipScorer, KnowledgeClipScorer, Scorer, scorer_for
from kgclip.evaluation.suite import TASKS, evaluate, flat_metrics
from kgclip.evaluation.tasks import binding, retrieval, zero_shot

__all__ = ["TASKS", "ClipScorer", "KnowledgeClipScorer", "Scorer", "binding", "evaluate", "filtered_ranks", "flat_metrics", "link_prediction",
           "rank_metrics", "relation_prediction", "retrieval", "scorer_for", "zero_shot"]
