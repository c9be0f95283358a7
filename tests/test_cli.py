"""The command line itself: what argparse prints when a command line is wrong."""

from __future__ import annotations

import pytest

from resnet_cifar.cli import main


@pytest.mark.parametrize("argv", [
    ["eval", "x.pt", "--bogus"],
    ["train", "--epochs", "1", "--bogus", "3"],
], ids=["eval", "train"])
def test_an_unknown_flag_of_a_subcommand_is_one_line_naming_that_subcommand(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    command = argv[0]
    unknown = " ".join(argv[argv.index("--bogus"):])
    assert err == (f"resnet-cifar {command}: error: unrecognized arguments: {unknown} "
                   f"(see resnet-cifar {command} --help)\n"), err
    assert "COMMAND ..." not in err  # not the top-level usage


@pytest.mark.parametrize("argv, says", [
    (["train", "--epochs", "-1"], "argument --epochs: expected a number >= 1, got -1"),
    (["export", "x.pt", "--format", "foo"], "argument --format: invalid choice: 'foo'"),
])
def test_a_bad_flag_value_is_one_line_without_the_usage(argv, says, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and len(err.splitlines()) == 1 and says in err, err


def test_the_models_table_rounds_the_exact_mac_count_once(capsys):
    """resnet56 has 125,747,840 MACs: 125.7 MMACs, not 125.8 (125.75 rounded again)."""
    from resnet_cifar.models import model_complexity

    assert main(["models"]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[1:]}
    for name in ("resnet20", "resnet56", "resnet110"):
        params, macs = model_complexity(name)
        assert rows[name][1] == f"{params:,}" and rows[name][2] == f"{macs / 1e6:.1f}", rows[name]
    assert rows["resnet56"][2] == "125.7"
