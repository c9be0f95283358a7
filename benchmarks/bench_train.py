"""Our training/evaluation pipeline vs the torchvision-style baseline (`make bench` runs this).

    python benchmarks/bench_train.py [any `resnet-cifar bench` flag] [--levers nchw,fused_sgd,...]
        [--out results.json]

The same library code as `resnet-cifar bench` (resnet_cifar.bench); --levers adds variants of our
pipeline, each with one speed option changed, timed in the same interleaved rounds, so that every
lever is judged against the same baseline in the same run. Its flags are BenchConfig's fields
(tests/test_speed_paths.py checks that every `resnet-cifar bench` flag is among them). Results on
the 2-core development CPU: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from resnet_cifar.bench import BenchConfig, format_report, run_benchmark
from resnet_cifar.errors import UserError

# One option changed from our default pipeline (channels_last, train()'s SGD, eager).
LEVERS = {
    "nchw": {"channels_last": False},
    "fused_sgd": {"optimizer": "fused"},
    "foreach_sgd": {"optimizer": "foreach"},
    "loop_sgd": {"optimizer": "loop"},
    "compile": {"compile": True},
    "compile_nchw": {"compile": True, "channels_last": False},
    "eval_batch_64": {"eval_batch_size": 64},
    "eval_batch_250": {"eval_batch_size": 250},
    "eval_unchunked": {"eval_chunk": 1_000_000},  # the whole loader batch in one forward
    "eval_chunk_16": {"eval_chunk": 16},
    "eval_chunk_32": {"eval_chunk": 32},
    "eval_chunk_128": {"eval_chunk": 128},
    "eval_nchw_fold_bn": {"channels_last": False, "fold_bn": True},
    "eval_compiled_nchw": {"channels_last": False, "compile_eval": True},
    "eval_compiled_chunk_16": {"compile_eval": True, "eval_chunk": 16},
    "eval_compiled_chunk_32": {"compile_eval": True, "eval_chunk": 32},
    "eval_compiled_chunk_128": {"compile_eval": True, "eval_chunk": 128},
    "eval_compiled_chunk_256": {"compile_eval": True, "eval_chunk": 256},
    "one_thread": {"threads": 1},
    "plain_cat": {"plain_cat": True},
    "bf16": {"amp": "bf16"},
    "graphs": {"compile": True, "compile_mode": "reduce-overhead"},
}
# BenchConfig's switches that default on, by the flag that turns them off (as resnet-cifar bench)
OFF_FLAGS = {"baseline": "--no-baseline", "evaluate": "--no-eval"}


def add_config_flags(p: argparse.ArgumentParser) -> None:
    """One flag per BenchConfig field, named and typed after it (--batch-size for batch_size)."""
    defaults = BenchConfig()
    for f in dataclasses.fields(BenchConfig):
        if f.name == "variants":  # --levers fills it
            continue
        flag, default = "--" + f.name.replace("_", "-"), getattr(defaults, f.name)
        if f.name in OFF_FLAGS:
            p.add_argument(OFF_FLAGS[f.name], dest=f.name, action="store_false")
        elif isinstance(default, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
        elif isinstance(default, tuple):
            p.add_argument(flag, default=default, metavar="N[,N]",
                           type=lambda text: tuple(int(n) for n in text.split(",")))
        else:
            p.add_argument(flag, default=default, type=type(default) if default is not None
                           else str)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_config_flags(p)
    p.add_argument("--levers", default="",
                   help=f"comma-separated variants of ours to add: {', '.join(LEVERS)}")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--out", help="also write the JSON result here")
    return p


def main(argv: list[str] | None = None) -> dict:
    p = build_parser()
    args = p.parse_args(argv)
    names = [n for n in args.levers.split(",") if n]
    unknown = [n for n in names if n not in LEVERS]
    if unknown:
        p.error(f"unknown lever(s) {', '.join(unknown)}; choose from {', '.join(LEVERS)}")
    fields = {f.name for f in dataclasses.fields(BenchConfig)}
    config = BenchConfig(**{k: v for k, v in vars(args).items() if k in fields})
    config.variants = {n: LEVERS[n] for n in names}
    report = None if args.json else (lambda line: print(line, file=sys.stderr, flush=True))
    try:
        result = run_benchmark(config, report=report)
    except UserError as err:  # a value the benchmark cannot measure: one line, exit 2
        p.error(str(err))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2) if args.json else format_report(result))
    return result


if __name__ == "__main__":
    main()
