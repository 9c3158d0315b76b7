"""The ``judge`` command and what ``evaluate --judgments`` calls: thin over :mod:`fashionrec.judgments`.

:mod:`fashionrec.cli` adds :data:`judge` to its group and calls :func:`judgments_report` for
``fashionrec evaluate --judgments study.db``; this module imports nothing of ``fashionrec.cli``
but its shared options (:mod:`fashionrec.cli.options`).
"""

from __future__ import annotations

from pathlib import Path

import click

from ..cli.options import SETTINGS, device_option, friendly_errors
from ..onnx_cli import runtime_options
from .store import JudgmentStore
from .systems import MAX_K, Query, System, load_queries, load_systems, parse_system_list

__all__ = ["judge", "judgments_report", "prepare_study", "serve_study"]


def prepare_study(systems, db, *, study: str | None = None, queries=None, sample: int = 50, seed: int = 0,
                  k: int = 5, device: str = "auto", runtime: str = "auto", onnx_precision: str = "auto", log=None):
    """Load the systems, open (or create) the study and register them and the queries.

    ``systems``: system files (or ``"A.yaml,B.yaml"``, or :class:`~.systems.System` objects loaded
    already); ``queries``: a folder, a CSV or None (the
    study's own queries when it has some, else ``sample`` items of the first system's catalog drawn
    with ``seed``). A restarted study registers the same systems again (a no-op); one whose index
    changed since the study began (sha256) or whose options changed is refused in one line.
    Returns ``(store, systems, queries)``; the caller closes the store."""
    if isinstance(systems, str):
        systems = parse_system_list(systems)
    if systems and all(isinstance(s, System) for s in systems):
        loaded = list(systems)
    else:
        loaded = load_systems([Path(p) for p in systems], default_k=k, device=device, runtime=runtime,
                              onnx_precision=onnx_precision, log=log)
    store = JudgmentStore.open(db, study=study)
    try:
        known = {s["name"] for s in store.systems()}
        # the study's own systems first: a changed index or changed options is refused before anything is added
        for s in sorted(loaded, key=lambda s: s.name not in known):
            store.add_system(s.name, s.index_dir, s.sha256, s.options)
        stored = store.queries()
        if queries is None and stored:
            chosen = [Query(q["image"], q["item"]) for q in stored]
        else:
            chosen = load_queries(queries, loaded, sample=sample, seed=seed)
            store.add_queries([q.image for q in chosen], [q.item for q in chosen])
    except BaseException:
        store.close()
        raise
    if log:
        info = store.info()
        log(f"study {store.study!r} ({Path(db)}): {len(loaded)} systems, {len(chosen)} queries, "
            f"{info['answers']} answers so far")
    return store, loaded, chosen


def serve_study(store, systems, queries, *, host: str = "127.0.0.1", port: int = 8000, limit: int = 50, k: int = 5,
                mode: str = "pairs", seed: int | None = None, log=print) -> None:
    """Serve the judging page until interrupted."""
    import uvicorn

    from .app import create_judge_app

    app = create_judge_app(store, systems, queries, limit=limit, k=k, mode=mode, seed=seed)
    what = "interleaved lists" if mode == "interleave" else f"{limit} pairs per judge"
    log(f"judging page on http://{host}:{port}/ ({what}; Ctrl-C stops, answers are stored as they come)")
    uvicorn.run(app, host=host, port=port, log_level="warning")


def judgments_report(db, out_dir) -> str:
    """``fashionrec evaluate --judgments DB``: analyse the study, write ``judgments.json`` and
    ``judgments.png`` into ``out_dir``; return the summary and one line per file written."""
    from .analysis import analyze, format_summary, write_report

    result = analyze(Path(db))
    paths = write_report(result, out_dir)
    return "\n".join([format_summary(result), *(f"wrote {p}" for p in paths.values())])


@click.command("judge", context_settings=SETTINGS)
@click.option("--systems", "systems", required=True, metavar="A.yaml,B.yaml[,...]",
              help="The systems to compare, one YAML file each (index, k, where, rerank, band, prefer), "
                   "comma-separated.")
@click.option("--db", "db", required=True, type=click.Path(dir_okay=False),
              help="The study's SQLite file: created on first use; a restart continues it.")
@click.option("--study", default=None, help="The study's name (default: the file's stem); another study's file "
              "is refused.")
@click.option("--queries", default=None, type=click.Path(exists=True),
              help="Query images: a folder, or a CSV with a path column (default: the study's, else --sample "
                   "items of the first system's catalog).")
@click.option("--sample", default=50, show_default=True, type=click.IntRange(min=1),
              help="Without --queries: how many catalog items to draw as queries.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1), help="Pairs per judge.")
@click.option("--k", "k", default=5, show_default=True, type=click.IntRange(1, MAX_K),
              help="Items per list, for systems that set no k (and the interleaved list's length).")
@click.option("--interleave", is_flag=True,
              help="Instead of pairs: one shop list merged from two systems by team-draft interleaving; clicks "
                   "are credited to the system that contributed the item.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0),
              help="Seeds the query sample and the draws of pairs, sides and interleavings (each stored).")
@device_option
@runtime_options
@friendly_errors
def judge(systems, db, study, queries, sample, limit, k, interleave, host, port, seed, device, runtime,
          onnx_precision):
    """Ask people which of two rankings is better, on a web page; store every answer in a study.

    Each judge (an anonymous cookie) sees a query photo and two systems' rankings side by side,
    sides and order random, names hidden, and picks left, right or about the same (keys 1/2/3 or
    arrows), optionally marking items relevant or not. `fashionrec evaluate --judgments DB`
    reports win rates with intervals, a Bradley-Terry ranking and agreement between judges.
    """
    store, loaded, chosen = prepare_study(systems, db, study=study, queries=queries, sample=sample, seed=seed, k=k,
                                          device=device or "auto", runtime=runtime, onnx_precision=onnx_precision,
                                          log=click.echo)
    try:
        serve_study(store, loaded, chosen, host=host, port=port, limit=limit, k=k,
                    mode="interleave" if interleave else "pairs", seed=seed, log=click.echo)
    finally:
        store.close()
