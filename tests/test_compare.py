"""`resnet-cifar compare` on tiny synthetic run directories and comparison.csv files: a group of
seeds is one recipe (the whole config but the seed and what does not change the computation),
one run per seed (a repeat is set aside), the tables name what differs, and runs given twice,
runs on other data, an ambiguous baseline or an unusable --out-dir are refused."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
from refusals import assert_refused

from resnet_cifar.cli import build_parser, main
from resnet_cifar.compare import compare_runs, markdown_tables
from resnet_cifar.config import DataConfig, TrainConfig
from resnet_cifar.config_files import to_toml
from resnet_cifar.errors import ConfigError
from resnet_cifar.models import model_complexity
from resnet_cifar.seeds import noise_test, repeats
from resnet_cifar.viz.cost import COSTS, cost_figure, cost_points

FP_A = "sha256:" + "a" * 64
FP_B = "sha256:" + "b" * 64


def recipe(*, data: dict | None = None, **fields) -> TrainConfig:
    """A 2-epoch config holding out 100 images, with chosen fields and data fields."""
    return TrainConfig(epochs=2, **fields, data=DataConfig(val_split=100, **(data or {})))


def make_run(path: Path, config: TrainConfig | None, *, test_acc: float,
             **summary: object) -> Path:
    """A finished run directory as training leaves it: config.toml (unless ``config`` is None),
    two epochs of metrics and a summary.json (``summary`` adds or replaces its keys)."""
    path.mkdir(parents=True)
    val_accs = [0.5, test_acc]
    rows = [{"epoch": e, "lr": 0.1, "train_loss": 1.0, "train_acc": 0.5, "val_loss": 1.0,
             "val_acc": v, "epoch_time": 10.0, "img_per_s": 100.0}
            for e, v in enumerate(val_accs, 1)]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if config is not None:
        (path / "config.toml").write_text(to_toml(config))
    model = config.model if config else "resnet20"
    record = {"name": model, "model": model, "model_kwargs": {}, "params": 1000,
              "macs": 2_000_000, "epochs": 2, "seed": config.seed if config else 0,
              "val_is_test": False, "best_val_acc": test_acc, "best_epoch": 2,
              "final_val_acc": test_acc, "test_acc": test_acc, "sec_per_epoch": 10.0,
              "img_per_s": 100.0, **summary}
    (path / "summary.json").write_text(json.dumps(record))
    return path


def two_lrs(root: Path) -> list[Path]:
    """resnet20 at lr 0.1 (seeds 0, 1) and at lr 0.2 (seeds 0, 1)."""
    accs = {0.1: (0.60, 0.62), 0.2: (0.70, 0.74)}
    return [make_run(root / f"lr{lr}-s{seed}", recipe(lr=lr, seed=seed), test_acc=acc)
            for lr, pair in accs.items() for seed, acc in enumerate(pair)]


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def test_runs_with_another_lr_are_not_pooled_as_seeds(tmp_path):
    rows, groups = compare_runs(two_lrs(tmp_path))
    assert [g["runs"] for g in groups] == [["lr0.1-s0", "lr0.1-s1"], ["lr0.2-s0", "lr0.2-s1"]]
    assert [g["test_acc"][0] for g in groups] == pytest.approx([0.61, 0.72])
    assert [g["seeds"] for g in groups] == [[0, 1], [0, 1]]


def test_grouped_table_names_the_setting_that_differs(tmp_path):
    dirs = two_lrs(tmp_path)
    dirs.append(make_run(tmp_path / "flat", recipe(lr=0.1, data={"augment": "none"}),
                         test_acc=0.5))
    table = markdown_tables(*compare_runs(dirs))
    grouped = table.split("## Grouped")[1]
    # the settings in config order: the [data] table comes before lr
    assert "| resnet20 [data.augment=standard, lr=0.1] | 1,000 | 2.0 | 2 | 2 | 0, 1 |" in grouped
    assert "| resnet20 [data.augment=standard, lr=0.2] | 1,000 | 2.0 | 2 | 2 | 0, 1 |" in grouped
    assert "Settings that differ between the runs, in brackets after the model: " \
           "data.augment, lr." in grouped
    runs = table.split("## Grouped")[0]
    assert "| flat | resnet20 [data.augment=none, lr=0.1] |" in runs


def test_seed_out_name_threads_device_and_data_path_differences_are_still_pooled(tmp_path):
    # One recipe under two names, paths, thread counts, devices, save intervals, caches and data
    # paths (the same data by fingerprint), each at two learning rates: two groups of two, told
    # apart by lr only.
    dirs = []
    for lr in (0.1, 0.2):
        for seed, acc in enumerate((0.60, 0.64)):
            config = recipe(lr=lr, seed=seed, out=f"runs/x{seed}", name=f"n{seed}",
                            threads=seed + 1, device=("cpu", "cuda")[seed],
                            tensorboard=bool(seed), save_every=(10.0, 0.5)[seed],
                            data={"path": f"/data/copy{seed}", "cache_dir": f"/cache{seed}",
                                  "fingerprint": FP_A})
            dirs.append(make_run(tmp_path / f"lr{lr}-s{seed}", config, test_acc=acc))
    rows, groups = compare_runs(dirs)
    assert [g["n"] for g in groups] == [2, 2]
    assert [g["label"] for g in groups] == ["resnet20 [lr=0.1]", "resnet20 [lr=0.2]"]


def test_what_compare_writes_names_no_folder_of_the_machine_where_a_fingerprint_names_data(
        tmp_path):
    """comparison.csv and .md are committed beside results: where a fingerprint identifies the
    data, its path is kept as a name only (without a fingerprint the path is the identity, and
    MIXED's "path" case keeps it apart)."""
    data = {"path": str(tmp_path / "shared" / "c10.tar.gz"), "fingerprint": FP_A}
    dirs = [make_run(tmp_path / f"s{seed}", recipe(seed=seed, data=data), test_acc=0.6)
            for seed in (0, 1)]
    out = tmp_path / "out"
    assert main(["compare", *map(str, dirs), "--out-dir", str(out)]) == 0
    for name in ("comparison.csv", "comparison.md"):
        assert str(tmp_path) not in (out / name).read_text(), name
    row = compare_runs([out / "comparison.csv"])[0][0]
    assert row["data"]["source"][0] == "c10.tar.gz"
    assert row["data"]["fingerprint"] == FP_A


def test_runs_without_config_toml_group_by_what_their_summaries_say(tmp_path):
    old = [make_run(tmp_path / f"old{seed}", None, test_acc=0.6, seed=seed) for seed in (0, 1)]
    new = [make_run(tmp_path / f"new{seed}", recipe(seed=seed), test_acc=0.6) for seed in (0, 1)]
    rows, groups = compare_runs(old + new)
    assert [g["runs"] for g in groups] == [["old0", "old1"], ["new0", "new1"]]
    assert [g["label"] for g in groups] == ["resnet20 [no config.toml]", "resnet20"]


MIXED = {  # case: (data of runs a and b, of runs c and d, summary of c and d, what names them)
    "fingerprint": ({"path": "/data/c10", "fingerprint": FP_A},
                    {"path": "/data/c10", "fingerprint": FP_B}, {},
                    ("sha256:aaaaaaaaaaaa", "sha256:bbbbbbbbbbbb")),
    "path": ({"path": "/data/c10"}, {"path": "/data/c100"}, {}, ("/data/c10", "/data/c100")),
    "classes": ({}, {}, {"num_classes": 100}, ("10 classes", "100 classes")),
}


@pytest.mark.parametrize("case", MIXED)
def test_mixed_data_is_refused_and_allowed_with_the_flag(tmp_path, capsys, case):
    data_ab, data_cd, summary_cd, names = MIXED[case]
    dirs = [make_run(tmp_path / f"{run}", recipe(seed=seed, data=data), test_acc=0.6,
                     num_classes=summary.get("num_classes", 10))
            for run, seed, data, summary in (("a", 0, data_ab, {}), ("b", 1, data_ab, {}),
                                             ("c", 0, data_cd, summary_cd),
                                             ("d", 1, data_cd, summary_cd))]
    out = tmp_path / "out"
    assert main(["compare", *map(str, dirs), "--out-dir", str(out)]) == 2
    err = one_line_error(capsys)
    assert "runs a (" in err and " and c (" in err and "--allow-mixed-data" in err
    assert all(name in err for name in names), err
    assert not out.exists()

    assert main(["compare", *map(str, dirs), "--out-dir", str(out), "--allow-mixed-data"]) == 0
    printed = capsys.readouterr().out
    assert "Mixed data, allowed by `allow_mixed_data` (--allow-mixed-data): runs a (" in printed
    grouped = printed.split("## Grouped")[1]
    assert grouped.count("| 2 | 0, 1 |") == 2  # a, b and c, d: never one group of four

    # called as a library, the same words: the config key, and the flag
    with pytest.raises(ConfigError, match=r"pass `allow_mixed_data` \(--allow-mixed-data\) to"):
        compare_runs(dirs)
    assert "Mixed data, allowed by `allow_mixed_data` (--allow-mixed-data): runs a (" in \
        markdown_tables(*compare_runs(dirs, allow_mixed_data=True))


def test_baseline_with_several_recipes_is_refused_and_a_label_picks_one(tmp_path, capsys):
    dirs = two_lrs(tmp_path)
    dirs += [make_run(tmp_path / f"rnn-s{seed}", recipe(model="resnet20_convrnn", seed=seed),
                      test_acc=acc) for seed, acc in enumerate((0.63, 0.65))]
    out = tmp_path / "out"
    assert main(["compare", *map(str, dirs), "--out-dir", str(out), "--baseline",
                 "resnet20"]) == 2
    err = one_line_error(capsys)
    assert "'resnet20 [lr=0.1]'" in err and "'resnet20 [lr=0.2]'" in err
    assert not out.exists()

    assert main(["compare", *map(str, dirs), "--out-dir", str(out), "--baseline",
                 "resnet20 [lr=0.1]"]) == 0
    against = capsys.readouterr().out.split("## Test accuracy against resnet20 [lr=0.1]")[1]
    assert "| resnet20 [lr=0.2] | 2 | +11.00 |" in against
    assert "| resnet20_convrnn [lr=0.1] | 2 | +3.00 |" in against


@pytest.mark.parametrize("where", ["file", "file/sub"])
def test_out_dir_that_is_a_file_is_a_one_line_error_with_nothing_written(tmp_path, capsys,
                                                                        where):
    dirs = two_lrs(tmp_path / "runs")
    (tmp_path / "file").write_text("keep me")
    out = tmp_path / where
    assert main(["compare", *map(str, dirs), "--out-dir", str(out)]) == 2
    err = one_line_error(capsys)
    assert str(out) in err and "is a file, not a folder" in err and "--out-dir" in err, err
    assert (tmp_path / "file").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "runs"]


