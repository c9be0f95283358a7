"""Before/after comparison of the CLI, for refactors: record what every command prints and writes.

    python benchmarks/cli_compare.py record --src SRC_DIR OUT_DIR   # OUT_DIR/record.json
    python benchmarks/cli_compare.py diff OLD_DIR NEW_DIR           # exit 1 if any command differs

`record` builds tiny synthetic CIFAR data in a fresh temporary folder, then runs each command of
LANES below as `PYTHON -m resnet_cifar ...` with PYTHONPATH=SRC_DIR (checked to be the copy
imported), OMP_NUM_THREADS=1 and an isolated HOME and cache. It keeps each command's exit code,
stdout and stderr, and every file it wrote or changed in its lane's folder: for checkpoints a
sha256 of their tensors with their other content, for text its content, for the rest (plots,
HTML) its size class. Everything is normalized (temp path -> <WORK>, timings, speeds, dates) so
that two recordings of the same code are equal: record twice and diff to check that. The two
lanes run side by side (each in its own folder with its own cache); within one, in order, and a
command may use what an earlier one wrote. Run it with the project's venv python (it needs torch).
A record takes about 5 minutes on two CPU cores (10 when other jobs load them).

    git worktree add --detach ~/base-896c995 896c995       # the code before the refactor
    python benchmarks/cli_compare.py record --src ~/base-896c995/src ~/cli-snapshots/base-896c995
    python benchmarks/cli_compare.py record --src src /tmp/cli-new
    python benchmarks/cli_compare.py diff ~/cli-snapshots/base-896c995 /tmp/cli-new
"""

from __future__ import annotations

import argparse
import csv
import difflib
import hashlib
import io
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

D = "../data/images"  # image folder: 10 classes x (4 train + 2 test) learnable 32x32 PNGs
OTHER = "../data/other"  # the same layout, other pixels (another fingerprint)
PNG = "../data/images/test/cat/0000.png"
TEXT = {".json", ".jsonl", ".csv", ".txt", ".toml", ".md", ".log"}
TINY = ["--epochs", "1", "--batch-size", "8", "--threads", "1"]

