"""How much a recovered latent says about a key: the detection statistic and its tail under "not marked".

Every element of a latent marked with a key has a known relation to a key-stream bit: a pilot's sign *is* one,
a payload replica's sign is one XORed with its code bit. The code bits are unknown to the detector, but all the
replicas of one code bit share it, so they agree with each other after the key stream is removed. The statistic
uses both:

    T = DESIGN_DELTA * P + sum_b log cosh(DESIGN_DELTA * S_b)

where ``P`` is the sum over pilots of +1 (sign matches) and -1 (does not), and ``S_b`` the same sum over the
replicas of code bit ``b`` with the key stream removed (whatever the bit, a marked latent makes ``|S_b|`` large).
It is the log-likelihood ratio of a latent whose signs each agree with the template with probability
``(1 + DESIGN_DELTA) / 2`` against one that is independent of the key, the unknown code bits averaged out.

Why its tail is exact whatever the content: given the latent, the key-stream bits at distinct positions are
i.i.d. fair coins (ChaCha20 as a pseudo-random function), so every +-1 above is an independent fair coin, an
element that is exactly 0 is left out, and ``P`` and the ``S_b`` are independent sums of them. The tail
``P(T >= t)`` is bounded by Chernoff's inequality with the exact moment generating function of each part,
minimised over its parameter: a true upper bound (the test stays valid, and slightly conservative), computed in
log space, so it stays accurate far below 1e-300.

The pilots alone, what framemark tested before, are a quarter of the elements; ``docs/watermark.md`` gives what
the payload's replicas add on the embedded model's clips.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import gammaln

# The per-element agreement the statistic is tuned for: (1 + DESIGN_DELTA) / 2 = 0.575. Weak evidence (a deep
# crop, a first look) sits near it; strong evidence is decided whatever the choice. Fixed in advance, never
# chosen from the data, so the bound stays exact.
DESIGN_DELTA = 0.15
# The Chernoff parameter is searched on [0, _LAMBDA_MAX]: beyond it, log cosh is linear to double precision for
# every argument the statistic can take, and the bound no longer improves.
_LAMBDA_MAX = 400.0


def log_cosh(x: np.ndarray | float) -> np.ndarray | float:
    """log(cosh(x)) without overflow."""
    a = np.abs(x)
    return a + np.log1p(np.exp(-2.0 * a)) - math.log(2.0)


def statistic(pilot_sum: float, bit_sums: np.ndarray, delta: float = DESIGN_DELTA) -> float:
    """T of the module docstring from ``P`` and the per-code-bit sums ``S_b``."""
    return float(delta * pilot_sum + np.sum(log_cosh(delta * np.asarray(bit_sums, dtype=np.float64))))


def log_sf(pilot_sum: float, n_pilot: int, bit_sums: np.ndarray, bit_counts: np.ndarray,
           delta: float = DESIGN_DELTA) -> float:
    """Natural log of an upper bound on P(T >= observed T) when every counted sign is a fair coin.

    ``n_pilot``: how many pilots were counted (non-zero signs); ``bit_counts[b]``: how many replicas of code bit
    ``b`` were (each ``S_b`` then has ``bit_counts[b] + 1`` possible values, the exact distribution of twice a
    Binomial(n, 1/2) minus n)."""
    observed = statistic(pilot_sum, bit_sums, delta)
    # one row per distinct replica count n: the log pmf of S_b's n + 1 values (padded with -inf to the longest)
    # and log cosh(delta * S_b) at each; ``counts`` says how many code bits have that n
    sizes = Counter(int(n) for n in np.asarray(bit_counts))
    ns = np.array(sorted(sizes), dtype=np.float64)
    counts = np.array([sizes[int(n)] for n in ns], dtype=np.float64)
    k = np.arange(int(ns.max()) + 1, dtype=np.float64)[None, :]
    n = ns[:, None]
    log_pmf = np.where(k <= n, gammaln(n + 1.0) - gammaln(k + 1.0) - gammaln(np.maximum(n - k, 0.0) + 1.0)
                       - n * math.log(2.0), -np.inf)
    g = np.where(k <= n, log_cosh(delta * (2.0 * k - n)), 0.0)
    # the bound's slope at lam = 0 is E[T] - observed: at or below the null mean the best bound is the trivial 1
    if observed <= float(counts @ (np.exp(log_pmf) * g).sum(axis=1)):
        return 0.0

    def log_bound(lam: float) -> float:
        a = log_pmf + lam * g
        top = a.max(axis=1)
        return float(-lam * observed + n_pilot * log_cosh(lam * delta)
                     + counts @ (top + np.log(np.exp(a - top[:, None]).sum(axis=1))))

    # the bound is convex in lam (a log moment generating function minus a line), so Brent's bounded search finds
    # its minimum; lam = 0 gives the trivial bound 1
    best = minimize_scalar(log_bound, bounds=(0.0, _LAMBDA_MAX), method="bounded",
                           options={"xatol": 1e-6, "maxiter": 200})
    return float(min(0.0, best.fun, log_bound(_LAMBDA_MAX)))
