import numpy as np
import pytest

from bcc.core.patterns import CODES, clinical_rule


def test_paper_table1_examples():
    # Table 1 of the paper: multilabel word -> binary label.
    words = np.array([[0, 1, 0, 1, 1, 0, 1], [0, 0, 1, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0, 0], [0] * 7])
    assert clinical_rule(words).tolist() == [1, 1, 0, 0]


def test_pn_is_negative_criterion_even_with_bcc_patterns():
    word = np.zeros((1, len(CODES)), dtype=int)
    word[0, CODES.index("PN")] = 1
    word[0, CODES.index("AT")] = 1
    assert clinical_rule(word).tolist() == [0]


def test_wrong_shape_is_a_clear_error():
    with pytest.raises(ValueError, match="PN"):
        clinical_rule(np.zeros((3, 6)))