# (name, argv). Names starting "bad-" are inputs expected to be refused.
RUNS = [
    ("train-default", ["train", "--data", D, *TINY, "--out", "r-base"]),
    ("train-seed1", ["train", "--data", D, *TINY, "--seed", "1", "--out", "r-seed1"]),
    ("train-val-subset", ["train", "--data", D, *TINY, "--train-subset", "20", "--val-split", "10",
                          "--lr", "0.05", "--out", "r-val"]),
    ("train-fast", ["train", "--recipe", "fast", "--data", D, *TINY, "--out", "r-fast"]),
    ("train-flags", ["train", "--data", D, *TINY, "--schedule", "cosine", "--nesterov",
                     "--label-smoothing", "0.1", "--cutout", "8", "--flip", "alternating",
                     "--normalize", "half", "--no-decay-bn-bias", "--zero-init-residual",
                     "--ema-decay", "0.9", "--tta", "flip", "--deterministic", "--out", "r-flags"]),
    ("train-overwrite", ["train", "--data", D, *TINY, "--augment", "none", "--shortcut", "B",
                         "--out", "r-flags", "--overwrite"]),
    ("train-resume", ["train", "--resume", "r-base", "--epochs", "2"]),
    ("train-config", ["train", "--config", "r-seed1/config.toml", "--seed", "2", "--out", "r-cfg"]),
    ("eval", ["eval", "r-base/last.pt"]),
    ("eval-json", ["eval", "r-base/best_on_test.pt", "--json", "--threads", "1"]),
    ("eval-val", ["eval", "r-val/best.pt", "--split", "val", "--json", "--threads", "1"]),
    ("eval-plain-state-dict", ["eval", "r-base/model.pth", "--model", "resnet20", "--data", D]),
    ("eval-tta-plot", ["eval", "r-fast/last.pt", "--tta", "flip", "--plot", "--out-dir", "plots"]),
    ("eval-other-data", ["eval", "r-base/last.pt", "--data", OTHER, "--allow-other-data"]),
    ("show", ["show", "r-base/last.pt", "--n", "4", "--out", "grid.png"]),
    ("show-val-wrong", ["show", "r-val/best.pt", "--split", "val", "--only-wrong", "--n", "4"]),
    ("predict", ["predict", "r-base/last.pt", PNG]),
    ("predict-pretrained-dir", ["predict", "--pretrained", "resnet20.fast15_jpeg",
                                "../data/images/test/dog", "--topk", "2", "--csv"]),
    ("report", ["report", "r-val"]),
    ("plot", ["plot", "r-base"]),
    ("plot-several-time", ["plot", "r-base", "r-seed1", "--x", "time", "--out", "both.png"]),
    ("compare", ["compare", "r-base", "r-seed1", "r-fast", "r-cfg", "--out-dir", "cmp"]),
    ("compare-csv-baseline", ["compare", "cmp/comparison.csv", "--baseline", "resnet20",
                              "--cost", "macs", "--out-dir", "cmp2"]),
    ("export-torchscript", ["export", "r-base/last.pt", "--format", "torchscript"]),
    ("export-onnx-fold", ["export", "r-val/best.pt", "--out", "val.onnx", "--fold-bn"]),
    ("bad-resume-missing", ["train", "--resume", "no-such-run"]),
    ("bad-out-exists", ["train", "--data", D, *TINY, "--out", "r-base"]),
    ("bad-eval-val-no-split", ["eval", "r-base/last.pt", "--split", "val"]),
    ("bad-eval-val-seed", ["eval", "r-val/best.pt", "--split", "val", "--seed", "5"]),
    ("bad-eval-other-data", ["eval", "r-base/last.pt", "--data", OTHER]),
    ("bad-eval-empty-file", ["eval", "empty.pt", "--data", D]),
    ("bad-eval-text-file", ["eval", "notes.txt", "--data", D]),
    ("bad-eval-png", ["eval", PNG, "--data", D]),
    ("bad-predict-missing", ["predict", "r-base/last.pt", "missing.png", PNG]),
    ("bad-export-suffix", ["export", "r-base/last.pt", "--format", "onnx", "--out", "x.pt"]),
    ("bad-compare-twice", ["compare", "r-base", "r-base"]),
]
MISC = [
    ("version", ["--version"]),
    ("help", ["--help"]),
    ("help-train", ["train", "--help"]),
    ("models", ["models"]),
    ("weights", ["weights"]),
    ("weights-json-model", ["weights", "--json", "--model", "resnet20_convrnn"]),
    ("data", ["data", "--data", D]),
    ("data-pickles-json", ["data", "--data", "../data/cifar-10-batches-py", "--json"]),
    ("train-convrnn", ["train", "--model", "resnet20_convrnn", "--data", D, *TINY,
                       "--train-subset", "10", "--out", "r-rnn"]),
    ("train-regnet", ["train", "--model", "regnet20_convrnn", "--data", D, *TINY,
                      "--train-subset", "10", "--out", "r-regnet"]),
    ("predict-topk-json", ["predict", "r-rnn/last.pt", PNG, "--topk", "3", "--json"]),
    ("export-recurrent", ["export", "r-regnet/last.pt", "--out", "regnet.pt"]),
    ("bad-unknown-command", ["frobnicate"]),
    ("bad-data-missing", ["train", "--data", "../data/nowhere", *TINY]),
    ("bad-data-empty", ["train", "--data", "", *TINY]),
    ("bad-data-empty-dir", ["data", "--data", "../data/empty"]),
    ("bad-lr", ["train", "--data", D, *TINY, "--lr", "nan"]),
    ("bad-model", ["train", "--data", D, *TINY, "--model", "resnet21"]),
    ("bad-tag", ["eval", "--pretrained", "resnet20.nosuch", "--data", D]),
    ("bad-pretrained-data", ["eval", "--pretrained", "resnet20.fast15_jpeg", "--data", D]),
    ("bad-val-split", ["train", "--data", D, *TINY, "--val-split", "-3"]),
    ("bad-recipe", ["train", "--recipe", "nosuch", "--data", D, *TINY]),
    ("bad-epochs", ["train", "--data", D, "--epochs", "0", "--batch-size", "8"]),
    ("bad-out-empty", ["train", "--data", D, *TINY, "--out", ""]),
    ("bad-batch-too-large", ["train", "--data", D, "--epochs", "1", "--batch-size", "64"]),
    ("bad-config-key", ["train", "--config", "../data/bad.toml", "--data", D, *TINY]),
]
LANES = {"runs": RUNS, "misc": MISC}

