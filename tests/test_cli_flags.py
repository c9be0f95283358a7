"""A message names a setting as "`key` (--flag)", from config.FLAG_OF, the one table the CLI's
parser is built from: a library user reads the key, a command-line user the flag.

- every flag the table names exists on the parser;
- every backticked setting a message names is a setting the config or the table knows, and one
  that has a flag is followed by it, "`lr` (--lr)";
- no library message outside cli/ names a --flag but after its key, or in a full command line
  it prints for the user to run (one that names resnet-cifar or cli_command());
- the flags of train and the shared data options are generated from the config fields'
  metadata.
"""

from __future__ import annotations

import argparse
import ast
import re
from pathlib import Path

import pytest

import resnet_cifar
from resnet_cifar import config as config_module
from resnet_cifar.cli import build_parser, main
from resnet_cifar.cli.train_cmd import TRAIN_FLAGS
from resnet_cifar.config import CHOICES, FLAG_OF, TrainConfig, field_flag, key, setting_fields
from resnet_cifar.errors import ConfigError

SOURCE = Path(resnet_cifar.__file__).parent
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*[a-z0-9]")
# A backticked config key or parameter name: `lr`, `data.val_split`, `model_kwargs.shortcut`.
SETTING = re.compile(r"`([a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)*)`")
# A setting named by key and flag: `lr` (--lr).
NAMED = re.compile(SETTING.pattern + r" \((--[a-z][a-z0-9-]*)\)")
# Backticked keys that are values, not messages: where eval's JSON says the normalization came
# from (engine/inference.py's normalization_source).
VALUES = {"`data.normalize`"}


def package_sources(cli: bool = True) -> dict[str, str]:
    """The package's modules, without cli/ (where flags belong) if not ``cli``: path -> text."""
    return {str(p.relative_to(SOURCE)): p.read_text() for p in sorted(SOURCE.rglob("*.py"))
            if cli or p.relative_to(SOURCE).parts[0] != "cli"}


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
    missing = {setting: flag for setting, flag in FLAG_OF.items() if flag not in known}
    assert not missing, missing


# --------------------------------------------------------------------------- library messages


def unknown_settings(sources: dict[str, str]) -> dict[str, list[str]]:
    """Backticked names in messages that are no setting of the config or the table: file ->
    names."""
    known = set(setting_fields()) | set(FLAG_OF)
    found: dict[str, list[str]] = {}
    for name, text in sources.items():
        for _, literal in messages(text):
            for setting in SETTING.findall(literal):
                if setting not in known:
                    found.setdefault(name, []).append(setting)
    return found


def settings_without_their_flag(sources: dict[str, str]) -> dict[str, list[str]]:
    """Settings that have a flag but are named without it, or with another: file -> names."""
    found: dict[str, list[str]] = {}
    for name, text in sources.items():
        for _, literal in messages(text):
            if literal in VALUES:
                continue
            wrong = [f"`{s}` ({flag})" for s, flag in NAMED.findall(literal)
                     if FLAG_OF.get(s) != flag]
            bare = [f"`{s}`" for s in SETTING.findall(NAMED.sub("", literal)) if s in FLAG_OF]
            found.setdefault(name, []).extend(wrong + bare)
    return {name: names for name, names in found.items() if names}


def flags_outside_commands(sources: dict[str, str]) -> dict[str, list[str]]:
    """--flags in library messages that neither follow their key nor are part of a full command
    line: file -> flags."""
    found: dict[str, list[str]] = {}
    for name, text in sources.items():
        for statement, literal in messages(text):
            if "resnet-cifar" in statement or "cli_command(" in statement:
                continue  # a command line printed for the user to run keeps its flags
            if FLAG.fullmatch(literal):
                continue  # a flag alone is a name (config.FLAG_OF's), not a message
            found.setdefault(name, []).extend(FLAG.findall(NAMED.sub("", literal)))
    return {name: flags for name, flags in found.items() if flags}


def test_every_setting_a_message_names_is_known():
    assert not unknown_settings(package_sources()), (
        "name these settings in config.py (a field, or PARAMETER_FLAGS) or spell them without "
        "backticks"
    )


def test_every_setting_a_message_names_is_followed_by_its_flag():
    assert not settings_without_their_flag(package_sources()), (
        "name a setting with a flag as `key` (--flag), as config.key writes it"
    )


def test_no_library_message_names_a_flag_but_after_its_key():
    assert not flags_outside_commands(package_sources(cli=False)), (
        "name the setting as `key` (--flag) (config.key), not by its flag alone"
    )


BROKEN = '''
"""A module docstring may say --lr."""
from resnet_cifar.errors import ConfigError


def check(lr):
    """So may a function's: --lr."""
    if lr <= 0:
        raise ConfigError(f"lr {lr} must be positive; pass {BAD} or leave `data.fingerprint`")
    print(f"rerun: resnet-cifar train --lr {lr / 2}")  # a command line keeps its flags
'''


@pytest.mark.parametrize("bad, check, expected", [
    ("`learning_rate`", unknown_settings, ["learning_rate"]),
    ("`lr`", settings_without_their_flag, ["`lr`"]),
    ("`lr` (--momentum)", settings_without_their_flag, ["`lr` (--momentum)"]),
    ("--lr 0.1", flags_outside_commands, ["--lr"]),
], ids=["unknown-key", "key-without-flag", "key-with-another-flag", "flag-without-key"])
def test_each_message_check_fails_on_a_broken_message(bad, check, expected):
    assert check({"fine.py": BROKEN.replace("{BAD}", "`lr` (--lr)")}) == {}
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
        for setting, f in setting_fields().items():
            flag = field_flag(f)
            if flag is None or (command != "train" and f.metadata["train_only"]):
                continue
            if command != "train" and "." not in setting:
                continue  # eval, show and data take the data options only
            action = actions[flag]
            assert action.default is argparse.SUPPRESS, (command, flag)
            assert action.help == f.metadata["help"].replace("%", "%%"), (command, flag)
            if f.metadata["choices"]:
                assert tuple(action.choices) == f.metadata["choices"] == CHOICES[setting]


def test_choices_and_defaults_have_one_home():
    assert CHOICES["amp"] == config_module.AMP_MODES
    assert CHOICES["data.normalize"] == config_module.NORMALIZE_MODES
    assert CHOICES["schedule"] == config_module.SCHEDULES
    assert TrainConfig().eval_batch_size == config_module.EVAL_BATCH_SIZE


# --------------------------------------------------------------------------- one message


def test_a_message_names_the_key_and_the_flag(capsys):
    assert (key("lr"), key("data.path")) == ("`lr` (--lr)", "`data.path` (--data)")
    assert key("data.fingerprint") == "`data.fingerprint`"  # no flag: the key alone
    with pytest.raises(ConfigError) as err:
        config_module.check_run_name("a/b")
    assert "use `out` (--out) DIR instead" in str(err.value)
    assert main(["train", "--name", "a/b"]) == 2
    assert capsys.readouterr().err == f"error: {err.value}\n"  # the same words from the CLI