def write_metrics(path: Path, rows: list[dict]) -> Path:
    path.mkdir(parents=True)
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (path / "config.toml").write_text(to_toml(recipe()))
    return path


def epoch_rows(accs: list[float], seconds: list[float], **extra: list[float]) -> list[dict]:
    return [{"epoch": e, "lr": 0.1, "train_loss": 1.0, "train_acc": 0.5, "val_loss": 1.0,
             "val_acc": acc, "epoch_time": sec, "img_per_s": 100.0,
             **{k: v[e - 1] for k, v in extra.items()}}
            for e, (acc, sec) in enumerate(zip(accs, seconds, strict=True), 1)]


def test_time_to_accuracy_is_the_first_epoch_at_the_target_and_the_minutes_by_its_end(tmp_path):
    """Epoch times of 60, 120 and 30 s: 85% first at epoch 3 (not at the later dip and rise),
    after 3.5 training minutes; a target never reached is None, not the last epoch."""
    run = write_metrics(tmp_path / "r", epoch_rows([0.5, 0.82, 0.86, 0.84, 0.9],
                                                   [60, 120, 30, 60, 60]))
    rows, _ = compare_runs([run], targets=(0.80, 0.85, 0.95))
    row = rows[0]
    assert (row["epoch_to_80"], row["minutes_to_80"]) == (2, 3.0)
    assert (row["epoch_to_85"], row["minutes_to_85"]) == (3, 3.5)
    assert row["epoch_to_95"] is None and row["minutes_to_95"] is None
    assert row["train_minutes"] == 5.5


