"""Our training/evaluation pipeline vs the torchvision-style baseline (`make bench` runs this).

    python benchmarks/bench_train.py [any `resnet-cifar bench` flag] [--levers nchw,fused_sgd,...]
        [--out results.json]

The same library code as `resnet-cifar bench` (resnet_cifar.bench); --levers adds variants of our
pipeline, each with one speed option changed, timed in the same interleaved rounds, so that every
lever is judged against the same baseline in the same run. Results on the 2-core development CPU:
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import sys

from resnet_cifar.bench import format_report, run_benchmark
from resnet_cifar.cli import build_parser
from resnet_cifar.cli.bench_cmd import config_from_args

# One option changed from our default pipeline (channels_last, the Trainer's SGD, eager).
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
    "one_thread": {"threads": 1},
    "plain_cat": {"plain_cat": True},
    "bf16": {"amp": "bf16"},
    "graphs": {"compile": True, "compile_mode": "reduce-overhead"},
}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], add_help=False)
    p.add_argument("--levers", default="",
                   help=f"comma-separated variants of ours to add: {', '.join(LEVERS)}")
    p.add_argument("--out", help="also write the JSON result here")
    own, rest = p.parse_known_args(argv)
    if "-h" in rest or "--help" in rest:
        p.print_help()
        build_parser().parse_args(["bench", "--help"])
    args = build_parser().parse_args(["bench", *rest])
    config = config_from_args(args)
    names = [n for n in own.levers.split(",") if n]
    unknown = [n for n in names if n not in LEVERS]
    if unknown:
        p.error(f"unknown lever(s) {', '.join(unknown)}; choose from {', '.join(LEVERS)}")
    config.variants = {n: LEVERS[n] for n in names}
    report = None if args.json else (lambda line: print(line, file=sys.stderr, flush=True))
    result = run_benchmark(config, report=report)
    if own.out:
        with open(own.out, "w") as f:
            json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2) if args.json else format_report(result))
    return result


if __name__ == "__main__":
    main()
