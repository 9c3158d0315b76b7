"""One study's judgments, analysed: what ``fashionrec evaluate --judgments study.db`` prints and writes.

:func:`analyze` reads a study (:class:`~.store.JudgmentStore` or its path) and returns a plain dict:

- ``pairs``: per pair of systems (``a`` before ``b`` in the study's order) wins of ``a``, losses,
  ties, the win rate ``(wins + ties/2) / n`` with a 95 % Wilson interval and a bootstrap interval
  over queries, whether the Wilson interval excludes 0.5 (``separated``) and, when not, how many
  judgments would (``judgments_needed``);
- ``bradley_terry``: strengths and a ranking of all judged systems;
- ``agreement``: Cohen's kappa per pair of judges and Fleiss' kappa over all judges, on the
  preferences (same query and systems) and on the item marks (same query and item);
- ``marks``: precision@k and nDCG@k per system from the item marks;
- ``interleaving``: per pair of systems, the team-draft click preference with its interval.

:func:`write_report` writes it as ``judgments.json`` and ``judgments.png``; :func:`format_summary`
is the text to print. :func:`pairwise` and :func:`bradley_terry_ranking` work on plain answer
rows, so simulations exercise the very code the report uses.
"""

from __future__ import annotations

import math
from collections import defaultdict
from itertools import combinations
from pathlib import Path

import numpy as np

from ..artifacts import atomic_path, write_json
from . import stats
from .interleave import interleaving_preference
from .store import JudgmentStore

__all__ = ["analyze", "pairwise", "bradley_terry_ranking", "agreement", "mark_metrics", "write_report",
           "format_summary"]


def _names(answers, systems) -> list[str]:
    names = list(systems or [])
    for r in answers:
        for s in (r["left"], r["right"]):
            if s not in names:
                names.append(s)
    return names


def _oriented(r: dict, order: dict) -> tuple[str, str, float]:
    """(a, b, score of a): a before b in the study's order; score 1 a preferred, 0 b, 0.5 same."""
    left, right, choice = r["left"], r["right"], r["choice"]
    score = {"left": 1.0, "right": 0.0, "same": 0.5}[choice]
    return (left, right, score) if order[left] < order[right] else (right, left, 1.0 - score)


def pairwise(answers, systems=None, *, level: float = 0.95, n_boot: int = 2000, seed: int = 0) -> list[dict]:
    """Per pair of systems with answers: counts, win rate of ``a`` and its intervals.

    ``answers``: dicts with ``query_id`` (or ``query``), ``left``, ``right``, ``choice`` (as
    :meth:`JudgmentStore.answers` returns them); ``systems``: names in the study's order."""
    names = _names(answers, systems)
    order = {s: i for i, s in enumerate(names)}
    per = defaultdict(lambda: defaultdict(lambda: [0.0, 0]))  # (a, b) -> query -> [score, n]
    counts = defaultdict(lambda: [0, 0, 0])  # (a, b) -> wins, losses, ties
    for r in answers:
        a, b, score = _oriented(r, order)
        cell = per[(a, b)][r.get("query_id", r.get("query"))]
        cell[0] += score
        cell[1] += 1
        counts[(a, b)][0 if score == 1 else 1 if score == 0 else 2] += 1
    out = []
    for idx, (a, b) in enumerate(sorted(per, key=lambda p: (order[p[0]], order[p[1]]))):
        wins, losses, ties = counts[(a, b)]
        n = wins + losses + ties
        rate = (wins + ties / 2) / n
        wilson = stats.wilson_interval(wins + ties / 2, n, level)
        cells = np.array(list(per[(a, b)].values()))
        boot = stats.bootstrap_win_rate(cells[:, 0], cells[:, 1], n_boot=n_boot, level=level,
                                        rng=np.random.default_rng([seed, idx]))
        separated = wilson[0] > 0.5 or wilson[1] < 0.5
        needed = None if separated else stats.judgments_needed(rate, level=level)
        needed80 = None if separated else stats.judgments_needed(rate, level=level, power=0.8)
        out.append({
            "a": a, "b": b, "n": n, "wins": wins, "losses": losses, "ties": ties, "queries": len(cells),
            "win_rate": rate, "wilson": list(wilson), "bootstrap": list(boot), "separated": separated,
            "preferred": (a if rate > 0.5 else b) if separated else None,
            "judgments_needed": None if rate == 0.5 or separated else {
                "total": needed, "more": max(0, needed - n), "more_for_80_power": max(0, needed80 - n)},
        })
    return out