def test_time_to_accuracy_follows_the_averaged_weights_when_the_run_kept_them(tmp_path):
    """With `ema_decay` the averaged weights are the run's final weights: their accuracy counts."""
    run = write_metrics(tmp_path / "r", epoch_rows([0.86, 0.86], [60, 60],
                                                   ema_val_acc=[0.70, 0.85]))
    rows, _ = compare_runs([run], targets=(0.85,))
    assert rows[0]["epoch_to_85"] == 2


def test_compare_tables_and_csv_give_the_time_to_each_target(tmp_path, capsys):
    runs = [write_metrics(tmp_path / f"s{seed}", epoch_rows(accs, [60, 60, 60]))
            for seed, accs in enumerate(([0.7, 0.81, 0.9], [0.7, 0.75, 0.82]))]
    for seed, run in enumerate(runs):  # two seeds of one recipe
        (run / "config.toml").write_text(to_toml(recipe(seed=seed)))
    assert main(["compare", *map(str, runs), "--out-dir", str(tmp_path / "out"),
                 "--targets", "80,85", "--x", "time"]) == 0
    text = capsys.readouterr().out
    assert "| s0 | resnet20 | 0 | 2 (2.0) | 3 (3.0) | 3 | 3.0 |" in text
    assert "| s1 | resnet20 | 1 | 3 (3.0) | not reached | 3 | 3.0 |" in text
    assert "| resnet20 | 2 | 2.5 ± 0.7, 2.5 ± 0.7 | 3.0 ± 0.0, 3.0 ± 0.0 (n=1) |" in text
    header = (tmp_path / "out" / "comparison.csv").read_text().splitlines()[0]
    assert "train_minutes,epoch_to_80,minutes_to_80,epoch_to_85,minutes_to_85," in header


