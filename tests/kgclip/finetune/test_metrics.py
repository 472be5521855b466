import math

import numpy as np
import pytest

from kgclip.finetune.metrics import accuracy, f1_binary, matthews_corrcoef, pearson, spearman, topk_accuracy


def test_accuracy_and_topk():
    assert accuracy([1, 0, 2, 2], [1, 1, 2, 0]) == 0.5
    scores = np.array([[0.1, 0.7, 0.2], [0.5, 0.4, 0.1], [0.3, 0.3, 0.4]])
    gold = np.array([2, 1, 2])
    assert topk_accuracy(scores, gold, 1) == pytest.approx(1 / 3)  # only row 2
    assert topk_accuracy(scores, gold, 2) == 1.0
    assert topk_accuracy(scores, gold, 5) == 1.0  # k beyond the classes: all of them


def test_f1_by_hand():
    # tp=2 (rows 0, 3), fp=1 (row 1), fn=1 (row 2): F1 = 2*2 / (2*2 + 1 + 1) = 2/3
    assert f1_binary([1, 1, 0, 1, 0], [1, 0, 1, 1, 0]) == pytest.approx(2 / 3)
    assert f1_binary([0, 0], [0, 0]) == 0.0


def test_mcc_by_hand():
    # tp=2, tn=1, fp=1, fn=1: (2*1 - 1*1) / sqrt(3*3*2*2) = 1/6
    assert matthews_corrcoef([1, 1, 0, 1, 0], [1, 0, 1, 1, 0]) == pytest.approx(1 / 6)
    assert matthews_corrcoef([1, 0, 1], [1, 0, 1]) == pytest.approx(1.0)
    assert matthews_corrcoef([0, 1, 0], [1, 0, 1]) == pytest.approx(-1.0)
    assert matthews_corrcoef([1, 1, 1], [1, 0, 1]) == 0.0  # constant prediction: undefined, 0 as sklearn does


def test_pearson_and_spearman_by_hand():
    x, y = [1, 2, 3, 4], [2, 4, 5, 9]
    # means 2.5 and 5; deviations (-1.5,-.5,.5,1.5) and (-3,-1,0,4): sum xy = 4.5+.5+0+6 = 11; sxx = 5, syy = 26
    assert pearson(x, y) == pytest.approx(11 / math.sqrt(5 * 26))
    assert spearman(x, y) == pytest.approx(1.0)  # monotone
    # ties get average ranks: x ranks (1, 2.5, 2.5, 4), y ranks (4, 3, 2, 1)
    assert spearman([1, 2, 2, 3], [4, 3, 2, 1]) == pytest.approx(pearson([1, 2.5, 2.5, 4], [4, 3, 2, 1]))
    assert math.isnan(pearson([1, 1, 1], [1, 2, 3]))
