"""Each picture is a real PNG of a plausible size, written atomically; bad input is refused."""

import numpy as np
import pytest
from PIL import Image

from fashionrec import report as R


def _open_png(path, min_w=200, min_h=100):
    assert path.is_file() and path.stat().st_size > 2000
    with Image.open(path) as im:
        assert im.format == "PNG"
        w, h = im.size
        assert min_w <= w <= 6000 and min_h <= h <= 6000, im.size
        colors = np.asarray(im.convert("RGB")).reshape(-1, 3)
    assert len(np.unique(colors[::7], axis=0)) > 10          # something was drawn
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]   # no temp file left
    return w, h


def _history(n, val=True):
    rows = []
    for e in range(1, n + 1):
        row = {"epoch": e, "train_loss": 2 / e, "train_acc": 1 - 0.5 / e, "lr": 1e-3}
        if val:
            row.update(val_loss=1.5 / e + 0.05 * e, val_acc=0.8 - 0.4 / e, val_top_k=0.9)
        rows.append(row)
    return rows


def test_plot_history(tmp_path):
    out = R.plot_history(_history(8), tmp_path / "sub" / "history.png", title="cat")
    assert out == tmp_path / "sub" / "history.png"
    w, h = _open_png(out, 600, 250)
    assert w > h                                            # two panels side by side


def test_plot_history_tolerates_missing_keys(tmp_path):
    rows = _history(1, val=False)
    _open_png(R.plot_history(rows, tmp_path / "one.png"), 600, 250)
    rows = _history(5)
    rows[2]["val_loss"] = float("nan")
    del rows[3]["val_acc"]
    for r in rows:
        r["lr"] = 1e-3 / r["epoch"]                          # a schedule: drawn on its own axis
    _open_png(R.plot_history(rows, tmp_path / "gaps.png"))
    with pytest.raises(ValueError, match="history"):
        R.plot_history([], tmp_path / "x.png")


def test_lr_axis_is_log_for_steps_and_linear_for_a_cosine_to_zero():
    assert R.lr_axis_scale([1e-2, 2.5e-3, 6.25e-4]) == "log"
    cosine = [4e-3 * (1 + np.cos(np.pi * e / 14)) / 2 for e in range(1, 15)]  # its last epoch ~0
    assert R.lr_axis_scale(cosine) == "linear" and R.lr_axis_scale([1e-3, 0.0]) == "linear"


@pytest.mark.parametrize("n", [5, 9, 30])
def test_plot_confusion_scales_with_classes(tmp_path, n):
    rng = np.random.default_rng(n)
    cm = rng.integers(0, 20, (n, n)) + np.diag(rng.integers(50, 100, n))
    cm[1] = 0                                                # a class with no samples
    w, h = _open_png(R.plot_confusion(cm, [f"class {i}" for i in range(n)], tmp_path / "cm.png", title="t"))
    assert w > 30 * n and h > 30 * n                         # cells do not collapse


def test_plot_confusion_counts_and_validation(tmp_path):
    cm = np.array([[5, 1], [2, 7]])
    _open_png(R.plot_confusion(cm, ["a", "b"], tmp_path / "cm.png", normalize=False))
    with pytest.raises(ValueError, match="class_names"):
        R.plot_confusion(cm, ["a"], tmp_path / "bad.png")
    with pytest.raises(ValueError, match="cm"):
        R.plot_confusion(np.ones((2, 3)), ["a", "b"], tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_plot_recommendations(tmp_path):
    on_disk = tmp_path / "item.png"
    Image.new("RGBA", (90, 60), (200, 10, 10, 128)).save(on_disk)       # mode converted to RGB
    thumb = 96
    queries = [
        {"image": Image.new("L", (50, 80), 128), "title": "query\nDress (0.93)",
         "results": [{"image": on_disk, "title": f"#{r}  d=0.{r}\nDress, striped"} for r in range(1, 5)]},
        {"image": str(on_disk), "title": "query",
         "results": [{"image": tmp_path / "missing.jpg", "title": "#1"}]},          # drawn as a grey tile
    ]
    w, h = _open_png(R.plot_recommendations(queries, tmp_path / "rec.png", thumb=thumb))
    assert w >= 5 * thumb and h >= 2 * thumb                # 1 query + 4 results per row, 2 rows
    with pytest.raises(ValueError, match="queries"):
        R.plot_recommendations([], tmp_path / "x.png")
    with pytest.raises(ValueError, match="thumb"):
        R.plot_recommendations(queries, tmp_path / "x.png", thumb=0)


def test_plot_precision_at_k(tmp_path):
    curves = {"concat raw": {1: 0.6, 5: 0.5, 10: 0.45}, "texture only": {1: 0.3, 5: 0.28, 10: 0.25}}
    _open_png(R.plot_precision_at_k(curves, tmp_path / "p.png", title="leave-one-out"), 400, 300)
    with pytest.raises(ValueError, match="curves"):
        R.plot_precision_at_k({"a": {"one": 0.5}}, tmp_path / "x.png")


def test_grid_images(tmp_path):
    images = [Image.new("RGB", (64, 64), (i * 40, 100, 200)) for i in range(5)]
    images.append(np.random.default_rng(0).random((32, 48, 3)))           # float array in [0, 1]
    w, h = _open_png(R.grid_images(images, [f"img {i}" for i in range(6)], tmp_path / "g.png", ncols=3, thumb=80))
    assert w >= 3 * 80 and h >= 2 * 80
    with pytest.raises(ValueError, match="titles"):
        R.grid_images(images, ["one"], tmp_path / "x.png")
    with pytest.raises(ValueError, match="ncols"):
        R.grid_images(images, None, tmp_path / "x.png", ncols=0)
