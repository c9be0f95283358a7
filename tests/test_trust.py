"""Facts decided once and checked wherever they are used: a checkpoint's classes against the
data's, which splits exist, what the data is (`--dataset`), which run a checkpoint belongs to, and
numbers that are no numbers (NaN weights). Each test is a case where a wrong figure was once
printed without a word."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from data_fixtures import (
    make_cifar10_python_dir,
    make_cifar100_python_dir,
    make_image_folder,
)
from refusals import assert_refused, run

FAST = ["--epochs", "1", "--batch-size", "16", "--threads", "1", "--eval-batch-size", "64",
        "--no-progress"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("data"), n_train_per_class=2,
                             n_test_per_class=1, seed=0)


@pytest.fixture(scope="module")
def trained(folder, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "r20"
    assert run(["train", "--data", folder, "--out", out, *FAST]) == 0
    return out


def relabelled(folder: Path, dest: Path, how: str) -> Path:
    """A copy of ``folder`` whose class folders are renamed (other names, the same order) or
    renamed so that their sorted order changes (the same names, other labels)."""
    copy = dest / how
    shutil.copytree(folder, copy)
    for split in ("train", "test"):
        if how == "renamed":  # "airplane" -> "airplane2": same positions, another name
            (copy / split / "airplane").rename(copy / split / "airplane2")
        else:  # "airplane" -> "zairplane": sorts last, every other label moves down by one
            (copy / split / "airplane").rename(copy / split / "zairplane")
    return copy


@pytest.mark.parametrize("how", ["renamed", "reordered"])
@pytest.mark.parametrize("command", [
    ["eval", "{ckpt}"],
    ["eval", "{ckpt}", "--json"],
    ["show", "{ckpt}", "--out", "{tmp}/grid.png"],
    ["report", "{run}", "--out", "{tmp}/report.html"],
])
def test_other_class_names_or_order_are_refused_even_where_other_data_is_allowed(
        folder, trained, tmp_path, capsys, how, command):
    other = relabelled(folder, tmp_path, how)
    argv = [str(a).format(ckpt=trained / "last.pt", run=trained, tmp=tmp_path) for a in command]
    argv += ["--data", other, "--allow-other-data"]
    named = "airplane2" if how == "renamed" else "automobile"  # class 0 in the data
    assert_refused(argv, named, tmp_path, capsys)


def test_a_split_that_does_not_exist_is_never_scored(tmp_path, capsys):
    data = make_image_folder(tmp_path, n_train_per_class=4, with_test=False)
    out = tmp_path / "run"
    assert run(["train", "--data", data, "--val-split", "10", "--out", out, *FAST]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["test_acc"] is None
    assert "test accuracy" in printed and "0.00%" not in printed.split("test accuracy")[1][:20]
    assert_refused(["eval", out / "last.pt"], data, tmp_path, capsys)  # no test split to score
    assert run(["eval", out / "last.pt", "--split", "val"]) == 0


def test_evaluating_nothing_is_an_error_not_zero_percent():
    from resnet_cifar.engine.evaluate import evaluate_model
    from resnet_cifar.errors import DataError
    from resnet_cifar.models import create_model

    with pytest.raises(DataError):
        evaluate_model(create_model("resnet20"), [], ["a"] * 10)


@pytest.mark.parametrize("make, flag", [
    (make_cifar100_python_dir, "cifar10"),
    (make_cifar10_python_dir, "cifar100"),
])
def test_dataset_flag_and_the_data_must_agree_both_ways(tmp_path, capsys, make, flag):
    data = make(tmp_path / "data")
    assert_refused(["train", "--data", data, "--dataset", flag, "--out", tmp_path / "run",
                    *FAST], flag, tmp_path, capsys)


def test_without_dataset_flag_the_run_records_what_the_data_is(tmp_path):
    data = make_cifar100_python_dir(tmp_path / "data")
    out = tmp_path / "run"
    assert run(["train", "--data", data, "--out", out, *FAST]) == 0
    assert 'dataset = "cifar100"' in (out / "config.toml").read_text()


def test_resume_refuses_a_last_pt_that_another_run_saved(folder, trained, tmp_path, capsys):
    mine = tmp_path / "mine"
    assert run(["train", "--data", folder, "--out", mine, "--lr", "0.05", *FAST]) == 0
    shutil.copy(trained / "last.pt", mine / "last.pt")
    assert_refused(["train", "--resume", mine, "--epochs", "2"], "lr", tmp_path, capsys)


def test_nan_weights_warn_and_json_stays_strict(trained, tmp_path, capsys):
    state = torch.load(trained / "last.pt", weights_only=True)
    state["model"] = {k: v.fill_(float("nan")) if v.is_floating_point() else v
                      for k, v in state["model"].items()}
    broken = tmp_path / "nan.pt"
    torch.save(state, broken)
    capsys.readouterr()
    assert run(["eval", broken, "--json"]) == 0
    out, err = capsys.readouterr()
    result = json.loads(out, parse_constant=lambda name: pytest.fail(f"bare {name} in JSON"))
    assert result["loss"] is None
    assert "warning:" in err and str(broken) in err


def test_val_split_advice_on_a_run_without_hold_out_leads_somewhere(trained, tmp_path, capsys):
    line = assert_refused(["eval", trained / "last.pt", "--split", "val"], "val", tmp_path, capsys)
    assert "--val-split" not in line.split(":", 1)[1].split(";")[-1]  # never a refused advice
    assert run(["eval", trained / "last.pt", "--split", "test"]) == 0


@pytest.mark.parametrize("argv, named", [
    (["train", "--data", "{data}", "--out", "", *FAST], "''"),  # "" would be the current folder
    (["plot", "{run}", "{run}/", "--out", "{tmp}/c.png"], "{run}"),  # one run drawn twice
    (["plot", "{run}", "{tmp}/link", "--out", "{tmp}/c.png"], "{run}"),  # through a symlink
])
def test_an_empty_or_repeated_path_is_refused(folder, trained, tmp_path, capsys, argv, named):
    (tmp_path / "link").symlink_to(trained)
    fill = {"data": folder, "run": trained, "tmp": tmp_path}
    assert_refused([str(a).format(**fill) for a in argv], named.format(**fill), tmp_path, capsys)


def test_out_on_a_finished_run_advises_what_works(folder, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(["train", "--data", folder, "--out", out, *FAST]) == 0
    line = assert_refused(["train", "--data", folder, "--out", out, *FAST], out, tmp_path, capsys)
    assert "--resume" in line and "--epochs" in line  # resume alone would be refused
    assert run(["train", "--resume", out, "--epochs", "2"]) == 0