def bradley_terry_ranking(answers, systems=None) -> dict:
    """Bradley-Terry strengths of the systems that have answers (ties half a win each)."""
    names = [s for s in _names(answers, systems) if any(s in (r["left"], r["right"]) for r in answers)]
    order = {s: i for i, s in enumerate(names)}
    wins = np.zeros((len(names), len(names)))
    for r in answers:
        a, b, score = _oriented(r, order)
        wins[order[a], order[b]] += score
        wins[order[b], order[a]] += 1 - score
    bt = stats.bradley_terry(wins)
    unjudged = [s for s in (systems or []) if s not in order]
    return {"ranking": [names[i] for i in bt.ranking],
            "strengths": {names[i]: float(bt.strengths[i]) for i in bt.ranking},
            "iterations": bt.iterations, "converged": bt.converged, "regularised": bt.regularised,
            "unjudged": unjudged}


def _kappas(labels: dict) -> dict:
    """``labels[unit][judge] = label`` -> Fleiss over units with two or more judges, Cohen per judge pair."""
    shared = {u: j for u, j in labels.items() if len(j) >= 2}
    cats = sorted({lab for j in shared.values() for lab in j.values()}, key=str)
    counts = np.array([[sum(v == c for v in j.values()) for c in cats] for j in shared.values()]).reshape(
        len(shared), len(cats))
    by_pair = defaultdict(lambda: ([], []))
    for j in shared.values():
        for x, y in combinations(sorted(j), 2):
            by_pair[(x, y)][0].append(j[x])
            by_pair[(x, y)][1].append(j[y])
    cohen = [{"judges": [x, y], "n": len(la), "kappa": stats.cohen_kappa(la, lb)}
             for (x, y), (la, lb) in sorted(by_pair.items(), key=lambda kv: -len(kv[1][0])) if len(la) >= 2]
    return {"units": len(shared), "judges": len({x for j in shared.values() for x in j}),
            "fleiss": stats.fleiss_kappa(counts) if len(shared) else None, "cohen": cohen[:50]}


def agreement(answers, marks, systems=None) -> dict:
    """Agreement between judges: on preferences (same query and pair of systems; labels ``a``, ``b``,
    ``same``) and on item marks (same query and item; relevant or not). A judge's latest label of
    a unit counts."""
    order = {s: i for i, s in enumerate(_names(answers, systems))}
    prefs = defaultdict(dict)
    for r in answers:
        a, b, score = _oriented(r, order)
        prefs[(r.get("query_id", r.get("query")), a, b)][r["judge"]] = {1.0: "a", 0.0: "b"}.get(score, "same")
    items = defaultdict(dict)
    for m in marks:
        items[(m["query_id"], m["item"])][m["judge"]] = int(m["relevant"])
    return {"preferences": _kappas(prefs), "marks": _kappas(items)}


