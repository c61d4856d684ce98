"""Unbiased pass@k of Chen et al. (2021), used for HumanEval and MBPP (paper §3.5).

With ``n`` samples of which ``c`` pass, ``pass@k = 1 - C(n-c, k) / C(n, k)``.
The binomial coefficients overflow floats for realistic ``n`` (LLaMA samples
n=200 at temperature 0.8 for pass@100), so we use the equivalent product
``1 - prod_{i=n-c+1}^{n} (1 - k / i)``, which stays in [0, 1] and is exact to
rounding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from llamaforge.errors import ConfigError, DataError


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of ``k`` samples drawn without replacement passes."""
    if n < 1 or not 0 <= c <= n:
        raise DataError(f"need n >= 1 samples and 0 <= c <= n passing, got n={n}, c={c}")
    if k < 1 or k > n:
        raise ConfigError(f"k must be in [1, n={n}] (draw more samples per problem), got k={k}")
    if n - c < k:  # every draw of k contains a passing sample
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def mean_pass_at_k(results: Sequence[Sequence[bool]], k: int) -> float:
    """Mean pass@k over problems; ``results[p]`` holds the pass/fail of each sample of problem p.

    Problems may have different sample counts; each must have at least ``k``.
    """
    if not results:
        raise DataError("mean_pass_at_k got no problems")
    return sum(pass_at_k(len(r), sum(bool(x) for x in r), k) for r in results) / len(results)
