"""Mixture weights: any positive finite scale works; anything else names its source."""

import math

import numpy as np
import pytest

from llamaforge.data.loader import TokenLoader
from llamaforge.errors import ConfigError


def test_huge_weights_are_normalised_without_overflow(token_folder):
    a, b = token_folder(np.arange(1000)), token_folder(np.arange(1000))
    loader = TokenLoader([(a, 1e308), (b, 1e308)], 8, 4)
    assert loader.weights.tolist() == [0.5, 0.5]
    loader.next_batch()  # the draw works, where the overflowed sum gave nan probabilities
    tiny = TokenLoader([(a, 3e-300), (b, 1e-300)], 8, 4)
    assert tiny.weights.tolist() == pytest.approx([0.75, 0.25])


@pytest.mark.parametrize("bad", [math.inf, math.nan, 0, -1.0, True, "1", None])
def test_a_bad_weight_names_its_source(token_folder, bad):
    good, other = token_folder(np.arange(1000)), token_folder(np.arange(1000))
    with pytest.raises(ConfigError, match=rf"data source {other}: weights must be positive"):
        TokenLoader([(good, 1.0), (other, bad)], 8, 1)


def test_a_weight_that_vanishes_next_to_the_largest_is_refused(token_folder):
    big, small = token_folder(np.arange(1000)), token_folder(np.arange(1000))
    with pytest.raises(ConfigError, match=rf"data source {small}: weight 5e-324 is too small"):
        TokenLoader([(big, 1e308), (small, 5e-324)], 8, 1)
