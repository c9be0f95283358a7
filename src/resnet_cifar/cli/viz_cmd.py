"""resnet-cifar show | plot | compare | report: pictures and reports of checkpoints and runs.

Figures are PNG, or JPEG, PDF or SVG as the --out extension says; --show also opens them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from resnet_cifar.cli import common
from resnet_cifar.config import TTA_MODES, X_AXES


def add_parser(sub) -> None:
    add_show_parser(sub)
    add_plot_parser(sub)
    add_compare_parser(sub)
    add_report_parser(sub)


def add_show_parser(sub) -> None:
    p = sub.add_parser("show", help="grid of random test images titled with the predictions",
                       description="Random images of a split, each titled with the model's "
                                   "prediction and the truth (green: right, red: wrong).")
    common.add_checkpoint_args(p)
    p.add_argument("--n", type=common.positive_int, default=16, help="how many images (default 16)")
    p.add_argument("--seed", type=int, default=0, help="which images (default 0)")
    p.add_argument("--only-wrong", action="store_true", help="show mistakes only")
    p.add_argument("--split", choices=("test", "val"), default="test")
    p.add_argument("--out", metavar="FILE.png",
                   help="default: predictions.png beside the checkpoint (--pretrained: "
                        "TAG-predictions.png in the current folder); .jpg, .jpeg, .pdf and .svg "
                        "write those formats")
    p.add_argument("--tta", choices=TTA_MODES, default="none",
                   help="title by the test-time-augmented prediction (the figure title says so)")
    add_show_arg(p)
    common.add_device_arg(p)
    common.add_threads_arg(p)
    common.add_data_args(p, training=False)
    p.set_defaults(func=run_show)


def add_plot_parser(sub) -> None:
    p = sub.add_parser("plot", help="training curves of one or more runs",
                       description="Loss and accuracy against the epoch, learning-rate steps "
                                   "marked; several runs are overlaid, one colour each.")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--out", metavar="FILE.png",
                   help="default: curves.png in the run directory (one run) or in the current "
                        "folder (several); .jpg, .jpeg, .pdf and .svg write those formats")
    add_x_arg(p)
    add_show_arg(p)
    p.set_defaults(func=run_plot)


def add_compare_parser(sub) -> None:
    p = sub.add_parser("compare", help="table and figure comparing runs, mean ± std over seeds",
                       description="One row per run, and mean ± std over the seeds of each "
                                   "recipe (the whole config but the seed, names, paths, "
                                   "device and threads; the settings that differ are named). A "
                                   "second run of a recipe with a seed it already has is a "
                                   "repeat: set aside, and named. Writes comparison.md, "
                                   "comparison.csv, comparison.png (the curves of the run "
                                   "directories) and, with --cost, accuracy_vs_cost.png into "
                                   "--out-dir, and prints comparison.md.")
    p.add_argument("run_dirs", nargs="+", metavar="RUN",
                   help="a run directory, or a comparison.csv an earlier compare wrote: its "
                        "rows count as runs (their directories may be gone); each once")
    p.add_argument("--out-dir", metavar="DIR", default=".", help="default: the current folder")
    p.add_argument("--baseline", metavar="MODEL[=BASELINE]", action="append",
                   help="also give each model's test accuracy minus this model's, with a 95%% "
                        "interval from the pooled seed noise, and say which differences are "
                        "inside the noise; a model with several recipes: give the label of "
                        "one, as the tables print it (e.g. 'resnet20 [lr=0.1]'). Repeat it or "
                        "separate by commas for several baselines; A=B compares model A with "
                        "baseline B only (e.g. --baseline resnet20,regnet20_convgru=resnet56)")
    p.add_argument("--cost", choices=("macs", "params"),  # viz.cost.COSTS (not imported: slow)
                   help="also draw accuracy_vs_cost.png: each model's test accuracy (mean ± std "
                        "over seeds) against its multiply-adds (macs) or parameters, the plain "
                        "ResNets joined by a line")
    p.add_argument("--allow-mixed-data", action="store_true",
                   help="compare runs on different data (another fingerprint, dataset or "
                        "number of classes), refused by default; the output says so")
    p.add_argument("--targets", type=percentages, default="80,85", metavar="PCT[,PCT]",
                   help="accuracies (%%) whose time to reach is tabled: the first epoch and the "
                        "training minutes by its end (default 80,85)")
    add_x_arg(p)
    add_show_arg(p)
    p.set_defaults(func=run_compare)


def add_x_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--x", choices=X_AXES, default="epoch",
                   help="horizontal axis: the epoch (default), or time: the training minutes "
                        "(training steps only), for time to accuracy")


def percentages(text: str) -> tuple[float, ...]:
    """"80,85" -> (0.80, 0.85); anything but numbers in (0, 100] is a usage error."""
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        values = ()
    if not values or not all(0 < v <= 100 for v in values):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a list of percentages in (0, 100], e.g. 80,85")
    return tuple(v / 100 for v in values)


def add_report_parser(sub) -> None:
    p = sub.add_parser("report", help="one self-contained HTML report of a run",
                       description="report.html with the key figures, curves, test-set "
                                   "confusion matrix, per-class accuracy, predictions, metrics, "
                                   "config and environment; every image inlined.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--out", metavar="FILE.html", help="default: report.html in the run directory")
    p.add_argument("--checkpoint", default="best", metavar="best|last|PATH",
                   help="weights to evaluate: best (best.pt, else the final last.pt; default), "
                        "last, or a path")
    p.add_argument("--n", type=common.positive_int, default=16,
                   help="images in the prediction grid")
    p.add_argument("--seed", type=int, default=0, help="which images in the prediction grid")
    p.add_argument("--no-eval", action="store_true",
                   help="leave out what needs the data (confusion, per-class, predictions)")
    common.add_device_arg(p)
    common.add_threads_arg(p)
    common.add_data_args(p, training=False)
    p.set_defaults(func=run_report)


def add_show_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--show", action="store_true", help="also open the figure in a window")


def wrote(paths: list[Path], show: bool) -> int:
    for path in paths:
        print(f"wrote {path}", file=sys.stderr)
    if show:
        from resnet_cifar.viz import is_figure, open_in_window

        open_in_window([p for p in paths if is_figure(p)])
    return 0


def run_show(args: argparse.Namespace) -> int:
    common.use_threads(args)
    from resnet_cifar.viz import show_predictions

    ckpt = common.checkpoint_from_args(args)
    out = args.out or (common.output_beside(args, "predictions.png") if args.pretrained else None)
    path = show_predictions(
        ckpt, common.run_data_config(args, ckpt.config), n=args.n, seed=args.seed,
        only_wrong=args.only_wrong, split=args.split, out=out, device=args.device,
        normalize=getattr(args, "normalize", None),
        describe=lambda line: print(line, file=sys.stderr), tta=args.tta)
    return wrote([path], args.show)


def run_plot(args: argparse.Namespace) -> int:
    from resnet_cifar.viz import plot_curves

    default = Path(args.run_dirs[0]) / "curves.png" if len(args.run_dirs) == 1 else "curves.png"
    return wrote([plot_curves(args.run_dirs, Path(args.out or default), x=args.x)], args.show)


def run_compare(args: argparse.Namespace) -> int:
    from resnet_cifar.compare import write_comparison

    written = write_comparison(args.run_dirs, args.out_dir, args.baseline,
                               allow_mixed_data=args.allow_mixed_data, targets=args.targets,
                               x=args.x, cost=args.cost)
    print(written["markdown"].read_text(), end="")
    return wrote(list(written.values()), args.show)


def run_report(args: argparse.Namespace) -> int:
    common.use_threads(args)
    from resnet_cifar.engine.rundir import read_run
    from resnet_cifar.report import build_report

    run = read_run(args.run_dir)
    path = build_report(run.path, common.run_data_config(args, run.config), out=args.out,
                        checkpoint=args.checkpoint, device=args.device, n=args.n,
                        seed=args.seed, evaluate=not args.no_eval)
    return wrote([path], show=False)