def test_compare_reports_the_tta_accuracy_of_the_final_weights_beside_the_plain_one(tmp_path,
                                                                                  capsys):
    """The last epoch's TTA figure of the final weights (the average's with `ema_decay`, not
    the raw weights') gets a column of its own; the plain figure stays what it was."""
    averaged = write_metrics(tmp_path / "ema", epoch_rows(
        [0.70, 0.80], [60, 60], ema_val_acc=[0.72, 0.83], val_tta_acc=[0.71, 0.81],
        ema_val_tta_acc=[0.73, 0.845]))
    raw = write_metrics(tmp_path / "raw", epoch_rows([0.70, 0.80], [60, 60],
                                                     val_tta_acc=[0.71, 0.815]))
    rows, _ = compare_runs([averaged, raw])
    assert [r["final_val_tta_acc"] for r in rows] == [0.845, 0.815]
    assert [r["final_val_acc"] for r in rows] == [0.83, 0.80]
    assert main(["compare", str(averaged), str(raw), "--out-dir", str(tmp_path / "out")]) == 0
    text = capsys.readouterr().out
    assert "| final val % | final val % with TTA | test % |" in text
    assert "| 83.00 | 84.50 |" in text and "| 80.00 | 81.50 |" in text
    csv_rows = (tmp_path / "out" / "comparison.csv").read_text().splitlines()
    assert "final_val_acc,final_val_tta_acc,test_acc" in csv_rows[0]


