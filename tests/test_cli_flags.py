"""The library names settings by config key; the CLI's one table (cli/flags.py) spells them as
flags, and every flag a message names exists.

- every flag the table names exists on the parser;
- every backticked setting in a library message is a key the table knows;
- no library message outside cli/ names a --flag, except in a full command line it prints for
  the user to run (one that names resnet-cifar or cli_command());
- the flags of train and the shared data options are generated from the config fields'
  metadata, and CLI output renders keys as the flags it had before.
"""

from __future__ import annotations

import argparse
import ast
import re
import warnings
from pathlib import Path

import pytest

import resnet_cifar
from resnet_cifar import config as config_module
from resnet_cifar.cli import build_parser, main
from resnet_cifar.cli.flags import FLAG_OF, field_flag, flag_of
from resnet_cifar.cli.train_cmd import TRAIN_FLAGS
from resnet_cifar.config import CHOICES, TrainConfig, setting_fields
from resnet_cifar.errors import SETTING, ConfigError, UserError, render_settings

SOURCE = Path(resnet_cifar.__file__).parent
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*[a-z0-9]")


def library_sources() -> dict[str, str]:
    """The library's modules outside cli/ (the CLI is where flags belong): path -> text."""
    return {str(p.relative_to(SOURCE)): p.read_text() for p in sorted(SOURCE.rglob("*.py"))
            if p.relative_to(SOURCE).parts[0] != "cli"}


def messages(text: str) -> list[tuple[str, str]]:
    """(source of the enclosing statement, literal) for every string literal of a module that
    is not a docstring: what the module can say to a user. Comments are not in the tree."""
    tree = ast.parse(text)
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    found = []
    lines = text.splitlines(keepends=True)
    segments: dict[int, str] = {}  # per statement: ast.get_source_segment rescans the whole text

    def segment(statement: ast.AST | None) -> str:
        if statement is None:
            return ""
        if id(statement) not in segments:
            segments[id(statement)] = "".join(
                lines[statement.lineno - 1:statement.end_lineno])
        return segments[id(statement)]

    def visit(node: ast.AST, statement: ast.AST | None) -> None:
        if isinstance(node, ast.stmt):
            statement = node
        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and id(node) not in docstrings:
            found.append((segment(statement), node.value))
        for child in ast.iter_child_nodes(node):
            visit(child, statement)

    visit(tree, None)
    return found


def subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


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


def test_every_flag_of_the_table_exists_on_the_parser():
    known = known_flags()
    missing = {key: flag for key, flag in FLAG_OF.items() if flag not in known}
    assert not missing, missing


# --------------------------------------------------------------------------- library messages


def unknown_settings(sources: dict[str, str]) -> dict[str, list[str]]:
    """Backticked names in library messages that the flag table does not know: file -> names."""
    found: dict[str, list[str]] = {}
    for name, text in sources.items():
        for _, literal in messages(text):
            for key in SETTING.findall(literal):
                if key not in FLAG_OF:
                    found.setdefault(name, []).append(key)
    return found


def flags_outside_commands(sources: dict[str, str]) -> dict[str, list[str]]:
    """--flags in library messages that are not part of a full command line: file -> flags."""
    found: dict[str, list[str]] = {}
    for name, text in sources.items():
        for statement, literal in messages(text):
            if "resnet-cifar" in statement or "cli_command(" in statement:
                continue  # a command line printed for the user to run keeps its flags
            found.setdefault(name, []).extend(FLAG.findall(literal))
    return {name: flags for name, flags in found.items() if flags}


def test_every_setting_a_library_message_names_is_in_the_flag_table():
    assert not unknown_settings(library_sources()), (
        "name these settings in cli/flags.py (key -> flag) or spell them without backticks"
    )


def test_no_library_message_names_a_flag_outside_a_command_line():
    assert not flags_outside_commands(library_sources()), (
        "name the setting by its config key in backticks (errors.key), not by its flag"
    )