def mark_metrics(marks, systems=None, ks=(5, 10)) -> dict:
    """Precision@k and nDCG@k per system from item marks, averaged over the marked lists.

    A list is one system's side of one answered pair. An unmarked rank counts as not relevant
    (``judged@k`` says how much of the top k was marked). nDCG's ideal is the relevant items the
    judge found in either list of the pair (a pooled recall base, as in TREC); a pair where the
    judge found nothing relevant has no nDCG. A k beyond the deepest marked rank is left out."""
    deepest = max((int(m["rank"]) for m in marks), default=0)
    ks = [k for k in ks if k <= deepest] or ([min(ks)] if marks and ks else [])
    lists = defaultdict(dict)  # (pair, system) -> rank -> relevant
    pool = defaultdict(set)  # pair -> relevant items
    for m in marks:
        lists[(m["pair_id"], m["system"])][int(m["rank"])] = int(m["relevant"])
        if m["relevant"]:
            pool[m["pair_id"]].add(str(m["item"]))
    acc = defaultdict(lambda: defaultdict(list))
    for (pair, system), ranks in lists.items():
        acc[system]["lists"].append(1)
        for k in ks:
            rel = [ranks.get(r, 0) for r in range(1, k + 1)]
            acc[system][f"p@{k}"].append(stats.precision_at_k(rel, k))
            acc[system][f"judged@{k}"].append(sum(r in ranks for r in range(1, k + 1)) / k)
            nd = stats.ndcg_at_k(rel, k, n_relevant=len(pool[pair]))
            if nd is not None:
                acc[system][f"ndcg@{k}"].append(nd)
    out = {}
    for s in [*(systems or []), *sorted(set(acc) - set(systems or []))]:
        if s in acc:
            out[s] = {"lists": len(acc[s]["lists"]),
                      **{key: (float(np.mean(v)) if v else None) for key, v in acc[s].items() if key != "lists"}}
    return out


def analyze(store_or_path, *, ks=(5, 10), level: float = 0.95, n_boot: int = 2000, seed: int = 0) -> dict:
    """Everything the study's judgments say, as a JSON-ready dict (see the module's docstring)."""
    own = not isinstance(store_or_path, JudgmentStore)
    store = JudgmentStore.open(store_or_path, create=False) if own else store_or_path
    try:
        info, systems, answers = store.info(), store.systems(), store.answers()
        marks, impressions = store.marks(), store.impressions()
    finally:
        if own:
            store.close()
    names = [s["name"] for s in systems]
    seconds = [r["seconds"] for r in answers if r["seconds"] is not None]
    by_pair = defaultdict(list)
    for imp in impressions:
        by_pair[(imp["a"], imp["b"])].append(imp)
    interleaving = [{"a": a, "b": b, **interleaving_preference(imps, level)} for (a, b), imps in by_pair.items()]
    return {
        "study": info,
        "level": level,
        "systems": [{k: s[k] for k in ("name", "index_path", "index_sha256", "options")} for s in systems],
        "counts": {"answers": len(answers), "pending": info["pairs"] - len(answers),
                   "judges": len({r["judge"] for r in answers}), "queries": len({r["query_id"] for r in answers}),
                   "median_seconds": float(np.median(seconds)) if seconds else None},
        "pairs": pairwise(answers, names, level=level, n_boot=n_boot, seed=seed),
        "bradley_terry": bradley_terry_ranking(answers, names),
        "agreement": agreement(answers, marks, names),
        "marks": mark_metrics(marks, names, ks),
        "interleaving": interleaving,
    }


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def format_summary(result: dict) -> str:
    """The analysis as lines of text for the terminal."""
    st, c = result["study"], result["counts"]
    lines = [f"study {st['name']!r} ({st['path']}): {c['answers']} answers by {c['judges']} judges on "
             f"{c['queries']} queries, {c['pending']} shown and not answered"]
    level = f"{100 * result['level']:g}%"
    for p in result["pairs"]:
        w, b = p["wilson"], p["bootstrap"]
        line = (f"  {p['a']} vs {p['b']}: {p['wins']}-{p['losses']}-{p['ties']} (win-loss-same), {p['a']} wins "
                f"{_pct(p['win_rate'])}, {level} Wilson [{_pct(w[0])}, {_pct(w[1])}], bootstrap over "
                f"{p['queries']} queries [{_pct(b[0])}, {_pct(b[1])}]: ")
        if p["separated"]:
            line += f"{p['preferred']} preferred"
        elif p["judgments_needed"]:
            line += f"not separated; about {p['judgments_needed']['more']} more judgments would separate them"
        else:
            line += "not separated; no difference observed"
        lines.append(line)
    bt = result["bradley_terry"]
    if bt["ranking"]:
        lines.append("  Bradley-Terry: " + " > ".join(f"{s} ({bt['strengths'][s]:.3f})" for s in bt["ranking"])
                     + (" (regularised: some systems never won or were never compared)" if bt["regularised"] else ""))
    for what, ag in result["agreement"].items():
        if ag["units"]:
            f = ag["fleiss"]
            lines.append(f"  agreement on {what}: Fleiss' kappa {'-' if f is None else f'{f:.2f}'} over "
                         f"{ag['units']} items judged by {ag['judges']} judges")
    for s, m in result["marks"].items():
        lines.append(f"  {s}: " + ", ".join(f"{k} {'-' if v is None else f'{v:.3f}'}" for k, v in m.items()
                                            if k[0] in "pn") + f" ({m['lists']} marked lists)")
    for il in result["interleaving"]:
        if il["n"]:
            i = il["interval"]
            lines.append(f"  interleaving {il['a']} vs {il['b']}: {il['wins']}-{il['losses']}-{il['ties']} over "
                         f"{il['n']} impressions with clicks, {il['a']} wins {_pct(il['win_rate'])} "
                         f"[{_pct(i[0])}, {_pct(i[1])}]" + ("" if il["separated"] else " (not separated)"))
    return "\n".join(lines)


