"""The statistics of human judgments, in numpy (and the standard library's normal distribution).

Each function says in its docstring why it is the right tool and where its formula comes from.
Conventions: a "win rate" is ``(wins + ties / 2) / n``, so "about the same" counts half a win for
each side (as in Bradley-Terry with ties split, and in interleaving evaluations); intervals are
two-sided at ``level`` (95 % by default); a statistic that is undefined (no data, no variation)
is ``None``, never NaN, so results go to JSON unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

__all__ = ["z_value", "wilson_interval", "bootstrap_win_rate", "BradleyTerry", "bradley_terry",
           "cohen_kappa", "fleiss_kappa", "precision_at_k", "ndcg_at_k", "judgments_needed"]


def z_value(level: float = 0.95) -> float:
    """The two-sided normal quantile for ``level`` (1.96 for 95 %)."""
    if not 0 < level < 1:
        raise ValueError(f"level {level}: expected a number between 0 and 1")
    return NormalDist().inv_cdf(0.5 + level / 2)


def wilson_interval(successes: float, n: float, level: float = 0.95) -> tuple[float, float] | None:
    """Wilson's score interval for a proportion: ``successes`` of ``n`` (may be fractional: a tie
    counts half).

    Why: unlike the textbook Wald interval ``p +- z sqrt(p(1-p)/n)``, it keeps close to its nominal
    coverage for small ``n`` and for proportions near 0 or 1, and never leaves [0, 1] (Wilson 1927,
    JASA 22:209; recommended by Brown, Cai & DasGupta 2001, Statistical Science 16:101).
    ``(p + z²/2n ± z sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)``. With ties counted half, the variance
    of a judgment is below the binomial one, so the interval is then somewhat conservative.
    None for ``n == 0``."""
    if n <= 0:
        return None
    if not 0 <= successes <= n:
        raise ValueError(f"{successes} successes of {n}")
    z = z_value(level)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def bootstrap_win_rate(scores, counts, *, n_boot: int = 2000, level: float = 0.95,
                       rng: np.random.Generator | int | None = 0) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the pooled win rate ``sum(scores) / sum(counts)``, resampling
    queries (``scores[q]``: wins + ties/2 on query q, ``counts[q]``: judgments on q).

    Why over queries: judgments of one query are not independent (an easy query makes every judge
    prefer the same side), so the unit to resample is the query, not the single judgment (Efron &
    Tibshirani 1993, *An Introduction to the Bootstrap*, ch. 13; the cluster bootstrap of Davison &
    Hinkley 1997, sect. 3.8). None with no judgments."""
    scores, counts = np.asarray(scores, float), np.asarray(counts, float)
    if scores.shape != counts.shape or scores.ndim != 1:
        raise ValueError("scores and counts: expected two 1-d arrays of one length")
    keep = counts > 0
    scores, counts = scores[keep], counts[keep]
    if counts.size == 0:
        return None
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    q = counts.size
    draws = rng.multinomial(q, np.full(q, 1.0 / q), size=n_boot)  # each row: how often each query is drawn
    rates = (draws @ scores) / (draws @ counts)
    lo, hi = np.quantile(rates, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


@dataclass
class BradleyTerry:
    """Bradley-Terry strengths (sum 1), in the order of the input; ``ranking``: indices strongest first.
    ``regularised``: the comparisons did not determine all strengths (some system never won, or
    groups never compared), so one virtual tie per pair of systems was added."""

    strengths: np.ndarray
    ranking: list[int]
    iterations: int
    converged: bool
    regularised: bool

    def prob(self, i: int, j: int) -> float:
        """The model's probability that ``i`` is preferred to ``j``."""
        return float(self.strengths[i] / (self.strengths[i] + self.strengths[j]))


def _strongly_connected(wins: np.ndarray) -> bool:
    """Whether every system reaches every other along "beat at least once" edges (Ford 1957's
    condition for the Bradley-Terry maximum-likelihood estimate to exist)."""
    m = len(wins)
    adj = wins > 0
    for a in (adj, adj.T):
        seen, frontier = {0}, [0]
        while frontier:
            i = frontier.pop()
            for j in np.flatnonzero(a[i]):
                if j not in seen:
                    seen.add(int(j))
                    frontier.append(int(j))
        if len(seen) < m:
            return False
    return True


def bradley_terry(wins, *, max_iter: int = 10000, tol: float = 1e-10) -> BradleyTerry:
    """Bradley-Terry strengths from ``wins[i, j]`` = times i was preferred to j (a tie adds 0.5 to both
    ``wins[i, j]`` and ``wins[j, i]``).

    Why: it ranks all systems at once from whichever pairs were judged, and its strengths give
    ``P(i beats j) = p_i / (p_i + p_j)`` (Bradley & Terry 1952, Biometrika 39:324). Fitted by the
    minorisation-maximisation update of Hunter 2004 (Annals of Statistics 32:384, eq. 3),
    ``p_i <- W_i / sum_j n_ij / (p_i + p_j)``, which increases the likelihood at every step and
    converges when the "beat" graph is strongly connected (Hunter's Assumption 1). When it is not,
    the maximum-likelihood estimate does not exist (a system that never won has strength 0), and
    one virtual tie per pair of systems is added as a weak prior."""
    wins = np.array(wins, dtype=float)
    m = wins.shape[0]
    if wins.ndim != 2 or wins.shape != (m, m) or (wins < 0).any():
        raise ValueError("wins: expected a square matrix of non-negative counts")
    np.fill_diagonal(wins, 0.0)
    if m == 0:
        return BradleyTerry(np.zeros(0), [], 0, True, False)
    regularised = m > 1 and not _strongly_connected(wins)
    if regularised:
        wins = wins + 0.5 * (1 - np.eye(m))
    n = wins + wins.T
    w = wins.sum(axis=1)
    p = np.full(m, 1.0 / m)
    converged, it = m == 1, 0
    for it in range(1, max_iter + 1):  # noqa: B007 (the count is reported)
        if m == 1:
            break
        denom = (n / (p[:, None] + p[None, :])).sum(axis=1)
        new = np.where(denom > 0, w / np.where(denom > 0, denom, 1), p)
        new = new / new.sum()
        delta = np.max(np.abs(np.log(np.maximum(new, 1e-300)) - np.log(np.maximum(p, 1e-300))))
        p = new
        if delta < tol:
            converged = True
            break
    ranking = sorted(range(m), key=lambda i: (-p[i], i))
    return BradleyTerry(p, ranking, it, converged, regularised)


def cohen_kappa(a: Sequence, b: Sequence) -> float | None:
    """Cohen's kappa of two judges' labels of the same items (``a[i]``, ``b[i]``: one item).

    Why: raw agreement is inflated when one label dominates (most recommended items relevant);
    kappa = (p_o - p_e) / (1 - p_e) discounts the agreement expected by chance from each judge's own
    label frequencies (Cohen 1960, Educational and Psychological Measurement 20:37). None with no
    items or when chance agreement is 1 (both judges used one and the same label throughout)."""
    if len(a) != len(b):
        raise ValueError("cohen_kappa: two label lists of one length expected")
    if not len(a):
        return None
    labels = sorted({*a, *b}, key=str)
    ia = np.array([labels.index(x) for x in a])
    ib = np.array([labels.index(x) for x in b])
    p_o = float(np.mean(ia == ib))
    p_e = float(np.sum(np.bincount(ia, minlength=len(labels)) * np.bincount(ib, minlength=len(labels)))) / len(a) ** 2
    return None if p_e >= 1 else (p_o - p_e) / (1 - p_e)


def fleiss_kappa(counts) -> float | None:
    """Fleiss' kappa from ``counts[i, c]`` = how many judges gave item i label c (at least two judges
    per item; the number may differ between items).

    Why: it generalises chance-corrected agreement to many judges who are not the same for every
    item (Fleiss 1971, Psychological Bulletin 76:378): per item ``P_i = (sum_c n_ic² - n_i) /
    (n_i (n_i - 1))``, ``P̄`` their mean, ``p_c`` the label shares over all ratings, ``P_e = sum_c p_c²``,
    kappa = (P̄ - P_e) / (1 - P_e). Items with a single rating are left out. None when nothing is
    left or P_e is 1."""
    counts = np.asarray(counts, dtype=float)
    if counts.ndim != 2:
        raise ValueError("fleiss_kappa: expected an items x labels matrix")
    n_i = counts.sum(axis=1)
    counts, n_i = counts[n_i >= 2], n_i[n_i >= 2]
    if not len(n_i):
        return None
    p_i = ((counts ** 2).sum(axis=1) - n_i) / (n_i * (n_i - 1))
    p_c = counts.sum(axis=0) / n_i.sum()
    p_e = float((p_c ** 2).sum())
    return None if p_e >= 1 else (float(p_i.mean()) - p_e) / (1 - p_e)


def precision_at_k(relevance: Sequence, k: int) -> float:
    """Share of relevant items among the first ``k`` (``relevance[r]``: 0/1 of rank r + 1; a rank
    not judged counts as not relevant, the TREC convention, Voorhees & Harman 2005, *TREC*, ch. 3)."""
    rel = np.asarray(relevance, dtype=float)[:k]
    return float(rel.sum() / k)


def ndcg_at_k(relevance: Sequence, k: int, n_relevant: int | None = None) -> float | None:
    """Normalised discounted cumulative gain at ``k`` for binary relevance.

    Why: it rewards relevant items near the top, ``DCG = sum_r rel_r / log2(r + 1)``, divided by the
    DCG of the ideal ranking (Järvelin & Kekäläinen 2002, ACM TOIS 20:422). The ideal places
    ``n_relevant`` relevant items first (the relevant items known for the query, e.g. pooled over
    both rankings a judge saw); by default the list's own relevant items. None when nothing is
    relevant (the ideal is 0)."""
    rel = np.asarray(relevance, dtype=float)[:k]
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = float((rel * discounts[:len(rel)]).sum())
    ideal_n = int(rel.sum()) if n_relevant is None else int(n_relevant)
    ideal = float(discounts[:min(ideal_n, k)].sum())
    return None if ideal == 0 else dcg / ideal


def judgments_needed(win_rate: float, *, level: float = 0.95, power: float | None = None) -> int | None:
    """How many judgments in all an observed ``win_rate`` needs before its interval excludes 0.5.

    Why: a normal approximation of the one-sample test of a proportion against 0.5. Without
    ``power`` it is the ``n`` at which ``|p - 0.5| = z sqrt(p(1-p)/n)``, i.e. ``n = z² p(1-p) /
    (p - 0.5)²``: if the observed rate is the true one, the interval then just excludes 0.5 (about
    even odds). With ``power`` (e.g. 0.8) it is the usual sample size ``((z_a sqrt(p0 q0) + z_b
    sqrt(p q)) / (p - p0))²`` with p0 = 0.5 (Fleiss, Levin & Paik 2003, *Statistical Methods for
    Rates and Proportions*, sect. 2.5). None when the observed rate is 0.5 (no difference to find)."""
    if not 0 <= win_rate <= 1:
        raise ValueError(f"win rate {win_rate}: expected a proportion")
    d = abs(win_rate - 0.5)
    if d < 1e-12:
        return None
    pq = win_rate * (1 - win_rate)
    z = z_value(level)
    if power is None:
        return max(1, math.ceil(z * z * pq / (d * d)))
    zb = NormalDist().inv_cdf(power)
    return max(1, math.ceil(((z * 0.5 + zb * math.sqrt(pq)) / d) ** 2))
