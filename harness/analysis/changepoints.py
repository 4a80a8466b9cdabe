"""Change points of a nightly series: E-divisive means with a permutation test.

The method continuous-performance tools use to date a step change (MongoDB's
signal-processing-algorithms, Apache Otava): for every split of the series, the energy
statistic of the two sides (Matteson & James 2014, alpha = 1)

    Q(tau) = m n / (m + n) * ( 2/(m n) sum |x_i - y_j| - 1/C(m,2) sum |x_i - x_k| - 1/C(n,2) sum |y_j - y_l| )

is largest where the series' level (or spread) changes; its significance is the share of
random reorderings of the series whose best split scores as high (a permutation test:
exact under "no change", whatever the distribution). A significant split is kept and
each side searched again (binary segmentation) until no split is significant.

Why here and not the libraries: signal-processing-algorithms pins numpy < 2 (this project
runs pandas 3 on numpy 2), Apache Otava pins numpy and scipy versions and brings cloud
clients; the algorithm is forty lines of numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PERMUTATIONS = 199
SIGNIFICANCE = 0.05
MIN_SIZE = 3           # nights on each side of a change at the least
SEED = 26


@dataclass(frozen=True)
class ChangePoint:
    index: int             # the first point after the change
    p_value: float         # permutation p of its split (within its segment)
    before: float          # median of the segment before
    after: float           # median of the segment after


def _q_stats(x: np.ndarray, min_size: int) -> np.ndarray:
    """Q(tau) for tau = min_size .. len(x) - min_size (NaN elsewhere), in O(n^2)."""
    n = len(x)
    d = np.abs(x[:, None] - x[None, :])
    q = np.full(n + 1, np.nan)
    if n < 2 * min_size:
        return q
    # within-left sums W_L(tau) = sum_{i<k<tau} d_ik, within-right W_R(tau) = sum_{tau<=i<k} d_ik
    col = np.triu(d, 1).sum(axis=0)                 # sum_{i<k} d_ik for each k
    w_left = np.concatenate([[0.0], np.cumsum(col)])          # W_L(tau) = sum of col[:tau]
    row = np.triu(d, 1).sum(axis=1)                 # sum_{k>i} d_ik for each i
    w_right = np.concatenate([np.cumsum(row[::-1])[::-1], [0.0]])   # W_R(tau) = sum of row[tau:]
    total = w_left[n]
    for tau in range(min_size, n - min_size + 1):
        m, k = tau, n - tau
        cross = total - w_left[tau] - w_right[tau]
        q[tau] = m * k / n * (2 * cross / (m * k) - w_left[tau] / (m * (m - 1) / 2) - w_right[tau] / (k * (k - 1) / 2))
    return q


def best_split(x: np.ndarray, min_size: int = MIN_SIZE) -> tuple[int, float]:
    """(tau, Q(tau)) of the best split of ``x``; (-1, nan) when too short."""
    q = _q_stats(np.asarray(x, dtype=float), min_size)
    if np.all(np.isnan(q)):
        return -1, float("nan")
    tau = int(np.nanargmax(q))
    return tau, float(q[tau])


def e_divisive(series: np.ndarray, significance: float = SIGNIFICANCE, permutations: int = PERMUTATIONS,
               min_size: int = MIN_SIZE, seed: int = SEED) -> list[ChangePoint]:
    """The significant change points of ``series`` (NaN-free), in order."""
    x = np.asarray(series, dtype=float)
    rng = np.random.default_rng(seed)
    found: list[tuple[int, float]] = []
    segments = [(0, len(x))]
    while segments:
        lo, hi = segments.pop()
        seg = x[lo:hi]
        tau, stat = best_split(seg, min_size)
        if tau < 0 or not np.isfinite(stat):
            continue
        exceed = sum(best_split(rng.permutation(seg), min_size)[1] >= stat - 1e-12 for _ in range(permutations))
        p = (1 + exceed) / (1 + permutations)
        if p <= significance:
            found.append((lo + tau, p))
            segments += [(lo, lo + tau), (lo + tau, hi)]
    found.sort()
    bounds = [0] + [i for i, _ in found] + [len(x)]
    return [ChangePoint(i, p, float(np.median(x[bounds[k]:i])), float(np.median(x[i:bounds[k + 2]])))
            for k, (i, p) in enumerate(found)]
