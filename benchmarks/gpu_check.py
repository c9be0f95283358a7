"""The GPU check, in phases that each fit a deadline: logits, throughput, the full recipe.

    PYTHONPATH=src python3 benchmarks/gpu_check.py --data .gpu/cifar10-jpeg.tar.gz --out DIR
    PYTHONPATH=src python3 benchmarks/gpu_check.py --cpu-dry-run --data PATH --out DIR

1. logits: every registered model on the GPU against the CPU, same weights and batch (BatchNorm in
   training mode, so that random weights give well-scaled logits): fp32 (TF32 off) within 1e-4,
   bf16 autocast within 1e-2, as the relative L2 error ||gpu - cpu|| / ||cpu||, and the share of
   images whose top-1 class agrees. (bf16 keeps 8 mantissa bits: ~2e-3 per rounding, growing with
   depth, so the deepest models may exceed 1e-2 without anything being wrong.)
2. throughput: `resnet_cifar.bench` at batch 64 and 512, our pipeline in eager, bf16, compile
   (torch.compile default mode) and graphs (mode "reduce-overhead": CUDA graphs) next to the
   per-sample DataLoader baseline.
3. recipe: `python -m resnet_cifar train` of the original recipe (ResNet-20, 150 epochs, batch 64)
   with --compile --channels-last, timed end to end, with its test accuracy; stopped (SIGTERM:
   it saves and exits) if it would overrun the script's budget, and then extrapolated.

Writes DIR/gpu_check.json and prints one line per result. --cpu-dry-run shrinks every phase and
runs it on the CPU (no compile: minutes of CPU), to check the script itself where no GPU is.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from resnet_cifar.bench import BenchConfig, run_benchmark
from resnet_cifar.models import create_model, list_models

START = time.monotonic()


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=".gpu/cifar10-jpeg.tar.gz")
    p.add_argument("--out", default=".gpu/out")
    p.add_argument("--budget", type=float, default=570.0,
                   help="seconds for the whole check (phases are cut to fit)")
    p.add_argument("--cpu-dry-run", action="store_true",
                   help="every phase shrunk, on the CPU: checks the script, not the GPU")
    return p.parse_args(argv)


def left(budget: float) -> float:
    return budget - (time.monotonic() - START)


def say(line: str) -> None:
    print(f"[{time.monotonic() - START:6.1f}s] {line}", flush=True)


# --------------------------------------------------------------------------- 1. logits


def relative_error(got: torch.Tensor, ref: torch.Tensor) -> float:
    return float((got.float().cpu() - ref).norm() / ref.norm().clamp_min(1e-12))


def top1_agreement(got: torch.Tensor, ref: torch.Tensor) -> float:
    return float((got.float().cpu().argmax(1) == ref.argmax(1)).float().mean())


def check_logits(device: torch.device, models: list[str]) -> list[dict]:
    torch.backends.cudnn.allow_tf32 = False  # fp32 means fp32 here (training keeps TF32 on)
    torch.backends.cuda.matmul.allow_tf32 = False
    rows = []
    x = torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for name in models:
        torch.manual_seed(0)
        model = create_model(name).train()  # batch statistics: well-scaled logits at random init
        with torch.no_grad():
            ref = model(x)
            model.to(device)
            fp32 = model(x.to(device))
            with torch.autocast(device.type, dtype=torch.bfloat16):
                bf16 = model(x.to(device))
        row = {"model": name, "fp32": relative_error(fp32, ref), "bf16": relative_error(bf16, ref),
               "fp32_top1": top1_agreement(fp32, ref), "bf16_top1": top1_agreement(bf16, ref)}
        row["ok"] = row["fp32"] <= 1e-4 and row["bf16"] <= 1e-2
        rows.append(row)
        say(f"logits {name:20} fp32 {row['fp32']:.1e} (top-1 {row['fp32_top1']:.0%})  bf16 "
            f"{row['bf16']:.1e} (top-1 {row['bf16_top1']:.0%})  "
            f"{'ok' if row['ok'] else 'OUT OF TOLERANCE'}")
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cuda.matmul.allow_tf32 = True
    return rows


# --------------------------------------------------------------------------- 2. throughput


def time_training(device: torch.device, dry: bool, budget: float) -> dict:
    """Batch 64 (the recipe: launch-bound) in eager, bf16, compile and graphs; batch 512 in eager,
    bf16 and graphs + bf16. Batch 512 is dropped if the recipe's time is at stake."""
    if dry:  # compile: minutes of CPU, and no part of what a dry run checks
        shapes = [(8, 2, 16, {})]  # (batch, steps, eval images, variants)
    else:
        graphs = {"compile": True, "compile_mode": "reduce-overhead"}
        shapes = [(64, 100, 10000, {"bf16": {"amp": "bf16"},
                                    "compile": {"compile": True, "compile_mode": "default"},
                                    "graphs": graphs}),
                  (512, 30, 10000, {"bf16": {"amp": "bf16"},
                                    "graphs_bf16": {**graphs, "amp": "bf16"}})]
    results = {}
    for batch, steps, eval_images, variants in shapes:
        if left(budget) < 100 and results:
            say(f"throughput at batch {batch}: skipped, the recipe needs the time left")
            continue
        torch._dynamo.reset()  # the previous shape's compiled models are gone; so are their guards
        cfg = BenchConfig(device=str(device), batch_size=batch, steps=steps,
                          eval_images=eval_images, repeats=1 if dry else 5,
                          workers=(0,) if dry else (0, 8), channels_last=True,
                          variants=variants)
        result = run_benchmark(cfg)
        results[batch] = result
        for kind in ("train", "eval"):
            for name, r in result[kind].items():
                say(f"{kind} batch {batch} {name:12} {r['img_per_s']:9.0f} img/s "
                    f"{r['ms_per_step']:8.2f} ms/step")
        for name, seconds in result["compile_s"].items():
            say(f"compile time batch {batch} {name}: {seconds:.1f} s")
    return results


