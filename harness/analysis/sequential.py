"""The stopping boundary of ``run --until-decided``: repeated looks at a rank test whose
overall false-alarm rate stays at alpha.

Testing after every round at the same alpha and stopping at the first "yes" calls equal
arms better or worse far more often than alpha (10.7 % at --max-reps 10, 15.0 % at 20,
nominal 5 %: issue 26): every look is one more chance for noise to cross. The fix used in
group-sequential trials is a boundary fixed in advance: a per-look threshold low enough
that the chance of crossing it at ANY look, when the arms do not differ, is alpha.

Here the boundary is Pocock-type (the same nominal threshold at every look), found by
simulation: the Mann-Whitney statistic's null distribution depends only on the ranks, not
on the data's distribution, so one simulation of uniform draws serves every figure. Each
simulated pair of arms grows one run per arm per look, from the first look's runs to
``max_reps``; the threshold is the largest p-value cut at which at most 0.9 x alpha of the
simulated pairs ever cross (the margin covers the simulation's own error), each look's p
being the smaller of the exact p and the normal approximation's (``decide`` may give
either: the boundary holds for both).
Deterministic (fixed seed) and cached per (alpha, first look, max reps) in the process.

Pocock rather than O'Brien-Fleming: with 2 to 5 runs per arm the rank test cannot reach a
small p at all (5 runs a side: at best p = 0.0079), so the early looks already spend
almost nothing, which is what O'Brien-Fleming's steep early thresholds are for; a constant
threshold keeps the late looks, where decisions happen, as strong as possible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

SIMULATIONS = 20000
SEED = 26
# The threshold is fitted to MARGIN x alpha in the simulation: fitted to alpha itself, the
# simulation's own error (+-0.15 % at 20000 draws) and the fit to the same draws left the
# true any-look rate at 4.9 % for alpha 5 % (100000 fresh draws), too close to tell from
# alpha in a calibration run; with the margin it is about 4.5 %.
MARGIN = 0.9


@dataclass(frozen=True)
class Boundary:
    """Per-look p-value thresholds for one question: ``looks`` (runs per arm at each look)
    and ``thresholds`` (a look decides when p < its threshold)."""

    alpha: float                    # this question's share of the family's alpha
    looks: tuple[int, ...]
    thresholds: tuple[float, ...]
    crossing: float                 # simulated P(any look crosses | no difference)
    simulations: int = SIMULATIONS
    seed: int = SEED

    def threshold_at(self, n: int) -> float:
        """The threshold at a look with ``n`` runs per arm (the smaller side)."""
        if not self.looks:
            return self.alpha
        return self.thresholds[min(range(len(self.looks)), key=lambda i: (abs(self.looks[i] - n), -i))]

    def describe(self) -> str:
        """One line: the looks with their thresholds (looks the test cannot pass marked)."""
        parts = []
        for n, t in zip(self.looks, self.thresholds):
            parts.append(f"n={n}: p<{t:.3g}" + (" (cannot reach)" if best_p(n, n) >= t else ""))
        return (f"Pocock-type boundary at alpha {self.alpha:.3g} ({self.simulations} null simulations of the "
                f"rank test, seed {self.seed}; any-look false alarm {self.crossing:.4f}): " + ", ".join(parts))


def best_p(m: int, n: int) -> float:
    """The smallest exact two-sided Mann-Whitney p for m against n runs (fully separated)."""
    if m < 1 or n < 1:
        return 1.0
    return min(1.0, 2.0 / math.comb(m + n, n))


@lru_cache(maxsize=64)
def _u_counts(n: int) -> np.ndarray:
    """Null counts of U = 0..n*n for n against n runs (no ties): the standard recursion
    f(i, j, u) = f(i-1, j, u-j) + f(i, j-1, u), rolled over i, for j = n."""
    # f[j][u] for the current i; start at i = 0: only u = 0, for every j
    f = np.zeros((n + 1, n * n + 1), dtype=np.float64)
    f[:, 0] = 1.0
    for _ in range(1, n + 1):
        g = np.zeros_like(f)
        g[0, 0] = 1.0
        for j in range(1, n + 1):
            g[j, j:] += f[j, :f.shape[1] - j]          # the largest value is an x: adds j to U
            g[j] += g[j - 1]                              # ... or a y
        f = g
    return f[n]


def _u(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    n = x.shape[1]
    ranks = np.argsort(np.argsort(np.concatenate([x, y], axis=1), axis=1), axis=1) + 1
    return ranks[:, :n].sum(axis=1) - n * (n + 1) // 2


def exact_p(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Exact two-sided Mann-Whitney p of each row of ``x`` against the same row of ``y``
    (equal sizes, continuous draws: no ties), as scipy's ``method="exact"`` gives it."""
    u = _u(x, y)
    counts = _u_counts(x.shape[1])
    cdf = np.cumsum(counts) / counts.sum()
    sf = 1.0 - np.concatenate([[0.0], cdf[:-1]])          # P(U >= u)
    return np.minimum(1.0, 2.0 * np.minimum(cdf[u], sf[u]))


def normal_p(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The normal approximation's two-sided p with continuity correction (no ties), as
    scipy's ``method="asymptotic"`` gives it."""
    from scipy.stats import norm
    n = x.shape[1]
    u1 = _u(x, y)
    big = np.maximum(u1, n * n - u1)
    z = (big - n * n / 2 - 0.5) / math.sqrt(n * n * (2 * n + 1) / 12)
    return np.minimum(1.0, 2.0 * norm.sf(z))


def look_p(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The p a look may see: the smaller of the exact p and the normal approximation's.

    ``decide`` takes the exact p or (for larger samples) the normal approximation, and at
    the boundary's sizes either can be the smaller one; simulating the smaller makes the
    boundary hold whichever of the two the test uses."""
    return np.minimum(exact_p(x, y), normal_p(x, y))


@lru_cache(maxsize=64)
def pocock_boundary(alpha: float, first: int, max_reps: int, simulations: int = SIMULATIONS,
                    seed: int = SEED) -> Boundary:
    """The constant threshold c for looks at n = first..max_reps runs per arm such that, for
    two arms that do not differ, P(p_n < c at some look) <= alpha (by ``simulations`` draws)."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    first = max(2, int(first))
    if first >= max_reps:           # one look: no repetition, the plain test at alpha
        return Boundary(alpha, (max(first, max_reps),), (alpha,), alpha, 0, seed)
    looks = tuple(range(first, max_reps + 1))
    rng = np.random.default_rng(seed)
    x = rng.random((simulations, max_reps))
    y = rng.random((simulations, max_reps))
    min_p = np.ones(simulations)
    for n in looks:
        if best_p(n, n) >= alpha:    # this look cannot cross any threshold <= alpha
            continue
        min_p = np.minimum(min_p, look_p(x[:, :n], y[:, :n]))
    ordered = np.sort(min_p)
    k = int(math.floor(MARGIN * alpha * simulations))
    # just below the k-th smallest: a p equal to it (the same rank arrangement, computed by
    # another route with a rounding difference) must not cross
    c = float(ordered[k]) * (1 - 1e-9) if k < simulations else alpha
    c = min(c, alpha)
    crossing = float(np.mean(min_p < c))
    return Boundary(alpha, looks, tuple(c for _ in looks), crossing, simulations, seed)


def family_share(alpha: float, questions: int) -> float:
    """Each question's alpha when ``questions`` are decided together (Bonferroni): the chance
    that any of them is a false alarm stays at most ``alpha`` whatever their dependence (the
    questions of 3 arms share the first arm's runs)."""
    return alpha / max(1, questions)
