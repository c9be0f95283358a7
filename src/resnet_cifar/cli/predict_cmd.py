"""resnet-cifar predict / export: classify image files with a checkpoint, or export it.

A file predict cannot read is reported on stderr and skipped, and the exit code is 1.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from resnet_cifar.cli import common
from resnet_cifar.errors import UserError


def add_parser(sub) -> None:
    add_predict_parser(sub)
    add_export_parser(sub)


def add_predict_parser(sub) -> None:
    from resnet_cifar.config import NORMALIZE_MODES, TTA_MODES

    p = sub.add_parser(
        "predict", help="classify image files (any size or mode) with a checkpoint",
        description="Each image is converted to RGB and resized to 32x32 (PIL bicubic, whole "
                    "image, no crop, aspect ratio not kept); a large JPEG is decoded at a reduced "
                    "scale first unless --exact. Exit code 1 if any file failed. Options may "
                    "come before, between or after the paths.")
    p.intermixed = True  # `predict CKPT --topk 2 a.png`
    common.add_checkpoint_args(p)
    p.add_argument("inputs", nargs="+", metavar="IMAGE|DIR",
                   help="image files, or directories to search recursively")
    p.add_argument("--topk", type=common.positive_int, default=3, help="classes shown per image")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true",
                     help="print JSON: {checkpoint, model, predictions: [{file, size: [w, h], "
                          "mode, topk: [{class, index, prob}]}], errors: [{file, error}]}")
    fmt.add_argument("--csv", action="store_true", help="print CSV, one row per file")
    p.add_argument("--batch-size", type=common.positive_int, default=256)
    p.add_argument("--exact", action="store_true",
                   help="decode large JPEGs at full size before the resize (slower; the pixels "
                        "any full-decode pipeline gives). Default: PIL's draft mode, which has "
                        "the decoder shrink them by up to 8x first")
    p.add_argument("--normalize", choices=NORMALIZE_MODES,
                   help="dataset: CIFAR-10's training statistics (or the checkpoint's own, if it "
                        "was trained with dataset); half: 0.5; imagenet: ImageNet's statistics. "
                        "Default: what the checkpoint records, else dataset")
    p.add_argument("--tta", choices=TTA_MODES, default="none",
                   help="report probabilities averaged over test-time-augmented views")
    common.add_device_arg(p)
    common.add_threads_arg(p)
    p.set_defaults(func=run_predict)


def add_export_parser(sub) -> None:
    from resnet_cifar.export import FORMATS, ONNX_EXPORTERS

    p = sub.add_parser(
        "export", help="export a checkpoint to ONNX, TorchScript or torch.export (.pt2)",
        description="Exports with a dynamic batch dimension, then checks the written file against "
                    "PyTorch on random inputs and on 100 test images when a data set is known "
                    "(--data, or the one recorded in the checkpoint).")
    common.add_checkpoint_args(p)
    p.add_argument("--format", choices=tuple(FORMATS), default=None,
                   help="default: the one --out's suffix names (.onnx, .pt or .ts for "
                        "TorchScript, .pt2), else onnx; a suffix naming another format is "
                        "refused")
    p.add_argument("--out", metavar="FILE",
                   help="default: beside the checkpoint, as NAME.onnx, NAME.torchscript.pt or "
                        "NAME.pt2")
    p.add_argument("--include-normalization", action="store_true",
                   help="the graph takes uint8 (N, 3, 32, 32) RGB pixels and normalizes them "
                        "itself (default: it takes normalized float32)")
    p.add_argument("--opset", type=common.positive_int, help="ONNX opset (default 17)")
    p.add_argument("--fold-bn", action="store_true",
                   help="write the graph with BatchNorm folded into the convolutions (faster "
                        "inference; parity is still checked against the unfolded model)")
    p.add_argument("--onnx-exporter", choices=ONNX_EXPORTERS, default="legacy",
                   help="legacy: torch.onnx's TorchScript-based exporter (default; needs onnx); "
                        "dynamo: the torch.export-based one (also needs onnxscript)")
    common.add_data_args(p, training=False)
    p.set_defaults(func=run_export)
    common.add_threads_arg(p)


def run_predict(args: argparse.Namespace) -> int:
    common.use_threads(args)
    from resnet_cifar.data.sources import IMAGE_EXTENSIONS
    from resnet_cifar.predict import Predictor, find_images

    # argparse gives the first path to the checkpoint: with --pretrained, it is an image too
    if args.pretrained and args.checkpoint:
        args.inputs.insert(0, args.checkpoint)
        args.checkpoint = None
    elif not args.pretrained and args.checkpoint is None:
        raise UserError(f"give the checkpoint, then the images (only {args.inputs[0]} was "
                        "given), or --pretrained TAG|DIR and the images")
    paths = find_images(args.inputs)
    if not paths:
        raise UserError(f"no images found in {', '.join(args.inputs)} "
                        f"(looked for {' '.join(IMAGE_EXTENSIONS)})")
    predictor = Predictor(common.checkpoint_from_args(args), normalize=args.normalize,
                          device=args.device, batch_size=args.batch_size, exact=args.exact,
                          tta=args.tta)
    results = predictor.predict_files(paths, topk=args.topk)
    note = None  # with --tta the output says so, in each format
    if args.tta != "none":
        from resnet_cifar.engine.evaluate import TTA_VIEWS

        note = f"probabilities: mean over {TTA_VIEWS[args.tta]} views per image (tta {args.tta})"
    failed = [r for r in results if r.error is not None]
    for r in failed:
        print(f"error: {r.file}: {r.error}", file=sys.stderr)
    if args.json:
        common.print_json({
            "checkpoint": str(args.checkpoint or args.pretrained),
            "model": predictor.checkpoint.model_name,
            **({"tta": args.tta} if args.tta != "none" else {}),
            "predictions": [r.to_dict() for r in results if r.error is None],
            "errors": [r.to_dict() for r in failed],
        })
    elif args.csv:
        if note:
            print(f"note: {note}", file=sys.stderr)
        write_csv(results, args.topk)
    else:
        if note:
            print(note)
        print_table(results)
    if failed:
        print(f"{len(results) - len(failed)} of {len(results)} images predicted, "
              f"{len(failed)} failed", file=sys.stderr)
    return 1 if failed else 0


def write_csv(results, topk: int) -> None:
    writer = csv.writer(sys.stdout, lineterminator="\n")
    ranks = [f"{field}_{i}" for i in range(1, topk + 1) for field in ("class", "index", "prob")]
    writer.writerow(["file", "width", "height", "mode", *ranks, "error"])
    for r in results:
        if r.prediction is None:
            writer.writerow([r.file, "", "", "", *[""] * len(ranks), r.error])
            continue
        p = r.prediction
        cells = [value for c in p.topk for value in (c.name, c.index, f"{c.prob:.6f}")]
        cells += [""] * (len(ranks) - len(cells))  # fewer classes than --topk
        writer.writerow([r.file, *p.size, p.mode, *cells, ""])


def print_table(results) -> None:
    rows = [r for r in results if r.prediction is not None]
    if not rows:
        return
    width = max(len("file"), *(len(r.file) for r in rows))
    print(f"{'file':<{width}}  {'size':>9}  top-k")
    for r in rows:
        p = r.prediction
        size = f"{p.size[0]}x{p.size[1]}"
        classes = "  ".join(f"{c.name}:{c.prob:.3f}" for c in p.topk)
        print(f"{r.file:<{width}}  {size:>9}  {classes}")


def run_export(args: argparse.Namespace) -> int:
    common.use_threads(args)
    from resnet_cifar import export
    from resnet_cifar.atomic import check_target

    fmt = export.resolve_format(args.out, args.format)
    if fmt == "onnx":
        export.require_onnx(args.onnx_exporter)  # before any data is decoded
    ckpt = common.checkpoint_from_args(args)
    # published weights live inside the package: their export goes here, named after the tag
    named = Path(f"{Path(args.pretrained).name}.pth") if args.pretrained else ckpt.path
    # an --out that cannot be written is refused before the parity images are decoded
    out = check_target(args.out or export.default_output(named, fmt), export.EXPORT_OUTPUT)
    # data flags other than --normalize choose the parity images; else the checkpoint's data
    chosen = set(common.data_overrides(args)) - {"normalize"}
    images, source = export.load_parity_images(ckpt, common.data_config(args) if chosen else None)
    try:
        report, status = export.export_checkpoint(
            ckpt, out, fmt, args.include_normalization, normalize=getattr(args, "normalize", None),
            opset=args.opset, onnx_exporter=args.onnx_exporter, images=images,
            images_source=source, fold_bn=args.fold_bn), 0
    except export.ParityError as err:
        report, status, failure = err.report, 1, str(err)
    if images is None:
        report.notes.append(source)  # why no real images were checked
    print("\n".join(report.lines()))
    if status:
        print(f"error: {failure}", file=sys.stderr)
    return status