# --------------------------------------------------------------------------- 3. the recipe


def decode_data(data: str) -> float:
    from resnet_cifar.data import load_cifar

    start = time.monotonic()
    load_cifar(data, progress=False)
    return time.monotonic() - start


def run_recipe(data: str, out: Path, device: torch.device, dry: bool, budget: float) -> dict:
    run_dir = out / "recipe"
    cmd = [sys.executable, "-m", "resnet_cifar", "train", "--data", data, "--out", str(run_dir),
           "--overwrite", "--device", device.type, "--channels-last", "--no-progress"]
    if dry:
        cmd += ["--epochs", "1", "--train-subset", "512", "--threads", "1"]
    else:
        cmd += ["--compile"]  # on one GPU: mode reduce-overhead (CUDA graphs)
    timeout = max(left(budget) - 15, 30)
    say(f"recipe: {' '.join(cmd)} (stopped after {timeout:.0f} s)")
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # the trainer saves last.pt and exits 143
        try:
            output, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
    wall = time.monotonic() - start
    (out / "recipe.log").write_text(output)
    result = {"command": cmd, "wall_s": wall, "exit_code": proc.returncode,
              "log_tail": output.splitlines()[-12:]}
    summary = run_dir / "summary.json"
    if summary.is_file():
        s = json.loads(summary.read_text())
        result.update(epochs=s["epochs"], test_acc=s["test_acc"], sec_per_epoch=s["sec_per_epoch"],
                      img_per_s=s["img_per_s"])
    elif (run_dir / "metrics.jsonl").is_file():
        rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        if rows:
            per_epoch = sum(r["epoch_time"] for r in rows[1:]) / max(len(rows) - 1, 1)
            result.update(epochs=len(rows), last_val_acc=rows[-1]["val_acc"],
                          sec_per_epoch_after_first=per_epoch,
                          projected_150_epochs_s=rows[0]["epoch_time"] + 149 * per_epoch)
    say(f"recipe: exit {proc.returncode}, {wall:.0f} s wall, "
        + ", ".join(f"{k} {v}" for k, v in result.items()
                    if k in ("epochs", "test_acc", "sec_per_epoch", "projected_150_epochs_s")))
    return result


def main(argv=None) -> dict:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.cpu_dry_run:
        device = torch.device("cpu")
        torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    else:
        if not torch.cuda.is_available():
            sys.exit("no CUDA device: run with --cpu-dry-run to check the script on the CPU")
        device = torch.device("cuda")
        torch.set_num_threads(min(8, os.cpu_count() or 1))
    report: dict = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
                    "torch": torch.__version__, "dry_run": args.cpu_dry_run}

    def save() -> None:
        (out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str))

    # The dry run: two models (a plain and a recurrent one); CPU bf16 is emulated, and slow.
    models = ["resnet20", "resnet20_convgru"] if args.cpu_dry_run else list_models()
    report["logits"] = check_logits(device, models)
    save()
    report["decode_s"] = decode_data(args.data)
    say(f"data decoded (or read from the cache) in {report['decode_s']:.1f} s")
    recipe_reserve = 60 if args.cpu_dry_run else 280  # the recipe's share of the budget
    report["throughput"] = time_training(device, args.cpu_dry_run, args.budget - recipe_reserve)
    save()
    report["recipe"] = run_recipe(args.data, out, device, args.cpu_dry_run, args.budget)
    save()
    bad = [r["model"] for r in report["logits"] if not r["ok"]]
    say("logits out of tolerance: " + (", ".join(bad) if bad else "none"))
    return report


if __name__ == "__main__":
    main()
