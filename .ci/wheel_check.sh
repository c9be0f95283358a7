#!/usr/bin/env bash
# The package as a user gets it: build the sdist and the wheel (the wheel is built FROM the sdist,
# so a file the sdist lacks shows here), check their metadata, install the wheel into a fresh venv
# and use it from a folder outside the repository, where src/ cannot be imported by accident.
#
#   make wheel-check            (or: bash .ci/wheel_check.sh)
#
# PY: the repository's venv (build, twine, and the reference computed from src/); TORCH: what the
# fresh venv installs first; DIST: where the sdist and the wheel are written (dist/, gitignored).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PY:-$repo/.venv/bin/python}"
TORCH="${TORCH:-torch==2.13.0}"
DIST="${DIST:-$repo/dist}"
start=$(date +%s)
work="$(mktemp -d "${TMPDIR:-/tmp}/resnet-cifar-wheel-check.XXXXXX")"
trap 'rm -rf "$work"' EXIT
step() { printf '\n== %s (%d s)\n' "$*" $(( $(date +%s) - start )); }
fail() { echo "wheel check FAILED: $*" >&2; exit 1; }
unset PYTHONPATH

step "build the sdist and the wheel into $DIST"
mkdir -p "$DIST"
rm -f "$DIST"/resnet_cifar-*.tar.gz "$DIST"/resnet_cifar-*.whl
"$PY" -m build --outdir "$DIST" "$repo" >"$work/build.log" 2>&1 || { tail -n 40 "$work/build.log"; fail "python -m build"; }
if grep -iE "deprecat|SetuptoolsWarning" "$work/build.log"; then fail "the build warns (above)"; fi
sdist=$(ls "$DIST"/resnet_cifar-*.tar.gz)
wheel=$(ls "$DIST"/resnet_cifar-*.whl)
ls -l "$sdist" "$wheel"

step "twine check --strict"
"$PY" -m twine check --strict "$sdist" "$wheel"

step "the wheel holds the recipes, the registry, every weight file it names, and LICENSE"
"$PY" - "$wheel" "$sdist" <<'EOF'
import json, sys, tarfile, zipfile
wheel, sdist = sys.argv[1:]
names = set(zipfile.ZipFile(wheel).namelist())
registry = json.loads(zipfile.ZipFile(wheel).read("resnet_cifar/weights/registry.json"))
need = {f"resnet_cifar/weights/{meta['file']}" for meta in registry.values()}
need |= {f"resnet_cifar/configs/{n}.toml" for n in ("original", "fast")}
need |= {n for n in names if n.endswith(".dist-info/licenses/LICENSE")} or {"<dist-info>/LICENSE"}
missing = sorted(need - names)
assert not missing, f"missing from the wheel: {missing}"
members = tarfile.open(sdist).getnames()
for end in ("/README.md", "/LICENSE", "/pyproject.toml"):
    assert any(m.endswith(end) and m.count("/") == 1 for m in members), f"sdist lacks {end[1:]}"
print(f"ok: {len(registry)} weights, {len(names)} files in the wheel")
EOF

step "a fresh venv: $TORCH first, then the wheel"
"$PY" -m venv "$work/venv"
VPY="$work/venv/bin/python"
"$VPY" -m pip install --quiet "$TORCH"
"$VPY" -m pip install --quiet "$wheel"
"$VPY" -m pip check

mkdir "$work/outside"
cd "$work/outside"  # not the repository: only the installed package can be imported

step "resnet_cifar is imported from the fresh venv's site-packages"
"$VPY" - <<'EOF'
import sysconfig
from pathlib import Path
import resnet_cifar
where = Path(resnet_cifar.__file__).resolve()
site = Path(sysconfig.get_paths()["purelib"]).resolve()
print(where)
assert where.is_relative_to(site), f"{where} is not under {site}"
EOF

step "resnet-cifar --version"
"$work/venv/bin/resnet-cifar" --version

step "resnet-cifar weights"
"$work/venv/bin/resnet-cifar" weights

