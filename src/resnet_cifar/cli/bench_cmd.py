"""resnet-cifar bench: our training/evaluation pipeline vs a torchvision-style baseline."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from resnet_cifar.cli import common
from resnet_cifar.config import AMP_MODES, EVAL_BATCH_SIZE


def add_parser(sub) -> None:
    p = sub.add_parser(
        "bench", help="throughput of our pipeline vs a per-sample DataLoader baseline",
        description="Train and evaluate the same model through our pipeline (device-resident "
                    "data, batched augmentation, the Trainer's step) and a torchvision-style one, "
                    "interleaved in this process; report img/s, ms/step and the ratio (median "
                    "over rounds, warm-up excluded).")
    p.add_argument("--model", default="resnet20", help="see `resnet-cifar models`")
    p.add_argument("--batch-size", type=common.positive_int, default=64, help="training batch")
    p.add_argument("--eval-batch-size", type=common.positive_int, default=EVAL_BATCH_SIZE,
                   help="our eval batch")
    common.add_device_arg(p)
    p.add_argument("--steps", type=common.positive_int, default=10, help="training steps per round")
    p.add_argument("--eval-images", type=common.positive_int, default=2000,
                   help="images evaluated per round")
    p.add_argument("--repeats", type=common.positive_int, default=5, help="timed rounds (median)")
    p.add_argument("--warmup", type=common.nonnegative_int, default=1, help="untimed rounds first")
    p.add_argument("--workers", type=common.int_list("DataLoader worker counts", "0,2"),
                   default=[0, 2], metavar="0[,2]",
                   help="baseline DataLoader workers to try; the best is compared (default 0,2)")
    ours = p.add_argument_group("our pipeline")
    ours.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                      help="NHWC activations (default on: measured faster on CPU)")
    ours.add_argument("--compile", action="store_true",
                      help="torch.compile the training model (compile time reported apart)")
    ours.add_argument("--compile-mode", choices=("default", "reduce-overhead", "max-autotune",
                                                 "max-autotune-no-cudagraphs"),
                      help="default: the Trainer's pick (reduce-overhead = CUDA graphs on one GPU)")
    ours.add_argument("--amp", choices=AMP_MODES, default="none",
                      help="mixed precision in training: bf16 (CUDA, or a CPU with AVX512-BF16 "
                           "or AMX) or fp16 (CUDA); evaluation stays fp32 on the CPU")
    ours.add_argument("--optimizer", choices=("default", "fused", "foreach", "loop"),
                      default="default", help="SGD kernels (default: the Trainer's choice)")
    ours.add_argument("--folded", action=argparse.BooleanOptionalAction, default=True,
                      help="also time our evaluation of a copy with BatchNorm folded into the "
                           "convolutions, as ours_fold_bn (default on)")
    ours.add_argument("--compiled-eval", action="store_true",
                      help="also time our evaluation as `eval --compile` runs it (BatchNorm "
                           "folded, weights frozen, torch.compile), as ours_compiled; its "
                           "compile time is reported apart")
    ours.add_argument("--bf16-eval", action=argparse.BooleanOptionalAction, default=True,
                      help="also time our evaluation under bf16 autocast (`eval --amp bf16`), as "
                           "ours_eval_bf16, where bf16 runs in hardware: a GPU, or a CPU with "
                           "AVX512-BF16 or AMX (default on; not the float32 figure)")
    p.add_argument("--peak", action=argparse.BooleanOptionalAction, default=True,
                   help="on a CPU, also time a float32 matrix product in the same rounds: the "
                        "fastest any float32 pipeline of these FLOPs could run, reported as each "
                        "ratio's ceiling (default on)")
    p.add_argument("--threads", type=common.thread_count, default=0, help="0: one per core")
    p.add_argument("--data", metavar="PATH",
                   help="real CIFAR images (any layout); default: synthetic random uint8")
    p.add_argument("--no-baseline", dest="baseline", action="store_false",
                   help="time our pipeline only")
    p.add_argument("--no-eval", dest="evaluate", action="store_false",
                   help="time training only")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from resnet_cifar.bench import BenchConfig, format_report, run_benchmark

    # a BenchConfig field per flag, of the same name
    config = BenchConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(BenchConfig)
                            if hasattr(args, f.name)})
    config.workers = tuple(config.workers)
    report = None if args.json else (lambda line: print(line, file=sys.stderr, flush=True))
    result = run_benchmark(config, report=report)
    if args.json:
        common.print_json(result)
    else:
        print(format_report(result))
    return 0
