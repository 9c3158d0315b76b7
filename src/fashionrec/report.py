"""Pictures: training curves, confusion matrix, recommendation rows, precision@k, image grids.

Every function renders with the Agg backend (no display needed), writes its PNG atomically
(:func:`fashionrec.artifacts.atomic_path`) and returns the path. Figures are built as
``matplotlib.figure.Figure`` objects, not through pyplot, so nothing accumulates in pyplot's
global figure list when thousands of pictures are written in one process.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: must precede any pyplot import anywhere in the process

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter
from PIL import Image, ImageOps

from .artifacts import atomic_path
from .errors import DataError

__all__ = ["plot_history", "plot_confusion", "plot_recommendations", "plot_precision_at_k", "grid_images"]

DPI = 110
QUERY_COLOR = "#d62728"


def _save(fig: Figure, out_png) -> Path:
    out_png = Path(out_png)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return out_png


def _number(row: Mapping, key: str) -> float | None:
    v = row.get(key)
    if v is None or isinstance(v, bool):
        return None
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


# --------------------------------------------------------------------------- training curves


def lr_axis_scale(lrs: Sequence[float]) -> str:
    """``log`` for a schedule of steps (x0.1, x0.25), ``linear`` when it spans over 3 decades: a cosine's
    last epoch (~1e-9) on a log axis would flatten the rest of the curve."""
    return "log" if min(lrs) > 0 and max(lrs) / min(lrs) <= 1e3 else "linear"


def plot_history(history: Sequence[Mapping], out_png, title: str | None = None, label_smoothing: float = 0.0) -> Path:
    """Loss and accuracy per epoch, train and val, with the best epoch (lowest val loss) marked.

    ``history`` rows look like ``{"epoch": 1, "train_loss": .., "train_acc": .., "val_loss": ..,
    "val_acc": .., "val_top_k": .., "lr": ..}``; missing, ``None`` or non-finite values are skipped.
    With ``label_smoothing`` the train loss is against smoothed targets (its floor is above 0, and
    above the val loss, which is not smoothed): its legend says so.
    """
    if not isinstance(history, Sequence) or not history or not all(isinstance(r, Mapping) for r in history):
        raise ValueError("history: expected a non-empty list of per-epoch dicts")
    epochs = [e if (e := _number(r, "epoch")) is not None else i + 1 for i, r in enumerate(history)]

    def series(key):
        pts = [(e, v) for e, r in zip(epochs, history) if (v := _number(r, key)) is not None]
        return ([e for e, _ in pts], [v for _, v in pts]) if pts else None

    fig = Figure(figsize=(11, 4.2), layout="constrained")
    ax_loss, ax_acc = fig.subplots(1, 2)
    train_loss = f"train (label smoothing {label_smoothing:g})" if label_smoothing else "train"
    panels = [
        (ax_loss, "loss (cross-entropy)", [("train_loss", train_loss, "C0", "-"), ("val_loss", "val", "C1", "-")]),
        (ax_acc, "accuracy", [("train_acc", "train", "C0", "-"), ("val_acc", "val", "C1", "-"),
                              ("val_top_k", "val top-k", "C1", "--")]),
    ]
    for ax, ylabel, lines in panels:
        for key, label, color, style in lines:
            s = series(key)
            if s:
                ax.plot(*s, style, color=color, marker="o", markersize=3.5, label=label)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if max(epochs) - min(epochs) < 2:                # too few epochs for the locator to stay on integers
            ax.set_xlim(min(epochs) - 1, max(epochs) + 1)
        ax.grid(alpha=0.3)

    val = series("val_loss")
    if val:
        i = int(np.argmin(val[1]))
        best_epoch, best_loss = val[0][i], val[1][i]
        for ax in (ax_loss, ax_acc):
            ax.axvline(best_epoch, color="0.4", linestyle=":", linewidth=1.2,
                       label=f"best epoch {best_epoch:g} (val loss {best_loss:.3f})" if ax is ax_loss else None)
        ax_loss.plot([best_epoch], [best_loss], marker="*", color="C3", markersize=13, linestyle="none", zorder=5)
        best_acc = _number(history[epochs.index(best_epoch)], "val_acc")
        if best_acc is not None:
            ax_acc.plot([best_epoch], [best_acc], marker="*", color="C3", markersize=13, linestyle="none", zorder=5)
    for ax in (ax_loss, ax_acc):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=9, loc="best")
    lr = series("lr")
    if lr and len(set(lr[1])) == 1:                      # constant: say it in the title
        title = f"{title}  (lr {lr[1][0]:g})" if title else f"lr {lr[1][0]:g}"
    elif lr:                                             # scheduled: a faint curve, log axis for steps
        ax_lr = ax_loss.twinx()
        ax_lr.plot(*lr, color="0.55", linewidth=1, linestyle="--", drawstyle="steps-post")
        ax_lr.set_yscale(lr_axis_scale(lr[1]))
        ax_lr.set_ylabel("learning rate", color="0.45")
        ax_lr.tick_params(axis="y", colors="0.45", labelsize=8)
    if title:
        fig.suptitle(title)
    return _save(fig, out_png)


# --------------------------------------------------------------------------- confusion matrix


def plot_confusion(cm, class_names: Sequence[str], out_png, title: str | None = None,
                   normalize: bool = True) -> Path:
    """Heatmap of a confusion matrix (rows = true class, columns = predicted).

    With ``normalize`` the colours and numbers are row percentages (per-class recall) and the
    counts are kept in the cells while there is room; without it, raw counts. Row labels carry
    each class's sample count. Sized for 5-50 classes: cells, fonts and tick labels shrink as
    the class count grows, and cells that are zero are left blank beyond 12 classes.
    """
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] == 0:
        raise ValueError(f"cm: expected a square (n_classes, n_classes) matrix, got shape {cm.shape}")
    if not np.issubdtype(cm.dtype, np.number) or (cm < 0).any():
        raise ValueError("cm: expected non-negative counts")
    n = cm.shape[0]
    names = [str(c) for c in class_names]
    if len(names) != n:
        raise ValueError(f"class_names: has {len(names)} names for a {n}x{n} matrix")

    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(support[:, None] > 0, cm / np.maximum(support[:, None], 1), 0.0)
    shown = frac if normalize else cm.astype(np.float64)

    cell = float(np.interp(n, [5, 50], [0.62, 0.26]))         # inches per cell
    font = float(np.interp(n, [5, 12, 25, 50], [10, 8, 6, 5]))
    tick_font = float(np.interp(n, [5, 50], [10, 6]))
    char_w = tick_font * 0.6 / 72                            # inches per character of a tick label
    longest = max(len(s) for s in names)
    x_room = longest * char_w * (0.75 if n <= 12 else 1.0)     # 45 or 90 degree labels below the matrix
    y_room = (longest + 6) * char_w                          # "name (count)" left of it
    side = n * cell
    fig = Figure(figsize=(side + y_room + 1.6, side + x_room + 1.2), layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else max(shown.max(), 1),
                   interpolation="none")
    cbar = fig.colorbar(im, ax=ax, fraction=0.046 if n > 8 else 0.06, pad=0.02)
    cbar.ax.tick_params(labelsize=tick_font)
    if normalize:
        cbar.ax.yaxis.set_major_formatter(PercentFormatter(xmax=1))

    # Up to 12 classes: percentage and count; up to 25: percentage; beyond: whole percent
    # without the sign, and cells under 0.5% left blank so the structure stays visible.
    threshold = 0.55 * (1 if normalize else max(shown.max(), 1))
    for i in range(n):
        for j in range(n):
            if n > 12 and (cm[i, j] == 0 or (normalize and n > 25 and frac[i, j] < 0.005)):
                continue
            if not normalize:
                text = f"{int(cm[i, j])}"
            elif n > 25:
                text = f"{100 * frac[i, j]:.0f}"
            else:
                pct = 100 * frac[i, j]
                text = f"{pct:.0f}%" if pct >= 9.5 or pct == 0 else f"{pct:.1f}%"
                if n <= 12:
                    text += f"\n{int(cm[i, j])}"
            color = "white" if shown[i, j] > threshold else ("0.6" if cm[i, j] == 0 else "0.15")
            ax.text(j, i, text, ha="center", va="center", fontsize=font, linespacing=1.1, color=color)

    ax.set_xticks(range(n), names, fontsize=tick_font, rotation=45 if n <= 12 else 90,
                  ha="right" if n <= 12 else "center", rotation_mode="anchor" if n <= 12 else "default")
    ax.set_yticks(range(n), [f"{c} ({s})" for c, s in zip(names, support)], fontsize=tick_font)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true (samples)")
    ax.tick_params(length=0)
    ax.set_xticks(np.arange(n + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(n + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="white", linewidth=0.6)
    ax.tick_params(which="minor", length=0)
    total = int(cm.sum())
    acc = np.trace(cm) / total if total else float("nan")
    sub = f"n={total}, accuracy {acc:.3f}" + (", cells: % of the true class" if normalize else ", cells: counts")
    ax.set_title(f"{title}\n{sub}" if title else sub, fontsize=11)
    return _save(fig, out_png)


# --------------------------------------------------------------------------- images


def _load_rgb(source, thumb: int) -> Image.Image | None:
    """An RGB image fitted into ``thumb`` x ``thumb`` from a path or PIL image; None if unreadable."""
    from .data.images import _to_rgb, decode_image

    try:
        img = _to_rgb(source) if isinstance(source, Image.Image) else decode_image(source)
    except DataError:
        return None
    return ImageOps.contain(img, (thumb, thumb), Image.LANCZOS)  # scale down or up, keep aspect


def _chars_across(pixels: int, font_pt: float) -> int:
    """How many characters of a ``font_pt`` title fit across ``pixels`` (average glyph ~0.6 em)."""
    return max(6, int(pixels / (0.6 * font_pt * DPI / 72)))


def _wrap(text: str, width: int) -> str:
    return "\n".join(textwrap.fill(line, width) if line else "" for line in str(text).split("\n"))


def _show_tile(ax, source, title: str, thumb: int, title_font: float, wrap: int):
    img = _load_rgb(source, thumb) if source is not None else None
    if img is None:
        ax.imshow(np.full((thumb, thumb, 3), 0.9))
        ax.text(thumb / 2, thumb / 2, "cannot open\nimage", ha="center", va="center", fontsize=title_font, color="0.3")
    else:
        # Centre on a square white canvas so all tiles share one size whatever the aspect ratio.
        canvas = Image.new("RGB", (thumb, thumb), "white")
        canvas.paste(img, ((thumb - img.width) // 2, (thumb - img.height) // 2))
        ax.imshow(np.asarray(canvas))
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(_wrap(title, wrap), fontsize=title_font, linespacing=1.15, pad=3)


def plot_recommendations(queries: Sequence[Mapping], out_png, thumb: int = 128) -> Path:
    """The paper's Figure 2: one row per query -- the query image, then its ranked results.

    Each query is ``{"image": path or PIL.Image, "title": str, "results": [{"image": ..., "title": str}, ...]}``
    (titles may hold ``\\n``). The query column is framed in red and set apart by a gap. An image
    that cannot be decoded is drawn as a grey tile saying so, rather than losing the whole figure.
    """
    if not isinstance(queries, Sequence) or not queries or not all(isinstance(q, Mapping) for q in queries):
        raise ValueError("queries: expected a non-empty list of {'image', 'title', 'results'} dicts")
    if isinstance(thumb, bool) or not isinstance(thumb, int) or not 16 <= thumb <= 1024:
        raise ValueError(f"thumb: expected an integer number of pixels in [16, 1024], got {thumb!r}")
    for i, q in enumerate(queries):
        if "image" not in q or not isinstance(q.get("results", []), Sequence):
            raise ValueError(f"queries[{i}]: needs 'image' and a list of 'results'")
        for j, r in enumerate(q.get("results", [])):
            if not isinstance(r, Mapping) or "image" not in r:
                raise ValueError(f"queries[{i}]['results'][{j}]: expected a dict with 'image'")
    k = max(1, max(len(q.get("results", [])) for q in queries))

    tile = thumb / DPI                                   # inches: one image pixel per output pixel
    title_font = float(np.clip(thumb / 16, 6.5, 9))
    wrap = _chars_across(thumb, title_font)
    titles = [q.get("title", "") for q in queries] + [r.get("title", "") for q in queries for r in q.get("results", [])]
    lines = max((_wrap(t, wrap).count("\n") + 1 for t in titles), default=1)
    title_h = lines * title_font * 1.3 / 72 + 0.08
    gap = 0.35 * tile
    fig = Figure(figsize=(tile * (k + 1) + gap + 0.3, len(queries) * (tile + title_h) + 0.2), layout="constrained")
    fig.get_layout_engine().set(w_pad=0.04, h_pad=0.08, wspace=0.03, hspace=0.02)
    grid = fig.add_gridspec(len(queries), k + 2, width_ratios=[tile, gap] + [tile] * k)
    for row, q in enumerate(queries):
        ax = fig.add_subplot(grid[row, 0])
        _show_tile(ax, q["image"], q.get("title", "query"), thumb, title_font, wrap)
        for spine in ax.spines.values():                 # frame the query
            spine.set_visible(True)
            spine.set_color(QUERY_COLOR)
            spine.set_linewidth(3)
        ax.title.set_color(QUERY_COLOR)
        for col, r in enumerate(q.get("results", [])):
            _show_tile(fig.add_subplot(grid[row, col + 2]), r["image"], r.get("title", f"#{col + 1}"),
                       thumb, title_font, wrap)
    return _save(fig, out_png)


def grid_images(images: Sequence, titles: Sequence[str] | None, out_png, ncols: int | None = None,
                thumb: int = 160, suptitle: str | None = None) -> Path:
    """A labelled grid of images (paths, PIL images or HxW[x3] arrays), ``ncols`` per row.

    ``ncols`` defaults to a near-square layout. Arrays may be uint8 or floats in [0, 1].
    """
    images = list(images)
    if not images:
        raise ValueError("images: expected at least one image")
    titles = [""] * len(images) if titles is None else [str(t) for t in titles]
    if len(titles) != len(images):
        raise ValueError(f"titles: has {len(titles)} entries for {len(images)} images")
    if ncols is None:
        ncols = math.ceil(math.sqrt(len(images)))
    if isinstance(ncols, bool) or not isinstance(ncols, int) or ncols < 1:
        raise ValueError(f"ncols: expected a positive integer, got {ncols!r}")
    if isinstance(thumb, bool) or not isinstance(thumb, int) or not 16 <= thumb <= 1024:
        raise ValueError(f"thumb: expected an integer number of pixels in [16, 1024], got {thumb!r}")
    ncols = min(ncols, len(images))
    nrows = math.ceil(len(images) / ncols)

    def as_source(img):
        if isinstance(img, np.ndarray):
            a = img
            if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (1, 3, 4)):
                raise ValueError(f"images: array of shape {a.shape} is not an HxW or HxWxC image")
            if a.dtype != np.uint8:
                a = np.clip(np.nan_to_num(a.astype(np.float64)) * 255 + 0.5, 0, 255).astype(np.uint8)
            return Image.fromarray(a.squeeze(-1) if a.ndim == 3 and a.shape[2] == 1 else a)
        return img

    tile = thumb / DPI
    title_font = float(np.clip(thumb / 16, 6.5, 9))
    wrap = _chars_across(thumb, title_font)
    lines = max(_wrap(t, wrap).count("\n") + 1 if t else 0 for t in titles)
    title_h = lines * title_font * 1.3 / 72 + 0.06
    fig = Figure(figsize=(ncols * tile + 0.2, nrows * (tile + title_h) + (0.4 if suptitle else 0.1)),
                 layout="constrained")
    fig.get_layout_engine().set(w_pad=0.04, h_pad=0.08, wspace=0.03, hspace=0.02)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax, img, t in zip(axes, images, titles):
        _show_tile(ax, as_source(img), t, thumb, title_font, wrap)
    for ax in axes[len(images):]:
        ax.set_visible(False)
    if suptitle:
        fig.suptitle(suptitle)
    return _save(fig, out_png)


# --------------------------------------------------------------------------- retrieval


def plot_precision_at_k(curves: Mapping[str, Mapping[int, float]], out_png, title: str | None = None,
                        ylabel: str = "precision@k") -> Path:
    """Precision@k against k, one line per variant (e.g. "concat raw", "concat l2", "category only")."""
    if not isinstance(curves, Mapping) or not curves:
        raise ValueError("curves: expected a non-empty {variant: {k: precision}} mapping")
    ks_all = set()
    fig = Figure(figsize=(6.4, 4.4), layout="constrained")
    ax = fig.add_subplot()
    markers = "osD^vP*X"
    for i, (name, curve) in enumerate(curves.items()):
        if not isinstance(curve, Mapping) or not curve:
            raise ValueError(f"curves[{name!r}]: expected a non-empty {{k: value}} mapping")
        try:
            pts = sorted((int(k), float(v)) for k, v in curve.items())
        except (TypeError, ValueError):
            raise ValueError(f"curves[{name!r}]: keys must be integers k and values numbers") from None
        ks_all.update(k for k, _ in pts)
        ax.plot([k for k, _ in pts], [v for _, v in pts], marker=markers[i % len(markers)], label=str(name),
                linewidth=1.8, markersize=6)
    ks_all = sorted(ks_all)
    ax.set_xticks(ks_all)
    if len(ks_all) > 1 and ks_all[-1] / ks_all[0] >= 20:
        ax.set_xscale("log")
        ax.set_xticks(ks_all, [str(k) for k in ks_all])
        ax.minorticks_off()
    ax.set_xlabel("k (items retrieved)")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1.02)
    ax.yaxis.set_major_formatter(PercentFormatter(xmax=1))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9, loc="best")
    if title:
        ax.set_title(title, fontsize=11)
    return _save(fig, out_png)
