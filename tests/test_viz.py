"""Figures: what a person would see in them (titles, colours, pixels, numbers), and the show /
plot / compare / eval --plot commands end to end on two tiny real runs."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

import numpy as np
import pytest
import torch
from data_fixtures import CIFAR10_CLASSES, make_cifar10_python_dir
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb
from PIL import Image

from resnet_cifar import viz
from resnet_cifar.cli import main
from resnet_cifar.compare import compare_runs, markdown_tables, noise_test
from resnet_cifar.data import DeviceLoader, normalization_stats
from resnet_cifar.engine.evaluate import EvalResult
from resnet_cifar.engine.rundir import read_metrics, read_run
from resnet_cifar.errors import ConfigError


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    return make_cifar10_python_dir(tmp_path_factory.mktemp("data"), n_train_per_class=8,
                                   n_test_per_class=4, seed=0, learnable=True)


@pytest.fixture(scope="module")
def runs(tiny_data, tmp_path_factory) -> list[Path]:
    """Two 2-epoch runs of one recipe (seeds 0 and 1), lr stepped after epoch 1, 20 images held
    out for validation: made once for the module."""
    root = tmp_path_factory.mktemp("runs")
    dirs = []
    for seed in (0, 1):
        out = root / f"seed{seed}"
        assert main(["train", "--data", str(tiny_data), "--out", str(out), "--epochs", "2",
                     "--milestones", "1", "--batch-size", "16", "--eval-batch-size", "64",
                     "--threads", "1", "--val-split", "20", "--seed", str(seed),
                     "--device", "cpu"]) == 0
        dirs.append(out)
    return dirs


def png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


def titled_panels(fig) -> list:
    return [ax for ax in fig.axes if ax.get_title()]


def is_green(color) -> bool:
    r, g, b = to_rgb(color)
    return g > 1.5 * r and g > b


def is_red(color) -> bool:
    r, g, b = to_rgb(color)
    return r > 1.5 * g and r > 1.5 * b


class CaptureFigures:
    """Wraps viz.grid.save_figure so a test can inspect the figure a command saved."""

    def __init__(self, monkeypatch):
        self.figures = []
        real = viz.grid.save_figure

        def save(fig, path, *args, **kwargs):
            self.figures.append(fig)
            return real(fig, path, *args, **kwargs)

        monkeypatch.setattr(viz.grid, "save_figure", save)


# ---------------------------------------------------------------------------- prediction grid


@pytest.mark.parametrize("n,shape", [(16, (4, 4)), (10, (3, 4)), (5, (2, 3)), (1, (1, 1)),
                                     (64, (8, 8))])
def test_grid_is_near_square(n, shape):
    assert viz.grid_shape(n) == shape


def test_grid_titles_say_prediction_and_truth_in_green_or_red(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 3, 32, 32), dtype=np.uint8)
    preds, trues = [0, 1, 2, 3, 4], [0, 9, 2, 0, 4]
    fig = viz.prediction_grid(images, preds, trues, CIFAR10_CLASSES, title="five")
    panels = titled_panels(fig)
    assert len(panels) == 5
    for ax, image, p, t in zip(panels, images, preds, trues, strict=True):
        assert ax.get_title() == f"Pred: {CIFAR10_CLASSES[p]}\nTrue: {CIFAR10_CLASSES[t]}"
        color = ax.title.get_color()
        assert is_green(color) if p == t else is_red(color), (p, t, color)
        # the panel shows the image itself, channels last, pixel for pixel
        assert np.array_equal(np.asarray(ax.images[0].get_array()), image.transpose(1, 2, 0))
    assert [is_green(ax.title.get_color()) for ax in panels] == [True, False, True, False, True]
    # 2 x 3 panels of 1.55 x 1.85 inches plus 0.45 for the title, at 100 dpi
    path = viz.save_figure(fig, tmp_path / "grid.png")
    assert png_size(path) == (465, 415)


def test_sixteen_images_make_a_four_by_four_grid():
    images = np.zeros((16, 3, 32, 32), dtype=np.uint8)
    fig = viz.prediction_grid(images, [1] * 16, [1] * 16, CIFAR10_CLASSES)
    panels = titled_panels(fig)
    assert len(panels) == 16
    lefts = {round(ax.get_position().x0, 3) for ax in panels}
    bottoms = {round(ax.get_position().y0, 3) for ax in panels}
    assert len(lefts) == 4 and len(bottoms) == 4
    assert all(is_green(ax.title.get_color()) for ax in panels)


@pytest.mark.parametrize("mode", ["dataset", "half", "imagenet"])
def test_denormalization_round_trips_to_the_uint8_pixels(mode):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (50, 3, 32, 32), dtype=np.uint8)
    images[0] = 0
    images[1] = 255  # the extremes survive too
    stats = ((0.49, 0.48, 0.45), (0.247, 0.243, 0.262))
    mean, std = normalization_stats(mode, stats)
    loader = DeviceLoader(images, np.zeros(50, dtype=np.int64), batch_size=16, train=False,
                          mean=mean, std=std)
    back = torch.cat([viz.denormalize(x, mean, std) for x, _ in loader]).numpy()
    assert back.dtype == np.uint8
    diff = np.abs(back.astype(np.int16) - images.astype(np.int16))
    assert diff.max() <= 1


def test_show_draws_real_test_images_with_their_labels(runs, tiny_data, monkeypatch, capsys):
    capture = CaptureFigures(monkeypatch)
    ckpt = runs[0] / "last.pt"
    assert main(["show", str(ckpt), "--data", str(tiny_data), "--n", "6", "--seed", "2",
                 "--device", "cpu"]) == 0
    out = runs[0] / "predictions.png"  # the default: beside the checkpoint
    assert "wrote" in capsys.readouterr().err and out.is_file()
    assert png_size(out) == (465, 415)  # 2 x 3 panels and the figure title
    (fig,) = capture.figures
    panels = titled_panels(fig)
    assert len(panels) == 6
    # Each panel is a test image of the class its title names as the truth: the picture and
    # the labels stay paired through the shuffle and the normalization.
    from resnet_cifar.config import DataConfig
    from resnet_cifar.engine.inference import load_arrays

    arrays = load_arrays(DataConfig(path=str(tiny_data)), progress=False)
    for ax in panels:
        shown = np.asarray(ax.images[0].get_array()).transpose(2, 0, 1).astype(np.int16)
        diffs = np.abs(arrays.test_images.astype(np.int16) - shown)
        diffs = diffs.reshape(len(diffs), -1).max(1)  # worst pixel error against each image
        match = int(diffs.argmin())
        assert diffs[match] <= 1
        true_name = ax.get_title().split("\n")[1].removeprefix("True: ")
        assert arrays.classes[arrays.test_labels[match]] == true_name


def test_only_wrong_shows_only_red_titles(runs, tiny_data, tmp_path, monkeypatch):
    capture = CaptureFigures(monkeypatch)
    out = tmp_path / "wrong.png"
    assert main(["show", str(runs[0] / "last.pt"), "--data", str(tiny_data), "--only-wrong",
                 "--out", str(out), "--device", "cpu"]) == 0
    assert out.is_file()
    panels = titled_panels(capture.figures[0])
    assert panels, "a 2-epoch model on 40 images makes mistakes"
    for ax in panels:
        pred, true = (line.split(": ")[1] for line in ax.get_title().split("\n"))
        assert pred != true
        assert is_red(ax.title.get_color())


def test_show_split_val_uses_the_validation_split_the_run_recorded(runs, tiny_data, tmp_path,
                                                                   monkeypatch):
    capture = CaptureFigures(monkeypatch)
    # no --val-split given: the checkpoint's config says 20
    assert main(["show", str(runs[0] / "best.pt"), "--data", str(tiny_data), "--split", "val",
                 "--n", "25", "--out", str(tmp_path / "val.png"), "--device", "cpu"]) == 0
    assert len(titled_panels(capture.figures[0])) == 20  # all the split holds


def test_show_with_no_display_says_where_the_file_is(runs, tiny_data, tmp_path, capsys):
    import matplotlib.pyplot as plt

    plt.switch_backend("agg")
    out = tmp_path / "p.png"
    assert main(["show", str(runs[0] / "last.pt"), "--data", str(tiny_data), "--n", "4",
                 "--out", str(out), "--show", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "no display" in err and str(out) in err and "Traceback" not in err
    assert out.is_file()


# ---------------------------------------------------------------------------- curves


def test_lr_changes_are_found_between_epochs():
    rows = [{"epoch": e, "lr": lr} for e, lr in enumerate([0.1, 0.1, 0.01, 0.01, 0.001], 1)]
    assert viz.lr_changes(rows) == [(2, 0.1, 0.01), (4, 0.01, 0.001)]


def test_curves_plot_the_recorded_metrics_and_mark_the_lr_step(runs, tmp_path):
    rows = read_metrics(runs[0])
    fig = viz.curves_figure([read_run(runs[0])])
    loss_ax, acc_ax = fig.axes[:2]
    epochs = [r["epoch"] for r in rows]
    data = {tuple(np.round(line.get_ydata(), 9)) for line in loss_ax.lines
            if list(line.get_xdata()) == epochs}
    assert tuple(np.round([r["train_loss"] for r in rows], 9)) in data
    assert tuple(np.round([r["val_loss"] for r in rows], 9)) in data
    acc = {tuple(np.round(line.get_ydata(), 9)) for line in acc_ax.lines
           if list(line.get_xdata()) == epochs}
    assert tuple(np.round([100 * r["val_acc"] for r in rows], 9)) in acc
    # --milestones 1: lr 0.1 in epoch 1, 0.01 from epoch 2 on, marked where epoch 2 starts
    for ax in (loss_ax, acc_ax):
        verticals = [line for line in ax.lines if line.get_linestyle() == "--"
                     and list(line.get_xdata()) == [1, 1]]
        assert len(verticals) == 1
    assert any("0.1→0.01" in t.get_text() for t in loss_ax.texts)
    path = viz.plot_curves([runs[0]], tmp_path / "c.png")
    assert png_size(path) == (1100, 420)


def test_time_axis_puts_each_epoch_at_its_training_minutes(runs, tmp_path, capsys):
    """--x time: epoch e at the sum of the epoch times through e; the lr step where epoch 2
    starts, the minutes by the end of epoch 1; the comparison figure on the same clock."""
    rows = read_metrics(runs[0])
    minutes = [rows[0]["epoch_time"] / 60, (rows[0]["epoch_time"] + rows[1]["epoch_time"]) / 60]
    fig = viz.curves_figure([read_run(runs[0])], x="time")
    loss_ax, acc_ax = fig.axes[:2]
    acc = {tuple(np.round(line.get_ydata(), 9)) for line in acc_ax.lines
           if np.allclose(line.get_xdata(), minutes)}
    assert tuple(np.round([100 * r["val_acc"] for r in rows], 9)) in acc
    verticals = [line for line in loss_ax.lines if line.get_linestyle() == "--"
                 and len(line.get_xdata()) == 2 and np.allclose(line.get_xdata(), minutes[0])]
    assert len(verticals) == 1
    assert "minutes" in acc_ax.get_xlabel()
    compared = viz.val_accuracy_figure([read_run(runs[0])], x="time")
    assert any(np.allclose(line.get_xdata(), minutes) for line in compared.axes[0].lines)
    assert main(["plot", str(runs[0]), "--x", "time", "--out", str(tmp_path / "t.png")]) == 0
    assert png_size(tmp_path / "t.png") == (1100, 420)


def test_write_run_curves_is_cheap(runs):
    import time

    viz.write_run_curves(runs[0])  # warm
    start = time.perf_counter()
    path = viz.write_run_curves(runs[0])
    assert time.perf_counter() - start < 3.0  # ~0.25 s on an idle core; generous when shared
    assert path == runs[0] / "curves.png" and png_size(path) == (1100, 420)


def test_plot_overlays_runs_one_colour_each(runs, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["plot", *map(str, runs)]) == 0
    assert png_size(tmp_path / "curves.png") == (1100, 420)  # several runs: here by default
    fig = viz.curves_figure([read_run(r) for r in runs])
    legend = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert legend == ["seed0: resnet20", "seed1: resnet20"]
    colours = {line.get_color() for line in fig.axes[1].lines if line.get_label() in legend}
    assert len(colours) == 2
    assert main(["plot", str(runs[1])]) == 0
    assert (runs[1] / "curves.png").is_file()  # one run: inside it


def test_plot_of_a_folder_that_is_no_run_is_a_one_line_error(tmp_path, capsys):
    assert main(["plot", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "metrics.jsonl" in err and len(err.splitlines()) == 1
    a_file = tmp_path / "notes.txt"  # a file given as the run: said to be no run, not unwritable
    a_file.write_text("x")
    assert main(["plot", str(a_file)]) == 2
    err = capsys.readouterr().err.strip()
    assert "cannot write" not in err and str(a_file) in err and len(err.splitlines()) == 1, err


# ---------------------------------------------------------------------------- eval plots


def test_confusion_and_per_class_plots_show_the_result(tmp_path):
    classes = ["cat", "dog", "ship"]
    confusion = [[8, 2, 0], [1, 3, 0], [0, 0, 5]]
    result = EvalResult(loss=0.5, accuracy=16 / 19, correct=16, total=19, confusion=confusion,
                        classes=classes)
    paths = viz.save_eval_plots(result, tmp_path / "plots")
    assert [p.name for p in paths] == ["confusion.png", "per_class.png"]
    assert png_size(paths[0]) == (720, 600) and png_size(paths[1]) == (700, 300)

    figs = viz.eval_figures(result)
    ax = figs["confusion.png"].axes[0]
    shown = np.asarray(ax.images[0].get_array())
    assert np.allclose(shown, [[0.8, 0.2, 0], [0.25, 0.75, 0], [0, 0, 1]])  # row-normalized
    cells = {(t.get_position(), t.get_text()) for t in ax.texts}
    for t in range(3):
        for p in range(3):
            assert ((p, t), str(confusion[t][p])) in cells  # raw counts in the cells
    assert [t.get_text() for t in ax.get_xticklabels()] == classes
    assert [t.get_text() for t in ax.get_yticklabels()] == classes
    assert "16/19" in ax.get_title()

    bars = figs["per_class.png"].axes[0]
    widths = [patch.get_width() for patch in bars.patches]
    assert widths == pytest.approx([80.0, 75.0, 100.0])
    assert [t.get_text() for t in bars.get_yticklabels()] == classes


def test_eval_plot_writes_both_figures(runs, tiny_data, tmp_path, capsys):
    assert main(["eval", str(runs[0] / "last.pt"), "--data", str(tiny_data), "--plot",
                 "--out-dir", str(tmp_path), "--device", "cpu"]) == 0
    assert png_size(tmp_path / "confusion.png") == (870, 750)  # 10 classes
    assert png_size(tmp_path / "per_class.png")[0] == 700


# ---------------------------------------------------------------------------- compare


def test_compare_numbers_equal_those_the_runs_recorded(runs, tmp_path, capsys):
    assert main(["compare", *map(str, runs), "--out-dir", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert printed == (tmp_path / "comparison.md").read_text()
    rows = list(csv.DictReader(open(tmp_path / "comparison.csv")))
    assert [r["run"] for r in rows] == ["seed0", "seed1"]
    for run, row in zip(runs, rows, strict=True):
        summary = json.loads((run / "summary.json").read_text())
        metrics = read_metrics(run)
        val = [m["val_acc"] for m in metrics]
        assert float(row["best_val_acc"]) == summary["best_val_acc"] == max(val)
        assert int(row["best_epoch"]) == summary["best_epoch"] == val.index(max(val)) + 1
        assert float(row["final_val_acc"]) == val[-1]
        assert float(row["test_acc"]) == summary["test_acc"]
        assert float(row["sec_per_epoch"]) == pytest.approx(
            statistics.fmean(m["epoch_time"] for m in metrics), rel=1e-12)
        assert float(row["img_per_s"]) == pytest.approx(
            statistics.fmean(m["img_per_s"] for m in metrics), rel=1e-12)
        assert int(row["params"]) == summary["params"] and int(row["epochs"]) == 2
        assert f"| {100 * max(val):.2f} ({val.index(max(val)) + 1}) |" in printed
        assert f"| {100 * summary['test_acc']:.2f} |" in printed
    tests = [json.loads((r / "summary.json").read_text())["test_acc"] for r in runs]
    expected = f"{100 * statistics.fmean(tests):.2f} ± {100 * statistics.stdev(tests):.2f}"
    grouped = printed.split("## Grouped")[1]
    assert "| resnet20 | 272,474 | 40.8 | 2 | 2 | 0, 1 |" in grouped and expected in grouped
    assert png_size(tmp_path / "comparison.png") == (800, 450)


def write_fake_run(path: Path, *, model: str, seed: int, val_accs: list[float],
                   test_acc: float | None, finished: bool = True) -> Path:
    """A run directory as training leaves it, with chosen numbers."""
    path.mkdir(parents=True)
    rows = [{"epoch": e, "lr": 0.1, "train_loss": 1.0, "train_acc": 0.5, "val_loss": 1.0,
             "val_acc": v, "epoch_time": 10.0 + e, "img_per_s": 100.0 * e}
            for e, v in enumerate(val_accs, 1)]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (path / "config.toml").write_text(f'model = "{model}"\nepochs = 3\nseed = {seed}\n'
                                      "[data]\nval_split = 100\n")
    if finished:
        best = max(range(len(val_accs)), key=val_accs.__getitem__)
        summary = {"name": model, "model": model, "model_kwargs": {}, "params": 1000,
                   "macs": 2_000_000, "epochs": len(rows), "seed": seed, "val_is_test": False,
                   "best_val_acc": val_accs[best], "best_epoch": best + 1,
                   "final_val_acc": val_accs[-1], "test_acc": test_acc,
                   "sec_per_epoch": 12.0, "img_per_s": 200.0}
        (path / "summary.json").write_text(json.dumps(summary))
    return path


def test_compare_groups_seeds_of_a_recipe_as_mean_and_std(tmp_path):
    a = write_fake_run(tmp_path / "a", model="resnet20", seed=0, val_accs=[0.5, 0.7, 0.6],
                       test_acc=0.62)
    b = write_fake_run(tmp_path / "b", model="resnet20", seed=1, val_accs=[0.4, 0.6, 0.8],
                       test_acc=0.78)
    c = write_fake_run(tmp_path / "c", model="resnet20_convgru", seed=0, val_accs=[0.3, 0.5, 0.4],
                       test_acc=0.41)
    live = write_fake_run(tmp_path / "live", model="resnet20_convgru", seed=1,
                          val_accs=[0.2, 0.45], test_acc=None, finished=False)
    rows, groups = compare_runs([a, b, c, live])
    assert [r["best_val_acc"] for r in rows] == [0.7, 0.8, 0.5, 0.45]
    assert [r["best_epoch"] for r in rows] == [2, 3, 2, 2]
    # a run in progress: what its metrics say so far, no test accuracy yet
    assert rows[3]["test_acc"] is None and rows[3]["final_val_acc"] == 0.45
    assert rows[3]["epochs"] == 2 and rows[3]["sec_per_epoch"] == pytest.approx(11.5)
    assert len(groups) == 1  # live has 2 epochs, c has 3: not the same recipe
    (group,) = groups
    assert group["runs"] == ["a", "b"] and group["seeds"] == [0, 1]
    mean, std, n = group["test_acc"]
    assert (mean, std, n) == pytest.approx((0.70, statistics.stdev([0.62, 0.78]), 2))
    table = markdown_tables(rows, groups)
    assert "| 70.00 ± 11.31 |" in table  # test %
    assert "| live | resnet20_convgru | – | – | 2 | 1 | 45.00 (2) | 45.00 | – |" in table


def test_compare_baseline_says_which_differences_are_inside_the_seed_noise(tmp_path, capsys):
    # Each model's two seeds differ by 2 points, so every group's std is 2/sqrt(2) points and so
    # is the pooled std; 3 groups -> 3 degrees of freedom, t = 3.182, and the 95% half-width of a
    # difference of two 2-seed means is 3.182 * 1.414 * sqrt(1/2 + 1/2) = 4.50 points.
    tests = {"resnet20": (0.60, 0.62), "regnet20_convlstm": (0.70, 0.72),
             "resnet20_convrnn": (0.63, 0.65)}
    dirs = [write_fake_run(tmp_path / f"{model}-s{seed}", model=model, seed=seed,
                           val_accs=[0.5, acc], test_acc=acc)
            for model, accs in tests.items() for seed, acc in enumerate(accs)]
    rows, _ = compare_runs(dirs)
    (test,) = noise_test(rows, "resnet20")
    assert test.dof == 3 and test.t == 3.182
    assert test.pooled_std == pytest.approx(0.02 / 2 ** 0.5)
    by_model = {d.model: d for d in test.differences}
    assert sorted(by_model) == ["regnet20_convlstm", "resnet20_convrnn"]
    assert by_model["regnet20_convlstm"].delta == pytest.approx(0.10)
    assert by_model["regnet20_convlstm"].half_width == pytest.approx(0.0450, abs=1e-4)
    assert not by_model["regnet20_convlstm"].inside_noise  # +10 points against +-4.5
    assert by_model["resnet20_convrnn"].inside_noise  # +3 points against +-4.5

    out = tmp_path / "out"
    assert main(["compare", *map(str, dirs), "--out-dir", str(out), "--baseline", "resnet20"]) == 0
    table = (out / "comparison.md").read_text().split("## Test accuracy against resnet20")[1]
    assert ("| regnet20_convlstm | 2 | +10.00 | +5.50 .. +14.50 | beyond the noise: better |"
            in table)
    assert "| resnet20_convrnn | 2 | +3.00 | -1.50 .. +7.50 | inside the noise |" in table
    grouped = (out / "comparison.md").read_text().split("## Grouped")[1]
    assert "| resnet20 | 1,000 | 2.0 | 2 | 2 | 0, 1 |" in grouped  # params and MMACs
    capsys.readouterr()

    # a baseline with no group: one line naming the choices, and no comparison written
    assert main(["compare", *map(str, dirs), "--out-dir", str(tmp_path / "bad"),
                 "--baseline", "resnet56"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "resnet56" in err and "resnet20_convrnn" in err
    assert not (tmp_path / "bad" / "comparison.md").exists()


def test_a_model_with_one_seed_gets_its_difference_and_is_never_told_from_noise(tmp_path):
    # resnet20 and regnet20_convlstm have two seeds (pooled std 1.41 points, 2 dof); the ConvRNN
    # model has one run, 20 points below: far outside the others' interval, yet one seed's own
    # spread is unmeasured, so it is reported and not judged. Its run adds no degree of freedom.
    tests = {"resnet20": (0.60, 0.62), "regnet20_convlstm": (0.70, 0.72),
             "resnet20_convrnn": (0.41,)}
    dirs = [write_fake_run(tmp_path / f"{model}-s{seed}", model=model, seed=seed,
                           val_accs=[0.5, acc], test_acc=acc)
            for model, accs in tests.items() for seed, acc in enumerate(accs)]
    rows, _ = compare_runs(dirs)
    (test,) = noise_test(rows, "resnet20")
    assert test.dof == 2
    by_model = {d.model: d for d in test.differences}
    single = by_model["resnet20_convrnn"]
    assert single.seeds == 1 and single.delta == pytest.approx(-0.20)
    assert single.half_width is None and single.inside_noise
    double = by_model["regnet20_convlstm"]
    assert double.seeds == 2 and not double.inside_noise
    table = markdown_tables(rows, [], "resnet20").split("## Test accuracy against resnet20")[1]
    assert "| resnet20_convrnn | 1 | -20.00 | – | one seed: cannot be told from noise |" in table
    with pytest.raises(ConfigError, match="no model with two runs"):  # a one-seed baseline
        noise_test(rows, "resnet20_convrnn")


def test_comparison_figure_moves_a_long_legend_off_the_lines(tmp_path):
    few = [write_fake_run(tmp_path / f"few{seed}", model="resnet20", seed=seed,
                          val_accs=[0.3, 0.5], test_acc=0.5) for seed in (0, 1)]
    many = [write_fake_run(tmp_path / f"{model}-s{seed}", model=model, seed=seed,
                           val_accs=[0.3, 0.5], test_acc=0.5)
            for model in ("resnet20", "resnet20_convrnn", "regnet20_convlstm") for seed in (0, 1)]
    for dirs, outside in ((few, False), (many, True)):
        fig = viz.val_accuracy_figure([read_run(d) for d in dirs])
        FigureCanvasAgg(fig).draw()
        ax = fig.axes[0]
        legend = ax.get_legend()
        texts = [t.get_text() for t in legend.get_texts()]
        assert len(texts) == len(dirs) + len(dirs) // 2  # every run, and a mean per model
        assert "resnet20: mean of 2 seeds" in texts
        renderer = fig.canvas.get_renderer()
        legend_box, axes_box = legend.get_window_extent(renderer), ax.get_window_extent(renderer)
        assert (legend_box.x0 >= axes_box.x1) == outside


def test_comparison_figure_names_seed_groups_by_their_directories_or_wraps_the_recipe(tmp_path):
    def run(name: str, seed: int, lr: float) -> Path:
        path = write_fake_run(tmp_path / name, model="resnet20", seed=seed, val_accs=[0.3, 0.5],
                              test_acc=0.5)
        long = ("batch_size = 128\nweight_decay = 0.0005\nnesterov = true\nmomentum = 0.8\n"
                'schedule = "onecycle"\nlabel_smoothing = 0.1\nema_decay = 0.999\n')  # long label
        (path / "config.toml").write_text(f'model = "resnet20"\nepochs = 3\nseed = {seed}\n'
                                          f"lr = {lr}\n{long if lr > 0.1 else ''}")
        return path

    dirs = [run("fast-s0", 0, 0.2), run("fast-s1", 1, 0.2),  # a shared name, seed suffix off
            run("x", 0, 0.1), run("y", 1, 0.1)]  # names that share nothing: the recipe label
    fig = viz.val_accuracy_figure([read_run(d) for d in dirs])
    texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "fast (resnet20): mean of 2 seeds" in texts
    (other,) = [t for t in texts if t.endswith("mean of 2 seeds") and not t.startswith("fast")]
    assert other.startswith("resnet20 [batch_size=64, lr=0.1,") and "\n" in other
    assert max(len(line) for line in other.split("\n")[:-1]) <= 48