RULES = [  # (pattern, replacement) applied to every text, after the work path
    (r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d+)?", "<DATE>"),
    (r"\d{8}-\d{6}", "<DATE>"),
    (r"\d+(\.\d+)?(e[+-]?\d+)?( ?)(img/s|images/s|s/epoch|ms|s|sec|seconds|min|minutes|h)\b",
     r"<T>\3\4"),
    (r"(?m)^(seconds +)\S+", r"\1<T>"),  # `data`
    (r"  +<T>", "  <T>"),  # column padding before a masked number
    (r"(others keep )[\d.]+", r"\1<N>"),  # --threads 0: the load of other processes
    (r"\b(pid|PID) \d+", r"\1 <N>"),
]
# JSON keys, CSV and Markdown table columns whose values are timings, speeds or versions.
VOLATILE_KEY = re.compile(r"(^|_)(time|times|seconds|sec|secs|minutes|elapsed|date|started|"
                          r"finished|timestamp|hostname|host|pid|torch|python|numpy|platform|"
                          r"package_version)(_|$)|per_s(ec|econd)?$", re.I)
VOLATILE_COLUMN = re.compile(r"s/epoch|img/s|\bmin\b|minutes|time|seconds")
PATHS: dict[str, str] = {}  # the temporary folder -> <WORK>, the --src folder -> <SRC>
JSON_ITEM = re.compile(r'"([^"\\]+)": ("[^"]*"|-?\d[\d.eE+-]*)')


def mask_tables(text: str) -> str:
    """Markdown tables: in a volatile column, each number but an epoch before '(min)' -> <T>."""
    lines, columns = text.split("\n"), set()
    for i, line in enumerate(lines):
        if not line.startswith("|") or line.startswith("|-"):
            continue
        cells = line.split("|")
        if i + 1 < len(lines) and lines[i + 1].startswith("|-"):
            columns = {j for j, cell in enumerate(cells) if VOLATILE_COLUMN.search(cell)}
        else:
            lines[i] = "|".join(re.sub(r"\d+(\.\d+)?(?![\d.]| \()", "<T>", c) if j in columns else c
                                for j, c in enumerate(cells))
    return "\n".join(lines)


def normalize(text: str) -> str:
    def item(m):  # a checkpoint's tensors, summarized as a string, stay
        volatile = VOLATILE_KEY.search(m[1]) and "sha256:" not in m[2]
        return f'"{m[1]}": "<MASKED>"' if volatile else m[0]
    for path, name in PATHS.items():
        text = text.replace(path, name)
    text = JSON_ITEM.sub(item, mask_tables(text))
    for pattern, repl in RULES:
        text = re.sub(pattern, repl, text)
    return text


def mask_csv(text: str) -> str:
    rows = list(csv.reader(io.StringIO(text)))
    masked = {j for j, name in enumerate(rows[0] if rows else []) if VOLATILE_KEY.search(name)}
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(
        rows[:1] + [["<MASKED>" if j in masked and c else c for j, c in enumerate(row)]
                    for row in rows[1:]])
    return out.getvalue()


def children(o) -> list:
    """(key, value) pairs of a dict (in key order) or a list."""
    if isinstance(o, dict):
        return sorted(o.items(), key=lambda kv: str(kv[0]))
    return list(enumerate(o))


def is_tensors(o, torch) -> bool:
    if isinstance(o, dict | list | tuple):
        return bool(o) and all(is_tensors(v, torch) for _, v in children(o))
    return isinstance(o, torch.Tensor)


def summarize(o, torch):
    """A loaded checkpoint as JSON data: each all-tensor subtree (a state dict, an optimizer's
    state) becomes 'N tensors sha256:...' over its key paths, dtypes, shapes and bytes, in key
    order; a long list of numbers a hash."""
    if is_tensors(o, torch):
        h, n = hashlib.sha256(), 0
        def walk(v, path):
            nonlocal n
            if isinstance(v, torch.Tensor):
                t = v.detach().cpu().contiguous()
                h.update(f"{path} {t.dtype} {tuple(t.shape)}".encode())
                h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
                n += 1
            else:
                for k, child in children(v):
                    walk(child, f"{path}/{k}")
        walk(o, "")
        return f"{n} tensor{'s' * (n != 1)} sha256:{h.hexdigest()[:16]}"
    if isinstance(o, dict):
        return {str(k): summarize(v, torch) for k, v in children(o)}
    if isinstance(o, list | tuple):
        if len(o) > 20 and all(isinstance(v, int | float) for v in o):
            return f"{len(o)} numbers sha256:{sha(repr(list(o)).encode())}"
        return [summarize(v, torch) for v in o]
    return o


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def size_class(n: int) -> str:
    return "empty" if n == 0 else f"< {10 ** len(str(n))} bytes"


