"""The GPU check, in phases that each fit a deadline: tests, logits, throughput, the full recipe.

    PYTHONPATH=src python3 benchmarks/gpu_check.py [--data .gpu-data/cifar10-jpeg.tar.gz] --out DIR
    PYTHONPATH=src python3 benchmarks/gpu_check.py --cpu-dry-run [--data PATH] --out DIR

0. tests: `pytest tests/test_cuda.py` (CUDA graphs, AMP, EMA, exact resume, checkpoints), within
   a time limit; its output in DIR/tests.log.
1. logits: every registered model on the GPU against the CPU, same weights and batch (BatchNorm in
   training mode, so that random weights give well-scaled logits), as the relative L2 error
   ||gpu - cpu|| / ||cpu||: fp32 (TF32 off) within 1e-4; bf16 autocast within a tolerance that
   grows with depth (K_BF16), with the same top-1 class on >= 95% of the images whose class is
   clear.
2. throughput: `resnet_cifar.bench` at batch 64 and 512, our pipeline in eager, bf16, compile
   (torch.compile default mode) and graphs (mode "reduce-overhead": CUDA graphs) next to the
   per-sample DataLoader baseline, with the cudagraph skips and the compilations after the
   warm-up round (torch._dynamo.utils.counters).
3. recipe: `python -m resnet_cifar train` of the original recipe (ResNet-20, 150 epochs, batch 64)
   with --compile --channels-last, its output streamed to DIR/recipe.log; stopped with SIGTERM (it
   saves and exits) GRACE seconds before the budget ends, and projected to 150 epochs from the
   wall time of its epochs (validation and saving included) and its start-up.

Each phase is wrapped: an exception is recorded in DIR/gpu_check.json, rewritten (atomically) as
each phase ends, and the next phase runs. Exit 0 when every phase passed its checks, 1 otherwise,
2 at once (one line) when the data or the GPU is missing. --cpu-dry-run shrinks every phase and
runs it on the CPU, compile and bf16 included, to check the script where no GPU is; without
--data it trains on a small random data set that it writes itself.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

import numpy as np
import torch
from torch._dynamo.utils import counters

from resnet_cifar.bench import BenchConfig, run_benchmark
from resnet_cifar.models import create_model, list_models

START = time.monotonic()
ROOT = Path(__file__).resolve().parents[1]
DATA = ".gpu-data/cifar10-jpeg.tar.gz"  # its folder holds nothing else: it travels alone
GRACE = 30  # seconds a SIGTERM'd run gets to save and exit; the budget includes them
RECIPE_EPOCHS = 150
# bf16 autocast vs fp32: relative L2 error of the logits within K_BF16 * depth**1.5, depth = conv
# and linear calls in one forward (a recurrent cell's convolutions count at each step). On the
# CPU (128 random images, seeds 0 and 1) all 13 models gave 5e-5 to 1.5e-4 * depth**1.5: resnet20
# (depth 22) 7.9e-3 and 8.5e-3, resnet56 (58) 2.8e-2 and 3.8e-2, resnet110 (112) 5.7e-2 and
# 6.6e-2, regnet56_convlstm (115) 9.6e-2 and 0.18, regnet56_convgru (139) 0.16 and 0.15. Rounding
# compounds through random-init residual blocks (faster than sqrt(depth) or depth), nothing is
# wrong. 3e-4 leaves 2x for the GPU's other kernels; a broken kernel gives errors near 1.
K_BF16 = 3e-4
TOP1_AGREEMENT = 0.95
# A line of rundir.format_row: the trainer prints it once the epoch is validated and saved.
EPOCH_ROW = re.compile(r"^\s*\d+/\d+\s+lr\s")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", help=f"CIFAR-10 in any layout (default {DATA}; --cpu-dry-run: "
                                  "a small random set)")
    p.add_argument("--out", default=".gpu/out")
    p.add_argument("--budget", type=float, default=480.0,
                   help="seconds for the whole check, GRACE included: 600 s per command leaves "
                        "start-up and the copy back 120 s")
    p.add_argument("--phases", default="tests,logits,throughput,recipe",
                   help="which phases, comma-separated (a second command can run the rest)")
    p.add_argument("--cpu-dry-run", action="store_true",
                   help="every phase shrunk, on the CPU: checks the script, not the GPU")
    return p.parse_args(argv)


def left(deadline: float) -> float:
    return deadline - (time.monotonic() - START)


def say(line: str) -> None:
    print(f"[{time.monotonic() - START:6.1f}s] {line}", flush=True)


def run_logged(cmd: list[str], log_path: Path, timeout: float, env=None):
    """Run ``cmd``, its output streamed to ``log_path`` as it comes; SIGTERM after ``timeout``
    seconds, SIGKILL GRACE seconds later. Returns (exit code, wall seconds, [(seconds since
    the start, line)])."""
    start = time.monotonic()
    lines: list[tuple[float, str]] = []
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)

    def pump() -> None:  # owns the log: compile workers may hold the pipe open after the run
        with open(log_path, "w") as log:
            for line in proc.stdout:
                log.write(line)
                log.flush()
                lines.append((time.monotonic() - start, line.rstrip("\n")))

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # the trainer saves last.pt and exits 143
        try:
            proc.wait(timeout=GRACE)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    reader.join(timeout=5)
    return proc.returncode, time.monotonic() - start, list(lines)


# --------------------------------------------------------------------------- 0. tests


def run_tests(out: Path, timeout: float) -> dict:
    cmd = [sys.executable, "-m", "pytest", "tests/test_cuda.py", "-rs", "-p", "no:cacheprovider"]
    code, wall, lines = run_logged(cmd, out / "tests.log", timeout)
    summary = next((line for _, line in reversed(lines) if line.strip()), "")
    say(f"tests: exit {code} in {wall:.0f} s: {summary}")
    return {"command": cmd, "exit_code": code, "wall_s": wall, "summary": summary,
            "timed_out": wall >= timeout}


# --------------------------------------------------------------------------- 1. logits


def relative_error(got: torch.Tensor, ref: torch.Tensor) -> float:
    return float((got - ref).norm() / ref.norm().clamp_min(1e-12))


def check_logits(device: torch.device, models: list[str], images: int = 128) -> list[dict]:
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    # fp32 means fp32 here; the phases after this one run with the settings training has
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    x = torch.randn(images, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    try:
        return [logits_row(device, name, x) for name in models]
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def logits_row(device: torch.device, name: str, x: torch.Tensor) -> dict:
    torch.manual_seed(0)
    model = create_model(name).train()  # batch statistics: well-scaled logits at random init
    calls = []
    hooks = [m.register_forward_hook(lambda *_: calls.append(1)) for m in model.modules()
             if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    with torch.no_grad():
        ref = model(x)
        for hook in hooks:
            hook.remove()
        model.to(device)
        fp32 = model(x.to(device)).float().cpu()
        with torch.autocast(device.type, dtype=torch.bfloat16):
            bf16 = model(x.to(device)).float().cpu()
    tol = K_BF16 * len(calls) ** 1.5
    # Random-init logits have near-ties that bf16 may flip: judge the top-1 class only where the
    # fp32 margin exceeds the error the tolerance allows on a logit.
    top2 = ref.topk(2, 1).values
    clear = top2[:, 0] - top2[:, 1] > tol * ref.pow(2).mean().sqrt()
    agree = bf16.argmax(1) == ref.argmax(1)
    row = {"model": name, "depth": len(calls), "fp32": relative_error(fp32, ref),
           "bf16": relative_error(bf16, ref), "bf16_tolerance": tol,
           "fp32_top1": float((fp32.argmax(1) == ref.argmax(1)).float().mean()),
           "bf16_top1_all": float(agree.float().mean()), "clear_images": int(clear.sum()),
           "bf16_top1_clear": float(agree[clear].float().mean()) if clear.any() else 1.0}
    row["ok"] = (row["fp32"] <= 1e-4 and row["bf16"] <= tol
                 and row["bf16_top1_clear"] >= TOP1_AGREEMENT)
    say(f"logits {name:20} fp32 {row['fp32']:.1e}  bf16 {row['bf16']:.1e} (tolerance {tol:.1e}, "
        f"top-1 {row['bf16_top1_clear']:.0%} of {row['clear_images']} clear)  "
        f"{'ok' if row['ok'] else 'OUT OF TOLERANCE'}")
    return row


# --------------------------------------------------------------------------- 2. throughput


def compilations() -> dict:
    # frames: every dynamo compilation, recompilations included; the skips: inductor's own count
    return {"frames_compiled": counters["frames"]["total"],
            "cudagraph_skips": counters["inductor"]["cudagraph_skips"]}


def time_training(device: torch.device, dry: bool, deadline: float) -> dict:
    """Batch 64 (the recipe: launch-bound) in eager, bf16, compile and graphs; batch 512 in eager,
    bf16 and graphs + bf16. A shape is skipped when the recipe's time is at stake."""
    if dry:  # one compilation (minutes of CPU), of the recipe's graph: the recipe finds it cached
        shapes = [(64, 2, 64, {"bf16": {"amp": "bf16"},
                               "compile": {"compile": True, "compile_mode": "default"}})]
    else:
        graphs = {"compile": True, "compile_mode": "reduce-overhead"}
        shapes = [(64, 100, 10000, {"bf16": {"amp": "bf16"},
                                    "compile": {"compile": True, "compile_mode": "default"},
                                    "graphs": graphs}),
                  (512, 30, 10000, {"bf16": {"amp": "bf16"},
                                    "graphs_bf16": {**graphs, "amp": "bf16"}})]
    results = {}
    for batch, steps, eval_images, variants in shapes:
        if left(deadline) < 90:
            say(f"throughput at batch {batch}: skipped, the recipe needs the time left")
            continue
        torch._dynamo.reset()  # the previous shape's compiled models are gone; so are their guards
        counters.clear()
        warm = {}

        def after_round(line: str, warm=warm) -> None:  # the last warm-up line: all compiled
            if "warm-up" in line:
                warm.update(compilations())

        cfg = BenchConfig(device=str(device), batch_size=batch, steps=steps,
                          eval_images=eval_images, repeats=1 if dry else 3,
                          workers=(0,) if dry else (0, 8), channels_last=True, peak=False,
                          threads=1 if dry else 0, variants=variants)
        result = run_benchmark(cfg, after_round)
        end = compilations()
        result["dynamo"] = {**end, "recompiles_after_warmup":
                            end["frames_compiled"] - warm.get("frames_compiled", 0)}
        results[batch] = result
        for kind in ("train", "eval"):
            for name, r in result[kind].items():
                say(f"{kind} batch {batch} {name:12} {r['img_per_s']:9.0f} img/s "
                    f"{r['ms_per_step']:8.2f} ms/step")
        for name, seconds in result["compile_s"].items():
            say(f"compile time batch {batch} {name}: {seconds:.1f} s")
        say(f"dynamo batch {batch}: {result['dynamo']}")
    return results


