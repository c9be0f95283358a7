"""Our training/evaluation pipeline vs the torchvision-style baseline (`make bench` runs this).

    python benchmarks/bench_train.py [any `resnet-cifar bench` flag] [--levers nchw,fused_sgd,...]
        [--out results.json]

The same library code as `resnet-cifar bench` (resnet_cifar.bench); --levers adds variants of our
pipeline, each with one speed option changed, timed in the same interleaved rounds, so that every
lever is judged against the same baseline in the same run. Its flags are BenchConfig's fields
(tests/test_speed_paths.py checks that every `resnet-cifar bench` flag is among them).

Two levers are no option of the library, only of this script (KNOBS), each switched within its
variant's rounds alone: "chunk", the images per forward of our CPU evaluation
(engine.evaluate.CPU_EVAL_CHUNK, which it patches), and "plain_cat", the recurrent cells computing
their zero state as real zeros (plain_cat below, patched over models.cells.conv_cat): the form
the cells' skip is measured against. Results on the 2-core development CPU: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import sys
from collections.abc import Iterator

import torch

from resnet_cifar import bench
from resnet_cifar.bench_pipelines import our_pipelines
from resnet_cifar.engine import evaluate
from resnet_cifar.errors import UserError
from resnet_cifar.models import cells

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
    "eval_unchunked": {"chunk": 1_000_000},  # the whole loader batch in one forward
    "eval_chunk_16": {"chunk": 16},
    "eval_chunk_32": {"chunk": 32},
    "eval_chunk_128": {"chunk": 128},
    "eval_nchw_fold_bn": {"channels_last": False, "evaluation": "folded"},
    "eval_compiled_nchw": {"channels_last": False, "evaluation": "compiled"},
    "eval_compiled_chunk_16": {"evaluation": "compiled", "chunk": 16},
    "eval_compiled_chunk_32": {"evaluation": "compiled", "chunk": 32},
    "eval_compiled_chunk_128": {"evaluation": "compiled", "chunk": 128},
    "eval_compiled_chunk_256": {"evaluation": "compiled", "chunk": 256},
    "one_thread": {"threads": 1},
    "plain_cat": {"plain_cat": True},
    "bf16": {"amp": "bf16"},
    "graphs": {"compile": True, "compile_mode": "reduce-overhead"},
}
KNOBS = ("chunk", "plain_cat")  # this script's levers; "chunk" changes evaluation only
# BenchConfig's switches that default on, by the flag that turns them off (as resnet-cifar bench)
OFF_FLAGS = {"baseline": "--no-baseline", "evaluate": "--no-eval"}


@contextlib.contextmanager
def patched(module, name: str, value) -> Iterator[None]:
    """``module.name`` set to ``value`` within the block."""
    before = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, before)


def plain_cat(conv: torch.nn.Module, parts: list[torch.Tensor | None]) -> torch.Tensor:
    """cells.conv_cat computed the plain way: each ``None`` part made real zeros of its width
    (what the conv's input channels leave after the given parts, shared equally), one cat, the
    whole convolution. The same result as the skip, at the cost the skip saves."""
    ref = next(p for p in parts if p is not None)
    known = sum(p.shape[1] for p in parts if p is not None)
    width = (conv.in_channels - known) // max(1, sum(p is None for p in parts))
    zeros = ref.new_zeros(ref.shape[0], width, *ref.shape[2:])
    return conv(torch.cat([zeros if p is None else p for p in parts], dim=1))


@contextlib.contextmanager
def switched(context, lever: dict) -> Iterator[None]:
    """``context()`` (ours: its thread count) and the KNOBS ``lever`` sets, within the block."""
    with context(), contextlib.ExitStack() as stack:
        if "chunk" in lever:
            stack.enter_context(patched(evaluate, "CPU_EVAL_CHUNK", lever["chunk"]))
        if lever.get("plain_cat"):
            stack.enter_context(patched(cells, "conv_cat", plain_cat))
        yield


def lever_pipelines(name: str, lever: dict, config: bench.BenchConfig, splits, device):
    """Our pipelines as ``lever`` changes them: its BenchConfig fields set, and its KNOBS
    switched around each of their runs."""
    overrides = {k: v for k, v in lever.items() if k not in KNOBS}
    kinds = bench.kinds_changed(lever, bench.EVAL_ONLY | {"chunk"})
    found = our_pipelines(name, dataclasses.replace(config, **overrides), splits, device, kinds)
    for p in found:
        p.context = functools.partial(switched, p.context, lever)
    return found


def add_config_flags(p: argparse.ArgumentParser) -> None:
    """One flag per BenchConfig field, named and typed after it (--batch-size for batch_size)."""
    defaults = bench.BenchConfig()
    for f in dataclasses.fields(bench.BenchConfig):
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


def run_levers(config: bench.BenchConfig, levers: dict[str, dict], report=None) -> dict:
    """bench.run_benchmark with ``levers`` (name: BenchConfig overrides and KNOBS) timed as
    variants of ours, in the same rounds."""
    device, threads, splits = bench.prepare(config)
    variants = {"ours": {}, **bench.bench_variants(config), **levers}
    pipelines = [p for name, lever in variants.items()
                 for p in lever_pipelines(name, lever, config, splits, device)]
    pipelines += bench.reference_pipelines(config, splits, device)
    return bench.measure(config, pipelines, variants, device, threads, splits.source, report)


def main(argv: list[str] | None = None) -> dict:
    p = build_parser()
    args = p.parse_args(argv)
    names = [n for n in args.levers.split(",") if n]
    unknown = [n for n in names if n not in LEVERS]
    if unknown:
        p.error(f"unknown lever(s) {', '.join(unknown)}; choose from {', '.join(LEVERS)}")
    fields = {f.name for f in dataclasses.fields(bench.BenchConfig)}
    config = bench.BenchConfig(**{k: v for k, v in vars(args).items() if k in fields})
    report = None if args.json else (lambda line: print(line, file=sys.stderr, flush=True))
    try:
        result = run_levers(config, {n: LEVERS[n] for n in names}, report=report)
    except UserError as err:  # a value the benchmark cannot measure: one line, exit 2
        p.error(str(err))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2) if args.json else bench.format_report(result))
    return result


if __name__ == "__main__":
    main()