BROKEN = '''
"""A module docstring may say --lr."""
from resnet_cifar.errors import ConfigError


def check(lr):
    """So may a function's: --lr."""
    if lr <= 0:
        raise ConfigError(f"lr {lr} must be positive; pass {BAD}")
    print(f"rerun: resnet-cifar train --lr {lr / 2}")  # a command line keeps its flags
'''


@pytest.mark.parametrize("bad, check, expected", [
    ("`learning_rate`", unknown_settings, ["learning_rate"]),
    ("--lr 0.1", flags_outside_commands, ["--lr"]),
], ids=["unknown-key", "flag-in-message"])
def test_each_message_check_fails_on_a_broken_message(bad, check, expected):
    assert check({"fine.py": BROKEN.replace("{BAD}", "`lr`")}) == {}
    assert check({"broken.py": BROKEN.replace("{BAD}", bad)}) == {"broken.py": expected}


# --------------------------------------------------------------------------- one home per setting


def test_train_flags_are_the_config_fields_with_a_flag():
    fields = [k for k, f in setting_fields().items() if "." not in k and f.metadata["flag"]]
    assert list(TRAIN_FLAGS) == fields
    assert "model_kwargs" not in TRAIN_FLAGS and "data" not in TRAIN_FLAGS


def test_every_flag_of_train_and_data_matches_its_fields_metadata():
    parsers = subparsers()
    for command in ("train", "eval", "show", "data"):
        actions = {o: a for a in parsers[command]._actions for o in a.option_strings}
        for key, f in setting_fields().items():
            flag = field_flag(key, f)
            if flag is None or (command != "train" and f.metadata["train_only"]):
                continue
            if command != "train" and "." not in key:
                continue  # eval, show and data take the data options only
            action = actions[flag]
            assert action.default is argparse.SUPPRESS, (command, flag)
            assert action.help == render_settings(f.metadata["help"], flag_of), (command, flag)
            if f.metadata["choices"]:
                assert tuple(action.choices) == f.metadata["choices"] == CHOICES[key]


def test_choices_and_defaults_have_one_home():
    assert CHOICES["amp"] == config_module.AMP_MODES
    assert CHOICES["data.normalize"] == config_module.NORMALIZE_MODES
    assert CHOICES["schedule"] == config_module.SCHEDULES
    assert TrainConfig().eval_batch_size == config_module.EVAL_BATCH_SIZE


# --------------------------------------------------------------------------- rendering


def test_a_library_error_names_keys_and_the_cli_names_flags(capsys):
    with pytest.raises(ConfigError) as err:
        config_module.check_run_name("a/b")
    assert "(`out` DIR)" in str(err.value)  # a library user reads the key
    assert main(["train", "--name", "a/b"]) == 2
    assert "use out (--out DIR) instead" in capsys.readouterr().err
    assert "(`out` DIR)" in str(err.value)  # the CLI's naming ends with the command


def test_a_warning_during_a_command_names_the_flag(monkeypatch):
    from resnet_cifar.cli import warnings_name_flags
    from resnet_cifar.errors import settings_named_by

    seen = []
    monkeypatch.setattr(warnings, "showwarning", lambda message, *args: seen.append(message))
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        with settings_named_by(flag_of), warnings_name_flags():
            warnings.warn("`data.val_split` is large", RuntimeWarning, stacklevel=1)
        warnings.warn("`data.val_split` is large", RuntimeWarning, stacklevel=1)
    assert [(type(m), str(m)) for m in seen] == [
        (RuntimeWarning, "--val-split is large"),  # during a command
        (RuntimeWarning, "`data.val_split` is large"),  # after it
    ]


def test_render_keeps_text_that_is_not_a_known_setting():
    text = "see `resnet-cifar models`, `no_such_key` and `lr`"
    assert render_settings(text, flag_of) == "see `resnet-cifar models`, `no_such_key` and --lr"
    assert render_settings(text) == text  # nothing installed: keys as written


def test_user_errors_render_only_while_a_command_runs():
    err = UserError("pass `data.val_split`")
    assert str(err) == "pass `data.val_split`"