# --------------------------------------------------------------------------- 3. the recipe


def synthetic_data(root: Path) -> str:
    """A CIFAR-10 python-layout folder of random images, 1,000 to train and 200 to test."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, n in (("data_batch_1", 1000), ("test_batch", 200)):
        batch = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 "labels": [i % 10 for i in range(n)]}
        (folder / name).write_bytes(pickle.dumps(batch))
    return str(folder)


def decode_data(data: str) -> dict:
    from resnet_cifar.data import load_cifar

    start = time.monotonic()
    arrays = load_cifar(data, progress=False)
    seconds = time.monotonic() - start
    say(f"data decoded (or read from the cache) in {seconds:.1f} s")
    return {"seconds": seconds, "train_images": len(arrays.train_labels),
            "test_images": len(arrays.test_labels)}


def run_recipe(data: str, out: Path, device: torch.device, dry: bool, deadline: float) -> dict:
    run_dir = out / "recipe"
    cmd = [sys.executable, "-m", "resnet_cifar", "train", "--data", data, "--out", str(run_dir),
           "--overwrite", "--device", device.type, "--channels-last", "--no-progress",
           "--compile"]  # on one GPU: mode reduce-overhead (CUDA graphs)
    if dry:
        cmd += ["--epochs", "2", "--train-subset", "512", "--threads", "1"]
    # the trainer runs in a process of its own: its recompiles are counted from its log
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TORCH_LOGS": "recompiles"}
    timeout = left(deadline) - GRACE
    if timeout < 30:  # too little to compile and train: the budget comes first
        say(f"recipe: skipped, {left(deadline):.0f} s left")
        return {"command": cmd, "skipped": f"{left(deadline):.0f} s left of the budget"}
    say(f"recipe: {' '.join(cmd)} (SIGTERM after {timeout:.0f} s)")
    code, wall, lines = run_logged(cmd, out / "recipe.log", timeout, env)
    ends = [t for t, line in lines if EPOCH_ROW.match(line)]
    text = [line for _, line in lines]
    result = {"command": cmd, "wall_s": wall, "exit_code": code, "epochs_done": len(ends),
              "epoch_end_s": [round(t, 1) for t in ends],
              "recompiles": sum("Recompiling function" in line for line in text),
              "cudagraph_skips": sum("skipping cudagraphs" in line for line in text),
              "log_tail": text[-12:]}
    if len(ends) >= 2:  # the first epoch holds start-up and compilation, the rest is steady
        steady = (ends[-1] - ends[0]) / (len(ends) - 1)
        finish = wall - ends[-1] if code == 0 else 0.0  # test figure and model.pth
        result.update(startup_and_first_epoch_s=ends[0], wall_per_epoch_s=steady,
                      projected_150_epochs_s=ends[0] + (RECIPE_EPOCHS - 1) * steady + finish)
    metrics = run_dir / "metrics.jsonl"
    if metrics.is_file() and metrics.read_text().strip():
        result["last_val_acc"] = json.loads(metrics.read_text().splitlines()[-1])["val_acc"]
    summary = run_dir / "summary.json"
    if summary.is_file():
        s = json.loads(summary.read_text())
        result.update(epochs=s["epochs"], test_acc=s["test_acc"], sec_per_epoch=s["sec_per_epoch"],
                      img_per_s=s["img_per_s"])
    say(f"recipe: exit {code}, {wall:.0f} s wall, "
        + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                    for k, v in result.items()
                    if k in ("epochs_done", "test_acc", "wall_per_epoch_s",
                             "projected_150_epochs_s", "recompiles", "cudagraph_skips")))
    return result


# --------------------------------------------------------------------------- the check


def problems(report: dict) -> list[str]:
    found = [f"{name}: {r['error']}" for name, r in report.items()
             if isinstance(r, dict) and "error" in r]
    if report.get("tests", {}).get("exit_code", 0) != 0:
        found.append(f"tests: {report['tests']['summary']}")
    if isinstance(report.get("logits"), list):
        found += [f"logits out of tolerance: {r['model']}" for r in report["logits"] if not r["ok"]]
    for batch, r in (report.get("throughput") or {}).items():
        dynamo = r.get("dynamo", {}) if isinstance(r, dict) else {}
        if dynamo.get("cudagraph_skips") or dynamo.get("recompiles_after_warmup"):
            found.append(f"throughput batch {batch}: {dynamo}")
    recipe = report.get("recipe", {})
    if recipe.get("exit_code") not in (None, 0, 143):  # 143: stopped by the budget, and saved
        found.append(f"recipe: exit {recipe['exit_code']}")
    if "skipped" in recipe:
        found.append(f"recipe: skipped, {recipe['skipped']}")
    if recipe.get("recompiles") or recipe.get("cudagraph_skips"):
        found.append(f"recipe: {recipe['recompiles']} recompiles, "
                     f"{recipe['cudagraph_skips']} cudagraph skips")
    return found


def main(argv=None) -> int:
    args = parse_args(argv)
    dry = args.cpu_dry_run
    data = args.data or (None if dry else DATA)
    if data is not None and not Path(data).exists():
        print(f"gpu_check: no data at {data}: copy cifar10-jpeg.tar.gz into a folder that holds "
              "nothing else and pass it (DATA=... or --data)", file=sys.stderr)
        return 2
    if not dry and not torch.cuda.is_available():
        print("gpu_check: no CUDA device; --cpu-dry-run checks the script on the CPU",
              file=sys.stderr)
        return 2
    phases = set(args.phases.split(","))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device("cpu" if dry else "cuda")
    # one thread on a shared CPU: two that wait on each other's barriers are many times slower
    torch.set_num_threads(1 if dry else min(8, os.cpu_count() or 1))
    report: dict = {"device": torch.cuda.get_device_name() if not dry else "cpu",
                    "torch": torch.__version__, "cuda": torch.version.cuda, "dry_run": dry,
                    "seconds": {}}
    if not dry and shutil.which("nvidia-smi"):
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                              "--format=csv,noheader"], capture_output=True, text=True)
        report["nvidia_smi"] = smi.stdout.strip()
    say(f"{report['device']}, torch {torch.__version__}, cuda {torch.version.cuda}, "
        f"phases {args.phases}, budget {args.budget:.0f} s")

    def save() -> None:  # atomically: a check cut short still leaves a whole JSON
        tmp = out / "gpu_check.json.tmp"
        tmp.write_text(json.dumps(report, indent=2, default=str))
        os.replace(tmp, out / "gpu_check.json")

    def phase(name: str, run) -> None:
        start = time.monotonic()
        try:
            report[name] = run()
        except Exception as err:  # recorded; the next phase still runs
            report[name] = {"error": f"{type(err).__name__}: {err}",
                            "traceback": traceback.format_exc().splitlines()[-8:]}
            say(f"{name}: FAILED: {type(err).__name__}: {err}")
        report["seconds"][name] = round(time.monotonic() - start, 1)
        save()

    with tempfile.TemporaryDirectory() as tmp:
        data = data or synthetic_data(Path(tmp))
        if "tests" in phases:
            phase("tests", lambda: run_tests(out, 120))
        if "logits" in phases:
            # The dry run: two models (a plain and a recurrent one); CPU bf16 may be emulated.
            models = ["resnet20", "resnet20_convgru"] if dry else list_models()
            phase("logits", lambda: check_logits(device, models, 32 if dry else 128))
        if "throughput" in phases:  # random images: it needs no data
            # the recipe's share: decoding, compiling, and epochs enough to project from
            reserve = (60 if dry else 240) if "recipe" in phases else 0
            phase("throughput", lambda: time_training(device, dry, args.budget - reserve))
        if "recipe" in phases:
            phase("decode", lambda: decode_data(data))  # once, into the cache the recipe reads
            phase("recipe", lambda: run_recipe(data, out, device, dry, args.budget))
    report["problems"] = problems(report)
    save()
    say("problems: " + ("; ".join(report["problems"]) or "none") + f" ({out / 'gpu_check.json'})")
    return 1 if report["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
