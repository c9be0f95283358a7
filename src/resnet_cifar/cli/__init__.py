"""`resnet-cifar`: one subcommand per module in this package; each parses, then calls the library.

A UserError becomes one line on stderr and exit code 2, a library warning one line ``warning:
...``; an interrupted training run exits 130 (SIGINT) or 143 (SIGTERM) after saving.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import warnings
from collections.abc import Iterator

from resnet_cifar.cli import (
    bench_cmd,
    data_cmd,
    eval_cmd,
    models_cmd,
    predict_cmd,
    train_cmd,
    viz_cmd,
    weights_cmd,
)
from resnet_cifar.engine import runtime
from resnet_cifar.errors import UserError

# modules that each define add_parser(subparsers), in the order of `--help`
COMMANDS = [models_cmd, weights_cmd, data_cmd, train_cmd, eval_cmd, viz_cmd, predict_cmd,
            bench_cmd]


class SubcommandParser(argparse.ArgumentParser):
    """A subcommand's parser whose errors are one line naming the subcommand: not the whole usage
    first, nor leftovers handed to the top-level parser, whose usage says nothing of its flags."""

    intermixed = False  # True: positionals may come among the options (predict's images)
    _in_pass = False  # inside a pass of the intermixed parse, whose leftovers are expected

    def parse_known_args(self, args=None, namespace=None):
        if self._in_pass:
            return super().parse_known_args(args, namespace)
        if self.intermixed:
            self._in_pass = True
            try:
                namespace, extras = self.parse_known_intermixed_args(args, namespace)
            finally:
                self._in_pass = False
        else:
            namespace, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")  # exits 2
        return namespace, extras

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from resnet_cifar.version import __version__

    parser = argparse.ArgumentParser(
        prog="resnet-cifar",
        description="Train, evaluate and inspect ResNet-20 and its recurrent variants on CIFAR.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                parser_class=SubcommandParser)
    for module in COMMANDS:
        module.add_parser(sub)
    return parser


@contextlib.contextmanager
def one_line_warnings() -> Iterator[None]:
    """The library's own warnings as one line each, ``warning: ...``; others as Python does."""
    show = warnings.showwarning

    def show_one_line(message, category, filename, lineno, file=None, line=None):
        if "resnet_cifar" in str(filename):
            print(f"warning: {message}", file=file or sys.stderr)
            return
        show(message, category, filename, lineno, file, line)

    warnings.showwarning = show_one_line
    try:
        yield
    finally:
        warnings.showwarning = show


def main(argv: list[str] | None = None) -> int:
    with one_line_warnings():
        status = run_command(argv)
    if runtime.in_torchrun_job():
        runtime.leave_rank(status)  # all done: skip an exit that can abort natively
    return status


def run_command(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `resnet-cifar eval ... | head`: the reader left, nothing is wrong
        sys.stderr.close()
        return 0
