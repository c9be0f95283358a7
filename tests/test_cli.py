"""The command line itself: what argparse prints when a command line is wrong."""

from __future__ import annotations

import pytest

from resnet_cifar.cli import main


@pytest.mark.parametrize("argv", [
    ["eval", "x.pt", "--bogus"],
    ["train", "--epochs", "1", "--bogus", "3"],
], ids=["eval", "train"])
def test_an_unknown_flag_of_a_subcommand_shows_that_subcommands_usage(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    command = argv[0]
    unknown = " ".join(argv[argv.index("--bogus"):])
    assert err.startswith(f"usage: resnet-cifar {command} [-h]"), err
    assert f"resnet-cifar {command}: error: unrecognized arguments: {unknown}" in err
    assert "COMMAND ..." not in err  # not the top-level usage
