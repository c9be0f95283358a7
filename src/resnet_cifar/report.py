"""A self-contained HTML report of one run: one file, every figure inlined as a base64 PNG."""

from __future__ import annotations

import base64
import html
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resnet_cifar.atomic import atomic_write_text, check_target, explain_write_errors
from resnet_cifar.config import DataConfig
from resnet_cifar.engine.inference import data_for_run, describe_data
from resnet_cifar.engine.recipes import model_label, run_labels, run_row
from resnet_cifar.engine.report import describe_threads
from resnet_cifar.engine.rundir import RunInfo, pick_checkpoint, read_run
from resnet_cifar.version import __version__

REPORT = "report"  # what a write error calls the file
STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 1150px; padding: 0 1em; color: #1f2328; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; border-bottom: 1px solid #d0d7de; padding-bottom: 0.2em;
     margin-top: 1.6em; }
.meta { color: #59636e; font-size: 0.9em; }
.note { background: #fff8c5; border: 1px solid #d4a72c; padding: 0.5em 0.8em; border-radius: 6px; }
table { border-collapse: collapse; font-size: 0.88em; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #d0d7de; padding: 0.25em 0.6em; text-align: right; }
th { background: #f6f8fa; }
td.l, th.l { text-align: left; }
tr.best td { background: #dafbe1; font-weight: 600; }
.scroll { max-height: 28em; overflow-y: auto; display: inline-block; }
figure { margin: 1em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #d0d7de; }
figcaption { color: #59636e; font-size: 0.9em; }
pre { background: #f6f8fa; padding: 0.8em; border-radius: 6px; overflow-x: auto;
      font-size: 0.85em; }
"""


@dataclass
class InlineImage:  # a PNG to inline, with the caption a reader needs
    title: str
    png: bytes
    caption: str = ""


def evaluation_figures(ckpt_path: Path, data: DataConfig, *, device: str, n: int,
                       seed: int) -> tuple[list[InlineImage], str]:
    """Confusion matrix, per-class bars and prediction grid of a checkpoint on the test split,
    and a sentence saying what was evaluated."""
    from resnet_cifar.engine.evaluate import evaluate_split
    from resnet_cifar.engine.inference import InferenceContext
    from resnet_cifar.viz import eval_figures, figure_png, prediction_grid, sample_title
    from resnet_cifar.viz.grid import sample_predictions

    # one context: the data is decoded and the model built once, for both uses
    context = InferenceContext.build(ckpt_path, data, device=device)
    result = evaluate_split(context, "test")
    figures = eval_figures(result)
    sample = sample_predictions(context, n=n, seed=seed, split="test")
    grid = prediction_grid(sample.images, sample.preds, sample.trues, sample.classes,
                           title=sample_title(sample, context.checkpoint.model_name,
                                              only_wrong=False))
    what = (f"{ckpt_path.name} on the test split: accuracy {100 * result.accuracy:.2f}% "
            f"({result.correct}/{result.total}), mean loss {result.loss:.4f}; "
            f"{describe_data(result.data)}.")
    return [
        InlineImage("Confusion matrix", figure_png(figures["confusion.png"]),
               "Rows: true class, columns: predicted class. Colour: the fraction of the row; "
               "numbers: image counts."),
        InlineImage("Per-class accuracy", figure_png(figures["per_class.png"]),
               "Dashed line: overall accuracy."),
        InlineImage("Predictions", figure_png(grid),
               f"{n} random test images (seed {seed}); green title: right, red: wrong."),
    ], what


def build_report(run_dir: str | Path, data: DataConfig | None = None, *,
                 out: str | Path | None = None, checkpoint: str = "best", device: str = "auto",
                 n: int = 16, seed: int = 0, evaluate: bool = True) -> Path:
    """Write ``run_dir``'s report (default ``<run_dir>/report.html``); ``evaluate=False`` leaves out
    what needs the data (default: the run's) and a checkpoint."""
    from resnet_cifar.engine.runtime import resolve_device
    from resnet_cifar.viz import curves_figure, figure_png

    run = read_run(run_dir)
    out = check_target(out or run.path / "report.html", REPORT)  # before the evaluation
    curves = InlineImage("Training curves", figure_png(curves_figure([run])),
                         "Solid: training, dashed: validation. Vertical dashed lines: "
                         "learning-rate steps.")
    evaluation, evaluated = [], "Not evaluated, as `evaluate` (--no-eval) asked."
    if evaluate:
        ckpt_path = pick_checkpoint(run.path, checkpoint)
        evaluation, evaluated = evaluation_figures(
            ckpt_path, data or data_for_run(run.config, {}), device=device, n=n, seed=seed)
    page = render_html(run, curves, evaluation, evaluated, str(resolve_device(device)))
    with explain_write_errors(out, REPORT):
        atomic_write_text(out, page)
    return out


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def img_tag(figure: InlineImage) -> str:
    encoded = base64.b64encode(figure.png).decode("ascii")
    return (f'<figure><img alt="{esc(figure.title)}" src="data:image/png;base64,{encoded}">'
            f"<figcaption>{esc(figure.caption)}</figcaption></figure>")


def table_html(header: list[str] | None, rows: list[list[Any]], *, left: int = 0,
               highlight: int | None = None) -> str:
    """A table whose first ``left`` columns are left-aligned; row ``highlight`` marked."""
    def cells(values, tag):
        return "".join(f'<{tag}{" class=l" if i < left else ""}>{esc(v)}</{tag}>'
                       for i, v in enumerate(values))

    body = "".join(f'<tr{" class=best" if i == highlight else ""}>{cells(r, "td")}</tr>'
                   for i, r in enumerate(rows))
    head = f"<thead><tr>{cells(header, 'th')}</tr></thead>" if header else ""
    return f"<table>{head}<tbody>{body}</tbody></table>"


def pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}%"


def number(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def key_figures(run: RunInfo) -> str:
    row = run_row(run)
    s = run.summary or {}
    val = "test (= validation)" if run.val_is_test else "validation"
    pairs = [
        ("model", model_label(row["model"], row["model_kwargs"])),
        ("parameters", number(row["params"], ",")),
        ("MMACs per image", number(None if row["macs"] is None else row["macs"] / 1e6, ".1f")),
        ("epochs", row["epochs"]), ("seed", row["seed"]),
        (f"best {val} accuracy",
         "–" if row["best_val_acc"] is None else f"{pct(row['best_val_acc'])} "
                                                 f"(epoch {row['best_epoch']})"),
        (f"final {val} accuracy", pct(row["final_val_acc"])),
        ("test accuracy (final weights)", pct(row["test_acc"])),
        ("seconds per epoch", number(row["sec_per_epoch"], ".1f")),
        ("images per second", number(row["img_per_s"], ",.0f")),
        ("training images", s.get("train_images", "–")),
    ]
    return table_html(None, [list(p) for p in pairs], left=1)


def metrics_table(run: RunInfo) -> str:
    header = ["epoch", "lr", "train loss", "train acc", "val loss", "val acc", "time (s)",
              "img/s"]
    rows = [[r["epoch"], f"{r['lr']:.4g}", f"{r['train_loss']:.4f}", pct(r["train_acc"]),
             f"{r['val_loss']:.4f}", pct(r["val_acc"]), f"{r['epoch_time']:.1f}",
             f"{r['img_per_s']:,.0f}"] for r in run.rows]
    best = run_row(run)["best_epoch"]
    index = next((i for i, r in enumerate(run.rows) if r["epoch"] == best), None)
    return f'<div class="scroll">{table_html(header, rows, highlight=index)}</div>'


def environment_table(run: RunInfo, device: str) -> str:
    import torch

    s = run.summary or {}
    rows = [
        ["torch", s.get("torch", "–"), torch.__version__],
        ["resnet-cifar", s.get("package_version", "–"), __version__],
        ["device", s.get("device", "–"), device],
        ["threads", describe_threads(s), torch.get_num_threads()],
        ["processes (DDP world size)", s.get("world_size", "–"), 1],
        ["CUDA", "–", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"],
        ["python", "–", platform.python_version()],
        ["platform", "–", platform.platform()],
    ]
    return table_html(["", "training run", "this report"], rows, left=1)


def render_html(run: RunInfo, curves: InlineImage, evaluation: list[InlineImage],
                evaluated: str, device: str) -> str:
    """The page: key figures, curves, test-set evaluation, metrics, config, environment."""
    label = run_labels([run])[0]
    config_file = run.path / "config.toml"
    config_text = config_file.read_text() if config_file.is_file() else "(no config.toml)"
    status = "finished" if run.finished else "in progress (no summary.json yet)"
    note = ""
    if run.val_is_test:
        note = ('<p class="note">Validation is the test set (trained without '
                "`data.val_split` (--val-split)): the best epoch was chosen on the test set, so "
                "the best accuracy is optimistic. The test-set evaluation below says which "
                "checkpoint it used: by default the final weights (last.pt), not "
                "best_on_test.pt.</p>")
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(label)}: resnet-cifar report</title><style>{STYLE}</style></head><body>",
        f"<h1>{esc(label)}</h1>",
        f'<p class="meta">run directory {esc(run.path.resolve())} · {status} · report written '
        f"{esc(time.strftime('%Y-%m-%d %H:%M:%S'))} by resnet-cifar {esc(__version__)} "
        f"(python {esc(sys.version.split()[0])})</p>",
        note,
        "<h2>Key figures</h2>", key_figures(run),
        f"<h2>{esc(curves.title)}</h2>", img_tag(curves),
        "<h2>Test-set evaluation</h2>", f"<p>{esc(evaluated)}</p>",
    ]
    for image in evaluation:
        parts += [f"<h3>{esc(image.title)}</h3>", img_tag(image)]
    parts += ["<h2>Metrics per epoch</h2>", metrics_table(run),
              "<h2>Config (config.toml)</h2>", f"<pre>{esc(config_text)}</pre>",
              "<h2>Environment</h2>", environment_table(run, device), "</body></html>"]
    return "\n".join(parts) + "\n"