def test_compare_has_no_tta_column_for_runs_validated_without_it(tmp_path, capsys):
    run = write_metrics(tmp_path / "r", epoch_rows([0.7, 0.8], [60, 60]))
    assert main(["compare", str(run), "--out-dir", str(tmp_path / "out")]) == 0
    assert "with TTA" not in capsys.readouterr().out


def test_a_mean_just_below_a_target_is_not_printed_as_reaching_it(tmp_path, capsys):
    """Two seeds at 84.78% and 85.21%: the mean is 84.995%, which rounds to "85.00" and would
    read as a met 85% target; it prints as 84.995. A mean that equals the target stays "85.00",
    and a figure far from every target keeps 2 decimals."""
    pairs = {0.1: (0.8478, 0.8521), 0.2: (0.80, 0.90), 0.3: (0.7012, 0.7013)}
    runs = [make_run(tmp_path / f"{lr}-s{seed}", recipe(lr=lr, seed=seed), test_acc=acc)
            for lr, pair in pairs.items() for seed, acc in enumerate(pair)]
    assert main(["compare", *map(str, runs), "--targets", "80,85",
                 "--out-dir", str(tmp_path / "out")]) == 0
    grouped = capsys.readouterr().out.split("## Grouped")[1].split("##")[0]
    assert "| 84.995 ± 0.30 | 84.995 ± 0.30 |" in grouped
    assert "| 85.00 ± 7.07 | 85.00 ± 7.07 |" in grouped
    assert "| 70.12 ± 0.01 | 70.12 ± 0.01 |" in grouped
    assert "85.00 ± 0.30" not in grouped


@pytest.mark.parametrize("bad", ["0", "80,x", "120", ""])
def test_compare_targets_must_be_percentages(tmp_path, capsys, bad):
    run = write_metrics(tmp_path / "r", epoch_rows([0.5], [60]))
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", str(run), "--targets", bad, "--out-dir", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert "percentages" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# ----------------------------------------------- runs keyed by directory and seed; CSV inputs


def old_csv(path: Path, runs: list[tuple[str, str, int, float, str]]) -> Path:
    """A comparison.csv as compare wrote it before it saved recipes and data (docs/tta/...):
    (run, model, seed, test_acc, macs as written: "" when missing) per run, 2 epochs each."""
    header = ("run,name,model,model_kwargs,params,macs,epochs,seed,val_is_test,best_val_acc,"
              "best_epoch,final_val_acc,final_val_tta_acc,test_acc,sec_per_epoch,img_per_s,"
              "train_minutes,epoch_to_80,minutes_to_80,epoch_to_85,minutes_to_85")
    lines = [f"{run},{model},{model},{{}},,{macs},2,{seed},False,{acc},2,{acc},,{acc},10.0,"
             "100.0,0.3,,,," for run, model, seed, acc, macs in runs]
    path.write_text("\n".join([header, *lines]) + "\n")
    return path