# Every published weight's logits on one fixed input, by the installed package and by src/
# through the repository's venv: the same torch, one thread, so they must agree bitwise.
cat >"$work/logits.py" <<'EOF'
import sys
from pathlib import Path
import torch
import resnet_cifar
from resnet_cifar import create_model, list_weights
torch.set_num_threads(1)
print("resnet_cifar from", Path(resnet_cifar.__file__).resolve())
x = torch.linspace(0, 1, 3 * 32 * 32).reshape(1, 3, 32, 32)
out = {}
with torch.no_grad():
    out["resnet20"] = create_model("resnet20", pretrained=True).eval()(x)
    for entry in list_weights():
        out[entry.tag] = create_model(entry.model, pretrained=entry.tag).eval()(x)
torch.save(out, sys.argv[1])
print("resnet20 (pretrained=True) logits:", out["resnet20"][0].tolist())
EOF

step "reference: the same computation from the source tree (PYTHONPATH=src, $PY)"
(cd "$repo" && PYTHONPATH="$repo/src" "$PY" "$work/logits.py" "$work/ref.pt") | tee "$work/ref.log"
grep -q "resnet_cifar from $repo/src/" "$work/ref.log" || fail "the reference did not import $repo/src"

step "the installed wheel: create_model(..., pretrained=...) in eval mode on the fixed input"
"$VPY" "$work/logits.py" "$work/wheel.pt"
"$VPY" - "$work/ref.pt" "$work/wheel.pt" <<'EOF'
import sys
import torch
ref, got = (torch.load(p) for p in sys.argv[1:])
assert ref.keys() == got.keys(), (sorted(ref), sorted(got))
for tag in ref:
    diff = (ref[tag] - got[tag]).abs().max().item()
    same = torch.equal(ref[tag], got[tag])
    print(f"{tag:34s} max |diff| {diff:.1e}  bitwise equal: {same}")
    assert diff <= 1e-6, f"{tag}: the wheel's logits differ from the source's by {diff}"
EOF

step "resnet-cifar weights --save: a safetensors folder with its card, read back the same"
"$work/venv/bin/resnet-cifar" weights --save resnet20.fast15_jpeg "$work/r20"
"$VPY" - "$work/r20" <<'EOF'
import sys
import torch
from resnet_cifar import create_model, load_pretrained
x = torch.linspace(0, 1, 3 * 32 * 32).reshape(1, 3, 32, 32)
with torch.no_grad():
    a = create_model("resnet20.fast15_jpeg", pretrained=True).eval()(x)
    b = load_pretrained(sys.argv[1]).eval()(x)
assert torch.equal(a, b), "the saved folder gives other logits"
print("ok: the folder's logits equal the tag's")
EOF
[ -s "$work/r20/README.md" ] || fail "weights --save wrote no model card"

step "resnet-cifar train --epochs 1 on 40 synthetic 32x32 PNGs (train/<class>/, test/<class>/)"
"$VPY" - "$work/data" <<'EOF'
import sys
from pathlib import Path
import numpy as np
from PIL import Image
root, rng = Path(sys.argv[1]), np.random.default_rng(0)
classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
for split, per_class in (("train", 4), ("test", 2)):
    for c, name in enumerate(classes):
        folder = root / split / name
        folder.mkdir(parents=True)
        colour = np.array([c * 25, 255 - c * 25, (c * 70) % 256])
        for i in range(per_class):
            pixels = np.clip(colour + rng.integers(-30, 31, (32, 32, 3)), 0, 255)
            Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i}.png")
EOF
"$work/venv/bin/resnet-cifar" train --data "$work/data" --epochs 1 --batch-size 8 \
    --out "$work/run" --cache-dir "$work/cache" --threads 2 --no-progress
for f in last.pt model.pth summary.json metrics.csv; do
    [ -s "$work/run/$f" ] || fail "train wrote no $f"
done

step "resnet-cifar eval of that run's checkpoint"
"$work/venv/bin/resnet-cifar" eval "$work/run/last.pt" --cache-dir "$work/cache"

step "remove $work"
cd "$repo"
rm -rf "$work"
trap - EXIT
echo "wheel: $wheel, $(du -k "$wheel" | cut -f1) KiB"
printf 'wheel check passed in %d s\n' $(( $(date +%s) - start ))
