"""The ``export`` command and the ``--runtime`` / ``--onnx-precision`` options of ``recommend`` and ``serve``.

Thin over :mod:`fashionrec.onnx_export` and :mod:`fashionrec.onnx_runtime`; :mod:`fashionrec.cli` adds them to
its group (this module imports nothing of it, and nothing heavy: torch only when ``export`` runs).
"""

from __future__ import annotations

import click

SETTINGS = dict(help_option_names=["-h", "--help"], max_content_width=100)
# onnx_runtime's RUNTIMES and PRECISIONS (a test checks), written out: importing it (numpy, the k-NN package)
# would slow every command's start
RUNTIMES = ("auto", "onnx", "torch")
PRECISIONS = ("auto", "fp32", "int8")


def runtime_options(fn):
    """``--runtime`` and ``--onnx-precision``: pass them on as ``runtime=`` and ``onnx_precision=`` of
    ``Recommender.from_index`` / ``serve.serve``."""
    fn = click.option("--onnx-precision", "onnx_precision", type=click.Choice(PRECISIONS), default="auto",
                      show_default=True,
                      help="Which exported graphs runtime onnx runs: int8 (quantised), fp32, or auto (int8 when the "
                           "index has them).")(fn)
    return click.option("--runtime", "runtime", type=click.Choice(RUNTIMES), default="auto", show_default=True,
                        help="Run the query's networks on ONNX Runtime (the graphs `fashionrec export` wrote into the "
                             "index; torch is not imported) or torch; auto: onnx when the index has graphs.")(fn)


@click.command("export", context_settings=SETTINGS)
@click.argument("target", type=click.Path(file_okay=False, exists=True))
@click.option("--format", "fmt", type=click.Choice(["onnx"]), default="onnx", show_default=True,
              help="The graph format.")
@click.option("--int8", is_flag=True,
              help="Also write a statically quantised copy (int8 per-channel weights, QDQ), calibrated on catalog "
                   "images.")
@click.option("--calibration-images", "calibration_images", type=click.IntRange(min=1), default=64,
              show_default=True, help="How many catalog images calibrate the int8 ranges (evenly spaced items).")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="For a run: the folder to write (default RUN-onnx). An index's graphs go into the index.")
@click.option("--calibration", type=click.Path(exists=True), default=None,
              help="For a run with --int8: a folder of images or a catalog CSV to calibrate on.")
@click.option("--no-wait", "no_wait", is_flag=True, help="Fail at once if another writer holds the index.")
def export(target, fmt, int8, calibration_images, out, calibration, no_wait):
    """Export an index's extractors (or one run) as ONNX graphs that run without torch.

    TARGET is an index folder (the graphs go into TARGET/onnx/ and index.json records them with
    their sha256; `recommend` and `serve` then run them on ONNX Runtime) or a run folder
    (written to --out). Each graph takes uint8 RGB images at the run's input size and does the
    run's normalisation itself. --int8 adds a quantised copy calibrated on the catalog.
    """
    from .onnx_export import export_onnx

    written = export_onnx(target, int8=int8, out=out, calibration=calibration, calibration_images=calibration_images,
                          wait=not no_wait, log=click.echo)
    click.echo(f"{fmt} graphs: {written}")
