"""Every flag a library message tells the user to pass exists on some command."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import resnet_cifar
from resnet_cifar.cli import build_parser

SOURCE = Path(resnet_cifar.__file__).parent
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*[a-z0-9]")


def known_flags() -> set[str]:
    flags: set[str] = set()
    parsers = [build_parser()]
    while parsers:
        parser = parsers.pop()
        for action in parser._actions:
            flags.update(o for o in action.option_strings if o.startswith("--"))
            if isinstance(action, argparse._SubParsersAction):
                parsers.extend(action.choices.values())
    # BooleanOptionalAction's --no-X forms are in option_strings already
    return flags


def test_every_flag_named_in_the_library_exists():
    known = known_flags()
    unknown = {}
    for path in SOURCE.rglob("*.py"):
        for flag in FLAG.findall(path.read_text()):
            if flag not in known:
                unknown.setdefault(flag, []).append(str(path.relative_to(SOURCE)))
    # flags of other programs that comments name: benchmarks/bench_train.py's own
    foreign = {"--levers"}
    unknown = {f: p for f, p in unknown.items() if f not in foreign}
    assert not unknown, unknown
