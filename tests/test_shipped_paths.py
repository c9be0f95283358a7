"""Nothing committed names a folder of the machine that produced it: the published registry ships
names and fingerprints, and the configs, docs, experiments and README point at nobody's home.

A machine's folder is a home (/root, /home/NAME, /Users/NAME, C:\\Users\\NAME or any drive path),
its temporary folder (/tmp) or this project's work folder (/work), found where a path starts: not
inside a word or a URL (https://host/home/...), not a relative (../shared) or ~-based path. A
documented example that must name one (a command a reader runs as it is) goes in ALLOWED, with
its reason.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path, PurePosixPath, PureWindowsPath

import pytest

ROOT = Path(__file__).resolve().parents[1]
REGISTRY = "src/resnet_cifar/weights/registry.json"
SCANNED = ["README.md", "docs", "experiments", "src/resnet_cifar/configs", REGISTRY]
MACHINE_PATH = re.compile(r"(?<![\w.~-])(?:/(?:root|home|Users|work|tmp)(?![\w.-])|"
                          r"\b[A-Za-z]:\\)[^\s'\"`()\[\]<>,;]*")
# (file, the path it names) -> why that file may name it
ALLOWED: dict[tuple[str, str], str] = {}


def committed_files() -> list[str]:
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--", *SCANNED], cwd=ROOT, check=True,
                                capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: which files are committed is unknown")
    return [name for name in listed.split("\0") if name]


def test_no_committed_text_names_a_folder_of_a_machine():
    found = []
    for name in committed_files():
        try:
            text = (ROOT / name).read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError):  # a figure; a file deleted, not committed
            continue
        for number, line in enumerate(text.splitlines(), 1):
            found += [f"{name}:{number}: {path}" for path in MACHINE_PATH.findall(line)
                      if (name, path) not in ALLOWED]
    assert not found, "folders of a machine, committed:\n" + "\n".join(found)


def test_the_registry_names_no_absolute_path_at_all():
    """Stricter for the published registry, which is written by a program, not by hand: no word
    of any value is an absolute path, whatever its folder."""

    def words(value):
        if isinstance(value, dict):
            value = list(value.values())
        if isinstance(value, list):
            return [word for item in value for word in words(item)]
        return str(value).split() if isinstance(value, str) else []

    registry = json.loads((ROOT / REGISTRY).read_text())
    absolute = [f"{tag}: {word}" for tag, entry in registry.items() for word in words(entry)
                if PurePosixPath(word).is_absolute() or PureWindowsPath(word).drive]
    assert not absolute, "absolute paths in the registry:\n" + "\n".join(absolute)


@pytest.mark.parametrize("line, flagged", [
    ("--data /work/shared/data/cifar10-jpeg.tar.gz", "/work/shared/data/cifar10-jpeg.tar.gz"),
    ('"out": "/root/runs/seed150/resnet20-s0",', "/root/runs/seed150/resnet20-s0"),
    ("cd /home/ana/resnet-cifar && make", "/home/ana/resnet-cifar"),
    ("(/Users/ana/runs)", "/Users/ana/runs"),
    ("--out /tmp", "/tmp"),
    (r"C:\Users\ana\runs", r"C:\Users\ana\runs"),
    ("../shared/data/cifar10-jpeg.tar.gz", None),  # relative
    ("~/.cache/resnet_cifar", None),  # anyone's home
    ("https://example.org/home/x and /workspace and /tmpfs", None),  # a URL; other folders
    ("#!/usr/bin/env bash", None),
])
def test_the_rule_flags_a_machine_folder_and_nothing_else(line, flagged):
    assert MACHINE_PATH.findall(line) == ([flagged] if flagged else [])