def _plot(result: dict, out_png: Path) -> None:
    from matplotlib.figure import Figure  # no pyplot: nothing global, no display needed

    rows = [(f"{p['a']} vs {p['b']}", p["win_rate"], p["wilson"], p.get("bootstrap"), "#1f77b4", p["n"])
            for p in result["pairs"]]
    rows += [(f"{p['a']} vs {p['b']} (clicks)", p["win_rate"], p["interval"], None, "#ff7f0e", p["n"])
             for p in result["interleaving"] if p["n"]]
    bt = result["bradley_terry"]
    fig = Figure(figsize=(11, max(3.2, 0.45 * len(rows) + 1.6)), layout="constrained")
    ax_w, ax_bt = fig.subplots(1, 2, width_ratios=[3, 2])
    level = f"{100 * result['level']:g} %"
    if rows:
        y = np.arange(len(rows))[::-1]
        for yi, (_, rate, wil, boot, color, n) in zip(y, rows):
            ax_w.errorbar(rate, yi, xerr=[[rate - wil[0]], [wil[1] - rate]], fmt="o", color=color, capsize=4)
            ax_w.annotate(f"n={n}", (wil[1], yi), xytext=(6, 0), textcoords="offset points", va="center", fontsize=8)
            if boot:
                ax_w.plot(boot, [yi - 0.18] * 2, color="#7f7f7f", lw=2, solid_capstyle="butt")
        ax_w.set_yticks(y, [r[0] for r in rows])
        ax_w.set_ylim(-0.8, len(rows) - 0.2)
    else:
        ax_w.text(0.5, 0.5, "no answers yet", ha="center", va="center", transform=ax_w.transAxes)
        ax_w.set_yticks([])
    ax_w.axvline(0.5, color="#d62728", lw=1, ls="--")
    ax_w.set_xlim(0, 1)
    ax_w.set_xlabel(f"win rate of the first system (ties half), {level} Wilson interval; grey: bootstrap")
    ax_w.set_title("Pairwise preferences")
    if bt["ranking"]:
        names = bt["ranking"][::-1]
        ax_bt.barh(names, [bt["strengths"][s] for s in names], color="#2ca02c")
        ax_bt.set_xlabel("Bradley-Terry strength (sum 1)")
    else:
        ax_bt.text(0.5, 0.5, "no answers yet", ha="center", va="center", transform=ax_bt.transAxes)
        ax_bt.set_yticks([])
    ax_bt.set_title("Ranking" + (" (regularised)" if bt["regularised"] else ""))
    c = result["counts"]
    fig.suptitle(f"Study {result['study']['name']}: {c['answers']} answers, {c['judges']} judges, "
                 f"{c['queries']} queries")
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=110)


def _clean(obj):
    """JSON-safe: numpy scalars to Python, non-finite floats to None."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_report(result: dict, out_dir) -> dict[str, Path]:
    """Write ``judgments.json`` and ``judgments.png`` into ``out_dir`` (each atomically); return their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "judgments.json", "png": out_dir / "judgments.png"}
    write_json(paths["json"], _clean(result))
    _plot(result, paths["png"])
    return paths
