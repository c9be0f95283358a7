"""resnet-cifar eval: accuracy, mean loss, per-class accuracy and confusion matrix."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from resnet_cifar.atomic import check_folder
from resnet_cifar.cli import common
from resnet_cifar.config import AMP_MODES, TTA_MODES, TrainConfig


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a checkpoint on the test (or val) split")
    common.add_checkpoint_args(p)
    p.add_argument("--split", choices=("test", "val"), default="test")
    p.add_argument("--batch-size", type=common.positive_int, default=TrainConfig.eval_batch_size)
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the --val-split draw (default: the run's own seed; for a "
                        "run of ours, another is refused: it would draw images it trained on)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--plot", action="store_true",
                   help="also write confusion.png and per_class.png beside the checkpoint "
                        "(--pretrained: in the current folder)")
    p.add_argument("--out-dir", metavar="DIR", help="where --plot writes (default: beside it)")
    p.add_argument("--tta", choices=TTA_MODES, default="none",
                   help="also evaluate with test-time augmentation; reported beside the plain "
                        "accuracy, with the images per second of both passes")
    p.add_argument("--compile", action="store_true",
                   help="evaluate a copy with BatchNorm folded, compiled by torch.compile with "
                        "its weights frozen: faster once compiled (the compile time is printed); "
                        "logits equal within float rounding, so a near tie may flip")
    p.add_argument("--amp", choices=AMP_MODES, default="none",
                   help="evaluate under autocast: bf16 (a CPU with AVX512-BF16 or AMX, or a GPU; "
                        "about 1.5x the float32 speed on a Zen 4) or fp16 (GPU). Not the float32 "
                        "figure a run or a published weight records: a near tie may flip, and the "
                        "output says which precision it used")
    common.add_device_arg(p)
    common.add_threads_arg(p)
    common.add_data_args(p, training=False)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    common.use_threads(args)
    from resnet_cifar.engine.evaluate import evaluate_checkpoint

    ckpt = common.checkpoint_from_args(args)
    if args.plot:  # refuse a folder that cannot take the plots before evaluating
        check_folder(plot_dir(args), "eval plots into", "`out_dir` (--out-dir)")
    result = evaluate_checkpoint(
        ckpt, common.run_data_config(args, ckpt.config), split=args.split,
        normalize=getattr(args, "normalize", None), device=args.device,
        batch_size=args.batch_size, seed=args.seed,
        progress=sys.stderr.isatty() and not args.json, tta=args.tta, compile=args.compile,
        amp=args.amp)
    if args.plot:
        from resnet_cifar import viz

        for path in viz.save_eval_plots(result, plot_dir(args)):
            print(f"wrote {path}", file=sys.stderr)
    if args.json:
        common.print_json(result.to_dict())
    else:
        print_result(result, args.split)
    return 0


def plot_dir(args: argparse.Namespace) -> Path:
    """--out-dir, else where output_beside puts a file: beside the checkpoint, or here."""
    if args.out_dir:
        return Path(args.out_dir)
    return common.output_beside(args, "confusion.png").parent


def print_result(result, split: str) -> None:
    from resnet_cifar.engine.inference import describe_data

    print(f"{split} accuracy {100 * result.accuracy:.2f}% ({result.correct}/{result.total}), "
          f"mean loss {result.loss:.4f}"
          + (f", under {result.amp} autocast (leave --amp out for the float32 figure)"
             if result.amp != "none" else ""))
    if result.tta is not None:
        print_tta(result.tta, split, result.amp)
    if result.compile_seconds is not None:
        print(f"compiled (BatchNorm folded, weights frozen) in {result.compile_seconds:.1f} s "
              "before evaluating")
    print(describe_data(result.data))
    if (norm := result.data.get("normalization")) is not None:
        print(normalization_line(norm))  # a guess was warned of when it was made
    width = max(len(c) for c in result.classes)
    print("\nper-class accuracy")
    for name, acc in zip(result.classes, result.per_class_accuracy, strict=True):
        print(f"  {name:<{width}}  {100 * acc:6.2f}%")
    if len(result.classes) > 20:
        return
    print("\nconfusion matrix (rows: true, columns: predicted)")
    short = [c[:5] for c in result.classes]
    print(" " * (width + 2) + " ".join(f"{c:>5}" for c in short))
    for name, row in zip(result.classes, result.confusion, strict=True):
        print(f"  {name:<{width}}" + " ".join(f"{v:>5}" for v in row))


def normalization_line(norm: dict) -> str:
    """One line: the mean/std the inputs were normalized with, and where they came from."""
    stats = (f"mean {', '.join(f'{v:.4f}' for v in norm['mean'])}; "
             f"std {', '.join(f'{v:.4f}' for v in norm['std'])}")
    where = {"checkpoint": "as the checkpoint records",
             "`data.normalize`": "as `data.normalize` (--normalize) asks"}.get(
                 norm["source"], "guessed (see the warning)")
    return f"normalized {norm['mode'] or 'with'} ({stats}), {where}"


def print_tta(tta, split: str, amp: str = "none") -> None:
    """The test-time-augmented accuracy, under the plain one, and its cost."""
    print(f"{split} accuracy with tta {tta.mode} {100 * tta.accuracy:.2f}% "
          f"({tta.correct}/{tta.total}), mean loss {tta.loss:.4f}"
          + (f", under {amp} autocast" if amp != "none" else ""))
    print(f"tta {tta.mode} cost: {tta.images_per_second:.0f} img/s against "
          f"{tta.plain_images_per_second:.0f} img/s plain")
