"""Team-draft interleaving (Radlinski, Kurup & Joachims 2008, "How does clickthrough data reflect
retrieval quality?", CIKM, Algorithm 2) and its click credit.

Why interleave: a live shop shows each visitor one list merged from two systems' rankings, and the
system whose contributed items get more clicks is preferred. Every visitor compares both systems
on the same query, so it needs far fewer visitors than an A/B test of click rates.

The published algorithm, as here: two teams (``a``, ``b``) pick alternately; the team with fewer
picks so far goes next and a coin decides between equal teams; each pick is the team's highest
ranked item not yet in the merged list (an item both rank is added once, by whichever team picks
it first); the merge stops at ``k`` items or when either ranking has nothing left to add. A click
credits the team that contributed the item; the team with more clicked items wins the impression,
equal counts are no preference.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence

from .stats import judgments_needed, wilson_interval

__all__ = ["team_draft", "credit", "interleaving_preference"]


def _coin(rng):
    if rng is None:
        rng = random.Random()
    elif isinstance(rng, int) and not isinstance(rng, bool):
        rng = random.Random(rng)
    return lambda: rng.random() < 0.5


def team_draft(ranking_a: Sequence, ranking_b: Sequence, k: int, rng=None) -> tuple[list, list[str]]:
    """Merge two rankings by team-draft interleaving; return ``(merged, teams)``, ``teams[i]`` being
    ``"a"`` or ``"b"``: which ranking contributed ``merged[i]``.

    ``rng``: anything with ``.random()`` (random.Random, a numpy Generator), an int seed, or None.
    Each tie between the teams' sizes takes one coin (``rng.random() < 0.5``: team ``a`` first)."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ValueError(f"k {k!r}: expected a non-negative integer")
    heads = _coin(rng)
    merged, teams, shown = [], [], set()
    ia = ib = 0
    picks = {"a": 0, "b": 0}
    while len(merged) < k:
        while ia < len(ranking_a) and ranking_a[ia] in shown:  # each team's next not-yet-shown item
            ia += 1
        while ib < len(ranking_b) and ranking_b[ib] in shown:
            ib += 1
        if ia >= len(ranking_a) or ib >= len(ranking_b):
            break
        team = "a" if picks["a"] < picks["b"] or (picks["a"] == picks["b"] and heads()) else "b"
        item = ranking_a[ia] if team == "a" else ranking_b[ib]
        merged.append(item)
        teams.append(team)
        shown.add(item)
        picks[team] += 1
    return merged, teams


def credit(teams: Sequence[str], merged: Sequence, clicks: Iterable) -> str | None:
    """The impression's winner: ``"a"`` or ``"b"``, the team with more distinct clicked items, or
    None (no clicks, or as many for each: no preference). Clicks on items not shown are ignored."""
    team_of = {str(item): t for item, t in zip(merged, teams)}
    clicked = {str(c) for c in clicks} & team_of.keys()
    h_a = sum(team_of[c] == "a" for c in clicked)
    h_b = len(clicked) - h_a
    return "a" if h_a > h_b else "b" if h_b > h_a else None


def interleaving_preference(impressions: Iterable[dict], level: float = 0.95) -> dict:
    """The preference for ``a`` over ``b`` over impressions ``{"items": [(item, team), ...],
    "clicks": [item, ...]}`` (as :meth:`JudgmentStore.impressions` returns them).

    Impressions without clicks carry no preference and are left out (counted in ``no_clicks``);
    among the others, ties (equal clicks) count half, as in the side-by-side win rate, so
    ``win_rate = (wins + ties / 2) / n`` with a Wilson interval (:func:`.stats.wilson_interval`);
    ``delta`` is ``win_rate - 0.5`` (Chapelle, Joachims, Radlinski & Yue 2012, ACM TOIS 30:6)."""
    wins = losses = ties = none = total = 0
    for imp in impressions:
        total += 1
        items = imp.get("items", [])
        clicked = {str(c) for c in imp.get("clicks", [])} & {str(i) for i, _ in items}
        if not clicked:
            none += 1
            continue
        who = credit([t for _, t in items], [i for i, _ in items], clicked)
        wins, losses, ties = wins + (who == "a"), losses + (who == "b"), ties + (who is None)
    n = wins + losses + ties
    rate = (wins + ties / 2) / n if n else None
    interval = wilson_interval(wins + ties / 2, n, level) if n else None
    separated = bool(interval and (interval[0] > 0.5 or interval[1] < 0.5))
    needed = None if separated or rate is None else judgments_needed(rate, level=level)
    return {"impressions": total, "no_clicks": none, "n": n, "wins": wins, "losses": losses, "ties": ties,
            "win_rate": rate, "delta": None if rate is None else rate - 0.5,
            "interval": list(interval) if interval else None, "separated": separated,
            "impressions_needed": None if needed is None else {"total": needed, "more": max(0, needed - n)}}