def refusal_case(case: str, root: Path) -> tuple[list, object]:
    """(argv after `compare`, what the refusal must name) for each REFUSED case, under ``root``
    (the current folder)."""
    a = make_run(root / "runs" / "a", recipe(seed=0), test_acc=0.6)
    b = make_run(root / "runs" / "b", recipe(seed=1), test_acc=0.62)
    if case == "a directory twice":
        return [a, b, a], a
    if case == "a directory as ./x and x":
        return ["runs/a", "runs/b", "./runs/a"], "./runs/a"
    if case == "a directory and a symlink to it":
        (root / "link").symlink_to(a)
        return [a, b, root / "link"], root / "link"
    csv_path = old_csv(root / "old.csv", [("x-s0", "resnet20", 0, 0.6, ""),
                                          ("y-s0", "resnet20", 0, 0.7, "")])
    if case == "a comparison.csv twice":
        return [a, csv_path, b, csv_path], csv_path
    if case == "one seed twice, recipe not recorded":  # x-s0 and y-s0: one run, or two recipes?
        return [csv_path], "y-s0"
    if case == "a CSV that is not a comparison":
        (root / "other.csv").write_text("run,model,epochs,seed,test_acc,epoch_to_80,minutes_to_80,"
                                        "epoch_to_85,minutes_to_85\nz,resnet20,2,0,0.6,,,,\n")
        return [a, root / "other.csv"], root / "other.csv"
    if case == "a CSV without the time to a target asked for":
        return [csv_path, "--targets", "90"], csv_path
    if case == "a CSV value compare never writes":
        (root / "bad.csv").write_text(csv_path.read_text().replace(",0.6,2,", ",sixty,2,"))
        return [root / "bad.csv"], root / "bad.csv"
    if case == "a pair naming no model":
        return [a, b, "--baseline", "resnet20,resnet1202=resnet20"], "resnet1202"
    if case == "a baseline that is no pair":
        return [a, b, "--baseline", "a=b=c"], "a=b=c"
    raise AssertionError(case)


REFUSED = ("a directory twice", "a directory as ./x and x", "a directory and a symlink to it",
           "a comparison.csv twice", "one seed twice, recipe not recorded",
           "a CSV that is not a comparison", "a CSV without the time to a target asked for",
           "a CSV value compare never writes", "a pair naming no model",
           "a baseline that is no pair")


@pytest.mark.parametrize("case", REFUSED)
def test_runs_that_would_count_twice_and_bad_inputs_are_refused(tmp_path, monkeypatch, capsys,
                                                                case):
    monkeypatch.chdir(tmp_path)
    argv, named = refusal_case(case, tmp_path)
    assert_refused(["compare", *argv, "--out-dir", "out"], named, tmp_path, capsys)


def three_models(root: Path, accs: dict | None = None) -> list[Path]:
    """resnet20, resnet56 and regnet20_convgru, two seeds each (each pair 2 points apart), each
    recording its params and MACs as training would."""
    accs = accs or {"resnet20": (0.60, 0.62), "resnet56": (0.64, 0.66),
                    "regnet20_convgru": (0.70, 0.72)}
    cost = {"resnet20": (272_474, 40_813_184), "resnet56": (855_770, 125_747_840),
            "regnet20_convgru": (1_180_746, 166_118_016)}
    return [make_run(root / f"{model}-s{seed}", recipe(model=model, seed=seed), test_acc=acc,
                     params=cost[model][0], macs=cost[model][1])
            for model, pair in accs.items() for seed, acc in enumerate(pair)]


def test_a_repeat_of_a_seed_is_set_aside_and_named_not_pooled(tmp_path, capsys):
    """resnet20's seed 0 again (another directory, 10 points higher): not a third seed. The
    means, the pooled std and the intervals are those of the runs without it."""
    dirs = three_models(tmp_path)
    again = make_run(tmp_path / "again", recipe(seed=0), test_acc=0.70, params=272_474,
                     macs=40_813_184)
    assert main(["compare", *map(str, dirs), "--out-dir", str(tmp_path / "without"),
                 "--baseline", "resnet20"]) == 0
    assert main(["compare", *map(str, dirs), str(again), "--out-dir", str(tmp_path / "with"),
                 "--baseline", "resnet20"]) == 0
    rows, groups = compare_runs([*dirs, again])
    assert [(g["label"], g["n"], g["runs"]) for g in groups][0] == \
        ("resnet20", 2, ["resnet20-s0", "resnet20-s1"])
    assert groups[0]["test_acc"] == pytest.approx((0.61, 0.02 / 2 ** 0.5, 2))
    (test,) = noise_test(rows, "resnet20")
    assert test.dof == 3 and test.pooled_std == pytest.approx(0.02 / 2 ** 0.5)
    without, with_ = ((tmp_path / d / "comparison.md").read_text() for d in ("without", "with"))
    for text in (with_, without):  # the tables of seeds and the tests: all but those of runs
        assert text.count("## Grouped") == 1 and text.count("## Test accuracy") == 1
    assert with_.split("## Grouped")[1].split("## Time")[0] == \
        without.split("## Grouped")[1].split("## Time")[0]
    assert with_.split("## Test accuracy")[1] == without.split("## Test accuracy")[1]
    runs = with_.split("## Grouped")[0]
    assert "| again | resnet20 | 272,474 | 40.8 | 2 | 0 ‡ |" in runs
    assert "again (seed 0 of resnet20, as resnet20-s0)" in runs