def describe(path: Path) -> object:
    """What a written file holds, normalized."""
    suffix, size = path.suffix.lower(), path.stat().st_size
    if path.name == ".lock":
        return "run lock (holds a pid)"
    if suffix in (".pt", ".pth") and size:
        import torch
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                loaded = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:
            try:
                loaded = {"torchscript": torch.jit.load(path, map_location="cpu").state_dict()}
            except Exception as e:
                return f"unloadable ({type(e).__name__}), {size_class(size)}"
        return json.loads(normalize(json.dumps(summarize(loaded, torch), default=repr)))
    if suffix == ".onnx" and size:
        try:
            import onnx
            from onnx import numpy_helper
        except ImportError:
            return f"onnx, {size_class(size)}"
        h = hashlib.sha256()
        inits = sorted(onnx.load(path).graph.initializer, key=lambda t: t.name)
        for t in inits:
            h.update(t.name.encode() + numpy_helper.to_array(t).tobytes())
        return f"onnx, {len(inits)} initializers sha256:{h.hexdigest()[:16]}"
    if suffix in TEXT:
        text = path.read_text(errors="replace")
        return normalize(mask_csv(text) if suffix == ".csv" else text)
    return f"{suffix or 'no suffix'}, {size_class(size)}"


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.stat().st_size)
            for p in folder.rglob("*") if p.is_file()}


def make_data(root: Path) -> None:
    """Two image folders (images, other), a python-pickle CIFAR-10, an empty folder, bad files."""
    import pickle

    import numpy as np
    from PIL import Image
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
               "truck"]
    for name, seed in (("images", 0), ("other", 1)):
        rng = np.random.default_rng(seed)
        colours = rng.integers(0, 256, (10, 3))
        for split, per_class in (("train", 4), ("test", 2)):
            for c, cls in enumerate(classes):
                (root / name / split / cls).mkdir(parents=True)
                for i in range(per_class):
                    noise = rng.integers(-30, 31, (32, 32, 3))
                    pixels = np.clip(colours[c] + noise, 0, 255).astype(np.uint8)
                    Image.fromarray(pixels).save(root / name / split / cls / f"{i:04d}.png")
    pickles = root / "cifar-10-batches-py"
    pickles.mkdir()
    rng = np.random.default_rng(2)
    for i, name in enumerate(["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4",
                              "data_batch_5", "test_batch"]):
        labels = [(i + j) % 10 for j in range(10)]
        batch = {"labels": labels, "data": rng.integers(0, 256, (10, 3072), dtype=np.uint8)}
        (pickles / name).write_bytes(pickle.dumps(batch))
    (pickles / "batches.meta").write_bytes(pickle.dumps({"label_names": classes}))
    (root / "empty").mkdir()
    (root / "bad.toml").write_text('epochs = 1\nlearning_rate = 0.1\n')


def run_lane(name, commands, args, work: Path, env) -> dict:
    cwd = work / name
    cwd.mkdir()
    (cwd / "empty.pt").touch()
    (cwd / "notes.txt").write_text("not a checkpoint\n")
    env = {**env, "HOME": str(work / f"home-{name}"), "RESNET_CIFAR_CACHE": str(cwd / ".cache"),
           "MPLCONFIGDIR": str(work / f"mpl-{name}")}
    results = {}
    for cmd_name, argv in commands:
        before = snapshot(cwd)
        start = time.monotonic()
        try:
            proc = subprocess.run([args.python, "-m", "resnet_cifar", *argv], cwd=cwd, env=env,
                                  capture_output=True, text=True, timeout=args.timeout)
            code, out, err = proc.returncode, proc.stdout, proc.stderr
        except subprocess.TimeoutExpired as e:
            code, out, err = "timeout", str(e.stdout or ""), str(e.stderr or "")
        after = snapshot(cwd)
        changed = [p for p in sorted(after) if before.get(p) != after[p]]
        files = {p: describe(cwd / p) for p in changed}
        files.update({p: "deleted" for p in before if p not in after})
        results[cmd_name] = {"argv": argv, "exit": code, "stdout": normalize(out),
                             "stderr": normalize(err), "files": files}
        print(f"{time.monotonic() - start:6.1f}s  {code!s:>7}  {name}/{cmd_name}", flush=True)
    return results