def test_a_model_against_several_baselines_with_hand_computed_intervals(tmp_path, capsys):
    """Each group's std is 2/sqrt(2) points, and so is the pooled one (3 dof, t = 3.182): every
    95% half-width is 3.182 * 1.414 * sqrt(1/2 + 1/2) = 4.50 points. Against resnet20: resnet56
    +4.00 (inside), regnet20_convgru +10.00; against its equal-cost resnet56: +6.00. Three
    comparisons in all, however the baselines are spelled."""
    dirs = three_models(tmp_path)
    outputs = []
    for spelling in (["--baseline", "resnet20", "--baseline", "regnet20_convgru=resnet56"],
                     ["--baseline", "resnet20, regnet20_convgru=resnet56"]):
        assert main(["compare", *map(str, dirs), "--out-dir", str(tmp_path / "out"),
                     *spelling]) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1]
    against_20, against_56 = outputs[0].split("## Test accuracy against ")[1:]
    assert against_20.startswith("resnet20 (2 epochs)")
    assert "| resnet56 | 2 | +4.00 | -0.50 .. +8.50 | inside the noise |" in against_20
    assert "| regnet20_convgru | 2 | +10.00 | +5.50 .. +14.50 | beyond the noise: better |" \
        in against_20
    assert against_56.startswith("resnet56 (2 epochs)")
    (compared,) = [line for line in against_56.splitlines() if line.startswith("| regnet")]
    assert compared == ("| regnet20_convgru | 2 | +6.00 | +1.50 .. +10.50 | "
                        "beyond the noise: better |")
    assert all("3 comparisons" in text for text in (against_20, against_56))