def record(args) -> int:
    started = time.monotonic()
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    src = str(Path(args.src).resolve())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RESNET_CIFAR_", "PYTHON"))}
    env.update(PYTHONPATH=src, OMP_NUM_THREADS="1", COLUMNS="80", PYTHONHASHSEED="0",
               TZ="UTC", LC_ALL="C.UTF-8")
    with tempfile.TemporaryDirectory(prefix="cli-compare-") as tmp:
        work = Path(tmp).resolve()
        where = "import resnet_cifar; print(resnet_cifar.__file__)"
        imported = subprocess.run([args.python, "-c", where], cwd=work, env=env,
                                  capture_output=True, text=True, check=True)
        if not imported.stdout.strip().startswith(src + os.sep):
            sys.exit(f"PYTHONPATH={src} imports {imported.stdout.strip()} instead")
        print(f"resnet_cifar: {imported.stdout.strip()}; work folder {work}", flush=True)
        PATHS.update({str(work): "<WORK>", src: "<SRC>"})
        make_data(work / "data")
        with ThreadPoolExecutor(len(LANES)) as pool:
            futures = [pool.submit(run_lane, n, cmds, args, work, env) for n, cmds in LANES.items()]
            commands = {k: v for f in futures for k, v in f.result().items()}
    (out / "record.json").write_text(json.dumps({"src": args.src, "commands": commands},
                                                indent=1, ensure_ascii=False) + "\n")
    bad = sum(k.startswith("bad-") for k in commands)
    print(f"{len(commands)} commands ({len(commands) - bad} good, {bad} bad inputs) in "
          f"{time.monotonic() - started:.0f} s -> {out / 'record.json'}")
    return 0


def parts(entry: dict) -> dict[str, str]:
    """A command's recording as texts: its exit code, stdout, stderr and each file it wrote."""
    out = {"exit code": str(entry["exit"]), "stdout": entry["stdout"], "stderr": entry["stderr"]}
    for path, desc in entry["files"].items():
        out[f"file {path}"] = desc if isinstance(desc, str) else json.dumps(desc, indent=1)
    return out


def diff(args) -> int:
    old, new = (json.loads((Path(d) / "record.json").read_text())["commands"]
                for d in (args.a, args.b))
    differ = 0
    for name in list(old) + [n for n in new if n not in old]:
        a, b = old.get(name), new.get(name)
        if a == b:
            continue
        differ += 1
        print(f"=== {name}: resnet-cifar {shlex.join((a or b)['argv'])}")
        if a is None or b is None:
            print("    only in", args.b if a is None else args.a)
            continue
        pa, pb = parts(a), parts(b)
        for part in list(pa) + [p for p in pb if p not in pa]:
            if pa.get(part) != pb.get(part):
                ta, tb = ([f"{line}\n" for line in t.splitlines()] if t is not None
                          else ["(absent)\n"] for t in (pa.get(part), pb.get(part)))
                print("".join(difflib.unified_diff(ta, tb, f"{args.a}: {part}",
                                                   f"{args.b}: {part}", n=2)), end="")
    print(f"{len(set(old) | set(new))} commands, {differ} differ")
    return 1 if differ else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="run every command, write OUT_DIR/record.json")
    rec.add_argument("--src", required=True, help="the src/ folder whose resnet_cifar to run")
    rec.add_argument("--python", default=sys.executable, help="interpreter (default: this one)")
    rec.add_argument("--timeout", type=float, default=300, help="seconds per command")
    rec.add_argument("out_dir")
    dif = sub.add_parser("diff", help="compare two recordings")
    dif.add_argument("a")
    dif.add_argument("b")
    args = parser.parse_args()
    return record(args) if args.command == "record" else diff(args)


if __name__ == "__main__":
    sys.exit(main())