def test_accuracy_against_cost_one_point_per_model_and_the_resnet_line(tmp_path, capsys):
    """Points at the MACs (params) the runs recorded, as the tables print them, and the mean
    test accuracy with the std as error bar; resnet32, a row of an older comparison.csv without
    MACs, at those the package counts for it. resnet44 recorded 97.0 M (not today's 97.4 M: the
    cost it trained at). The plain ResNets of one recipe are joined in order of cost; resnet32
    (its recipe not recorded) and the regulated model are not."""
    dirs = three_models(tmp_path)
    dirs.append(make_run(tmp_path / "resnet44-s0", recipe(model="resnet44"), test_acc=0.64,
                         params=661_338, macs=97_000_000))
    old = old_csv(tmp_path / "old.csv", [("r32-s0", "resnet32", 0, 0.63, "")])
    rows, _ = compare_runs([*dirs, old])
    points = {p.label: p for p in cost_points(rows, "macs")}
    assert sorted(points) == ["regnet20_convgru", "resnet20", "resnet32 [no config.toml]",
                              "resnet44", "resnet56"]
    assert (points["resnet20"].cost, points["resnet20"].mean, points["resnet20"].std) == \
        pytest.approx((40_813_184, 0.61, 0.02 / 2 ** 0.5))
    assert (points["regnet20_convgru"].cost, points["regnet20_convgru"].mean) == \
        pytest.approx((166_118_016, 0.71))
    assert (points["resnet44"].cost, points["resnet44"].seeds) == (97_000_000, 1)
    assert points["resnet32 [no config.toml]"].cost == model_complexity("resnet32")[1]
    assert points["resnet20"].family == points["resnet56"].family is not None
    assert points["regnet20_convgru"].family is None
    assert points["resnet32 [no config.toml]"].family not in (None, points["resnet20"].family)
    assert {p.label: p.cost for p in cost_points(rows, "params")}["resnet56"] == 855_770
    for cost in COSTS:  # the flag's choices, spelled out in the parser (viz is slow to import)
        assert build_parser().parse_args(["compare", "r", "--cost", cost]).cost == cost

    out = tmp_path / "out"
    assert main(["compare", *map(str, dirs), str(old), "--cost", "macs",
                 "--out-dir", str(out)]) == 0
    assert f"wrote {out / 'accuracy_vs_cost.png'}" in capsys.readouterr().err
    ax = cost_figure(list(points.values()), "macs").axes[0]
    (line,) = [line for line in ax.lines if line.get_label().startswith("plain ResNets")]
    assert list(line.get_xdata()) == pytest.approx([40.813184, 97.0, 125.74784])
    assert list(line.get_ydata()) == pytest.approx([61.0, 64.0, 65.0])


def test_a_comparison_csv_read_back_gives_the_same_tables_and_csv(tmp_path, capsys):
    """compare writes comparison.csv; comparing that CSV alone gives the same tables (recipes
    told apart by settings named in config order, not alphabetical; model options; time to
    accuracy) and the very same CSV."""
    dirs = two_lrs(tmp_path / "runs")
    dirs.append(make_run(tmp_path / "runs" / "a-opt", recipe(
        lr=0.1, seed=2, data={"normalize": "imagenet", "flip": "alternating"}),
        test_acc=0.5, model_kwargs={"shortcut": "B"}))
    first, second = tmp_path / "first", tmp_path / "second"
    base = "resnet20 [data.normalize=dataset, data.flip=random, lr=0.1]"
    assert main(["compare", *map(str, dirs), "--out-dir", str(first),
                 "--baseline", base]) == 0
    assert main(["compare", str(first / "comparison.csv"), "--out-dir", str(second),
                 "--baseline", base]) == 0
    assert (second / "comparison.csv").read_text() == (first / "comparison.csv").read_text()
    again = (second / "comparison.md").read_text()
    assert "no comparison.png" in again and not (second / "comparison.png").exists()
    assert again.split("\nThe 5 runs read from")[0] == (first / "comparison.md").read_text()
    assert "| a-opt | resnet20 (shortcut=B) [data.normalize=imagenet, data.flip=alternating, " \
        "lr=0.1] |" in again


def test_a_run_in_a_csv_and_its_directory_count_once(tmp_path, capsys):
    """Seeds 0 and 1 kept only in an earlier comparison.csv, seed 0's directory given again,
    and a new seed 2: three seeds, seed 0's directory set aside as a repeat of its row."""
    s0, s1 = (make_run(tmp_path / f"s{seed}", recipe(seed=seed), test_acc=acc)
              for seed, acc in ((0, 0.60), (1, 0.62)))
    assert main(["compare", str(s0), str(s1), "--out-dir", str(tmp_path / "earlier")]) == 0
    s2 = make_run(tmp_path / "s2", recipe(seed=2), test_acc=0.67)
    rows, groups = compare_runs([tmp_path / "earlier" / "comparison.csv", s0, s2])
    (group,) = groups
    assert group["seeds"] == [0, 1, 2]
    assert group["test_acc"] == pytest.approx((0.63, statistics.stdev([0.60, 0.62, 0.67]), 3))
    assert [(r["run"], f["run"]) for r, f in repeats(rows)] == [("s0", "s0")]
