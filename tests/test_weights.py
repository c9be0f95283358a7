"""Published weights: the registry, its checks, and every way to reach them (create_model,
torch.hub, --pretrained, `resnet-cifar weights`), on a tiny run published into a temporary
registry; and, where the JPEG copy is present, each shipped tag's accuracy reproduced exactly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import JPEG_TARBALL
from data_fixtures import make_cifar10_python_dir

from resnet_cifar.cli import main
from resnet_cifar.errors import CheckpointError, ConfigError, UserError
from resnet_cifar.models import create_model, pretrained
from resnet_cifar.models.pretrained import get_weights, list_weights
from resnet_cifar.publish import publish_run, with_entry

TAG = "resnet20.tiny2_synthetic"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(data, a finished 2-epoch run trained with --normalize half)."""
    root = tmp_path_factory.mktemp("weights")
    data = make_cifar10_python_dir(root / "data", n_train_per_class=4, n_test_per_class=5,
                                   seed=0, learnable=True)
    run = root / "run"
    assert main(["train", "--data", str(data), "--out", str(run), "--epochs", "2",
                 "--batch-size", "16", "--threads", "1", "--normalize", "half",
                 "--milestones", "1", "--seed", "3"]) == 0
    return data, run


@pytest.fixture
def registry(tiny, tmp_path, monkeypatch):
    """The tiny run published as TAG (the default resnet20 weights) into a registry of its own."""
    folder = tmp_path / "weights"
    monkeypatch.setattr(pretrained, "weights_dir", lambda: folder)
    entry = publish_run(tiny[1], TAG, provenance="synthetic test images", default=True,
                        folder=folder, command="resnet-cifar train ...")
    return folder, entry


def safetensors_tensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, which must be nothing else: an 8-byte header length,
    a JSON header, then exactly the bytes of its tensors (no room for a pickle)."""
    from safetensors.torch import load_file

    blob = path.read_bytes()
    size = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + size])
    header.pop("__metadata__", None)
    assert max(t["data_offsets"][1] for t in header.values()) == len(blob) - 8 - size
    assert b"torch._utils" not in blob and not blob.startswith(b"PK")
    return load_file(path)


def test_the_entry_records_what_the_issue_asks_for(tiny, registry):
    folder, entry = registry
    meta = json.loads((folder / "registry.json").read_text())[TAG]
    run_weights = torch.load(tiny[1] / "model.pth", weights_only=True)
    published = safetensors_tensors(folder / meta["file"])  # tensor for tensor, no pickle
    assert published.keys() == run_weights.keys()
    assert all(torch.equal(published[k], v) for k, v in run_weights.items())
    assert meta["model"] == "resnet20" and meta["model_kwargs"] == {"shortcut": "B"}
    assert meta["params"] == 272_474 and meta["macs"] > 0
    assert meta["normalization"] == {"mode": "half", "mean": [0.5] * 3, "std": [0.5] * 3}
    assert meta["config"]["seed"] == 3 and meta["config"]["data"]["normalize"] == "half"
    assert meta["metrics"]["total"] == 50 and len(meta["metrics"]["per_class_acc"]) == 10
    assert meta["metrics"]["epoch"] == 2
    assert meta["data"]["provenance"] == "synthetic test images"
    assert meta["data"]["fingerprint"].startswith("sha256:")
    assert meta["training"]["wall_minutes"] > 0 and meta["training"]["torch"]
    assert meta["training"]["thread_spans"] == [[1, 2, 1]]  # epochs 1-2 on one thread
    assert meta["default"] is True and entry.tag == TAG


def test_eval_pretrained_reproduces_the_published_accuracy_exactly(tiny, registry, capsys):
    _, entry = registry
    capsys.readouterr()
    assert main(["eval", "--pretrained", TAG, "--data", str(tiny[0]), "--json",
                 "--threads", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    metrics = entry.meta["metrics"]
    assert (result["correct"], result["accuracy"], result["loss"]) == \
        (metrics["correct"], metrics["test_acc"], metrics["test_loss"])
    assert result["data"]["normalization"]["source"] == "checkpoint"
    assert result["data"]["matches_run"] is True


def test_create_model_and_torch_hub_give_the_published_weights(tiny, registry):
    expected = torch.load(tiny[1] / "model.pth", weights_only=True)
    for model in (create_model("resnet20", pretrained=True),
                  create_model("resnet20", pretrained=TAG, num_classes=10)):
        assert all(torch.equal(v, expected[k]) for k, v in model.state_dict().items())
    with pytest.raises(UserError, match=r"trained with shortcut='B', not shortcut='A'"):
        create_model("resnet20", pretrained=TAG, shortcut="A")
    with pytest.raises(UserError, match="trained with num_classes=10, not num_classes=100"):
        create_model("resnet20", pretrained=True, num_classes=100)
    with pytest.raises(UserError, match=f"unknown weights tag 'resnet20.nope'.*{TAG}"):
        create_model("resnet20", pretrained="resnet20.nope")
    with pytest.raises(UserError, match="no published weights for 'resnet32'"):
        create_model("resnet32", pretrained=True)


def test_a_file_whose_sha256_differs_is_refused_in_one_line(registry, capsys):
    folder, entry = registry
    path = folder / entry.meta["file"]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte inside a tensor
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=str(path)) as info:
        create_model("resnet20", pretrained=True)
    assert "\n" not in str(info.value)
    assert main(["eval", "--pretrained", TAG]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: weights 'resnet20.tiny2_synthetic'") and "\n" not in err


def test_the_weights_command_lists_tags_with_their_figures(registry, capsys):
    capsys.readouterr()
    assert main(["weights"]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith(TAG))
    assert "(default)" in line and "272,474" in line and "2 epochs, batch 16" in line
    assert out.splitlines()[0].split()[:7] == ["tag", "test", "%", "params", "MMACs", "MB",
                                               "train"]
    minutes = registry[1].meta["training"]["wall_minutes"]
    assert line.split()[6] == f"{minutes:.0f}"  # the training minutes, before the recipe
    assert f"{TAG}: synthetic test images" in out
    assert main(["weights", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[TAG]["metrics"]["total"] == 50


def test_a_published_entry_joins_its_models_entries_with_the_default_first():
    """`resnet-cifar weights` lists in registry order, so a new entry goes beside its model's."""
    registry = {"a.x": {"model": "a", "default": True}, "b.x": {"model": "b", "default": True}}
    def order(tag, model, default):
        return list(with_entry(registry, tag, {"model": model, "default": default}))
    assert order("a.y", "a", False) == ["a.x", "a.y", "b.x"]
    assert order("a.z", "a", True) == ["a.z", "a.x", "b.x"]
    assert order("c.x", "c", True) == ["a.x", "b.x", "c.x"]
    for default in (False, True):  # a republished tag keeps its place and takes the new record
        record = {"model": "a", "default": default}
        assert list(with_entry(registry, "a.x", record)) == ["a.x", "b.x"]
        assert with_entry(registry, "a.x", record)["a.x"] is record


def test_weights_of_an_unknown_model_is_an_error_not_an_empty_list(capsys):
    assert main(["weights", "--model", "resnet21"]) == 2
    err = capsys.readouterr().err.strip()
    assert "resnet21" in err and "resnet20" in err and len(err.splitlines()) == 1, err


def test_the_data_statement_is_printed_once_per_distinct_text():
    from types import SimpleNamespace

    from resnet_cifar.cli.weights_cmd import provenance_lines

    def entry(tag, text):
        return SimpleNamespace(tag=tag, meta={"data": {"provenance": text}})

    same = [entry("a.x", "JPEG copy"), entry("b.x", "JPEG copy")]
    assert provenance_lines(same) == ["data, every entry: JPEG copy"]
    mixed = [*same, entry("c.x", "original")]
    assert provenance_lines(mixed) == ["a.x, b.x: JPEG copy", "c.x: original"]


def test_checkpoint_and_pretrained_are_one_or_the_other(registry, tiny, capsys):
    for argv in (["eval"], ["eval", str(tiny[1] / "last.pt"), "--pretrained", TAG],
                 ["eval", "--pretrained", TAG, "--model", "resnet20"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err


def test_show_and_export_of_published_weights_write_here_not_into_the_package(
        registry, tiny, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["show", "--pretrained", TAG, "--data", str(tiny[0]), "--threads", "1"]) == 0
    assert (tmp_path / f"{TAG}-predictions.png").is_file()
    assert main(["export", "--pretrained", TAG, "--format", "torchscript", "--data",
                 str(tiny[0])]) == 0
    assert (tmp_path / f"{TAG}.torchscript.pt").is_file()
    assert sorted(p.name for p in registry[0].iterdir()) == ["registry.json",
                                                             f"{TAG}.safetensors"]


def test_publishing_refuses_an_unfinished_run_a_taken_tag_and_a_wrong_model(tiny, registry):
    folder, _ = registry
    with pytest.raises(ConfigError, match="published already"):
        publish_run(tiny[1], TAG, provenance="x", folder=folder)
    with pytest.raises(ConfigError, match="must start with the model's name"):
        publish_run(tiny[1], "resnet32.x", provenance="x", folder=folder)
    unfinished = folder.parent / "unfinished"
    unfinished.mkdir()
    (unfinished / "metrics.jsonl").write_text("")
    with pytest.raises(ConfigError, match="has not finished"):
        publish_run(unfinished, "resnet20.y", provenance="x", folder=folder)


def test_a_failed_republication_leaves_the_published_tag_as_it_was(tiny, registry, tmp_path):
    """Replacing a tag evaluates the new copy before it takes the tag's file name: here the
    evaluation is refused (other data than the run's), and the old file, its registry entry and
    the folder's listing are untouched, so the tag still loads."""
    folder, _ = registry
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    changed = tmp_path / "changed-run"  # the same run with other final weights
    shutil.copytree(tiny[1], changed)
    state = torch.load(changed / "model.pth", weights_only=True)
    state["linear.bias"] += 1.0
    torch.save(state, changed / "model.pth")
    other = make_cifar10_python_dir(folder.parent / "other", n_train_per_class=8,
                                    n_test_per_class=5, seed=1, learnable=True)
    with pytest.raises(UserError, match="fingerprint"):
        publish_run(changed, TAG, provenance="x", folder=folder, replace=True,
                    data_flags={"path": str(other)})
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert get_weights(TAG).meta["data"]["provenance"] == "synthetic test images"


@pytest.mark.skipif(not JPEG_TARBALL.is_file(), reason="the JPEG copy of CIFAR-10 is absent")
@pytest.mark.parametrize("tag", [e.tag for e in list_weights()])
def test_every_shipped_tag_reproduces_its_published_accuracy_on_the_jpeg_copy(tag, jpeg_cache,
                                                                             capsys):
    entry = get_weights(tag)
    assert main(["eval", "--pretrained", tag, "--data", str(JPEG_TARBALL), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["correct"], result["total"]) == \
        (entry.meta["metrics"]["correct"], entry.meta["metrics"]["total"])
    assert result["data"]["fingerprint"] == entry.meta["data"]["fingerprint"]


def test_shipped_files_match_their_registry():
    """Every shipped file is in the registry with the right sha256, and every entry's file
    ships: a file added or replaced without publishing is caught here."""
    folder = pretrained.weights_dir()
    files = {p.name for p in folder.glob("*.safetensors")}
    entries = list_weights()
    assert files == {e.meta["file"] for e in entries}
    for entry in entries:
        assert pretrained.sha256_of(Path(entry.path)) == entry.meta["sha256"], entry.tag


def test_eval_plot_and_show_of_published_weights_write_here_and_name_each_file(
        registry, tiny, tmp_path, monkeypatch, capsys):
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    for argv, files in ((["eval", "--pretrained", TAG, "--plot"], ["confusion.png",
                                                                   "per_class.png"]),
                        (["show", "--pretrained", TAG], [f"{TAG}-predictions.png"])):
        capsys.readouterr()
        assert main([*argv, "--data", str(tiny[0]), "--threads", "1", "--device", "cpu"]) == 0
        named = {Path(line.removeprefix("wrote ")).resolve()
                 for line in capsys.readouterr().err.splitlines() if line.startswith("wrote ")}
        assert named == {here / file for file in files}
    assert sorted(p.name for p in here.iterdir()) == sorted(
        ["confusion.png", "per_class.png", f"{TAG}-predictions.png"])


def test_the_entry_ships_names_not_the_folders_of_the_machine_that_trained_it(tiny, registry):
    """The run's folder and the data's are the training machine's: the registry keeps their
    names (the data is identified by its fingerprint), and the recorded command names the data
    the same way."""
    from resnet_cifar.cli.weights_cmd import train_command

    data, run = tiny
    folder, entry = registry
    assert str(run.parent) not in (folder / "registry.json").read_text()
    config = entry.meta["config"]
    assert (config["out"], config["data"]["path"], config["data"]["cache_dir"]) == \
        (run.name, data.name, None)
    assert entry.meta["data"]["source"] == data.name
    command = train_command(str(run))
    assert f"--data {data.name}" in command and str(run.parent) not in command


@pytest.mark.parametrize("tag", ["resnet20./../../x", "resnet20.a b", "resnet20.x/y",
                                 "../resnet20.x", "resnet20.", "resnet20.Seed2"])
def test_a_tag_that_is_not_model_dot_recipe_is_refused_before_anything_is_written(
        tiny, tmp_path, monkeypatch, capsys, tag):
    from refusals import assert_refused

    folder = tmp_path / "package" / "weights"
    for module in ("resnet_cifar.models.pretrained", "resnet_cifar.publish"):
        monkeypatch.setattr(f"{module}.weights_dir", lambda: folder)
    assert_refused(["weights", "--add", tiny[1], "--tag", tag, "--provenance", "x"], tag,
                   tmp_path, capsys)


# --- names that changed (issue 37): the old ones still find the same thing ---------------------

ORIGINAL, ORIGINAL_ALIAS = "resnet20.original150_jpeg", "resnet20.seed150_jpeg"


def test_the_renamed_tag_answers_to_its_old_name_with_the_same_weights(capsys):
    """The shipped file kept its bytes under the new tag; the old tag is an alias of it: one
    entry, the same weights and logits, and `resnet-cifar weights` names both."""
    old, new = get_weights(ORIGINAL_ALIAS), get_weights(ORIGINAL)
    assert old.tag == new.tag == ORIGINAL and old.aliases == [ORIGINAL_ALIAS]
    assert old.meta["sha256"] == "c4acec239b37eecbaab46873a7616d8c91bccd6d74aa25fd82c61c8bc0667d84"
    assert get_weights(True, "resnet20").tag == ORIGINAL
    by_old = create_model("resnet20", pretrained=ORIGINAL_ALIAS).eval()
    by_new = create_model("resnet20", pretrained=ORIGINAL).eval()
    assert by_old.state_dict().keys() == by_new.state_dict().keys()
    assert all(torch.equal(v, by_new.state_dict()[k]) for k, v in by_old.state_dict().items())
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(by_old(x), by_new(x))
    assert ORIGINAL_ALIAS not in {e.tag for e in list_weights()}  # listed once, by its tag
    assert main(["weights", "--model", "resnet20"]) == 0
    assert f"{ORIGINAL} (default; alias: {ORIGINAL_ALIAS})" in capsys.readouterr().out


def test_publishing_under_an_alias_means_its_tag_and_a_replaced_tag_keeps_its_aliases(
        tiny, registry):
    folder, entry = registry
    path = folder / "registry.json"
    shipped = json.loads(path.read_text())
    shipped[TAG]["aliases"] = ["resnet20.tiny2_old"]
    path.write_text(json.dumps(shipped))
    with pytest.raises(ConfigError, match=f"weights '{TAG}' are published already"):
        publish_run(tiny[1], "resnet20.tiny2_old", provenance="x", folder=folder)
    again = publish_run(tiny[1], "resnet20.tiny2_old", provenance="x", folder=folder,
                        replace=True, default=True)
    assert again.tag == TAG and again.aliases == ["resnet20.tiny2_old"]
    assert list(json.loads(path.read_text())) == [TAG]
    assert get_weights("resnet20.tiny2_old").meta["sha256"] == entry.meta["sha256"]


def test_the_old_gru_variant_builds_and_loads_the_same_model():
    """gru_variant "seed" is "original": the same architecture and the shipped ConvGRU weights
    (recorded as "original") load under either name without a clash."""
    for name in ("seed", "original"):
        torch.manual_seed(0)
        model = create_model("resnet20_convgru", gru_variant=name)
        assert model.layer1[0].rnn.conv_y.in_channels == 16 + 2 * 16  # the candidate sees h, r*h
        if name == "seed":
            old = model.state_dict()
    assert all(torch.equal(v, old[k]) for k, v in model.state_dict().items())
    tag = "resnet20_convgru.fast15_jpeg"
    assert get_weights(tag).model_kwargs["gru_variant"] == "original"
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = [create_model("resnet20_convgru", pretrained=tag, gru_variant=v).eval()(x)
                  for v in ("seed", "original")]
    assert torch.equal(*logits)


def test_the_original_recipe_answers_to_its_old_name_and_path():
    from resnet_cifar.config import build_config

    repo = Path(__file__).resolve().parents[1]
    original = build_config("original")
    assert build_config() == build_config("seed") == original  # the default, by either name
    assert build_config(None, repo / "configs" / "seed.toml") == original
    assert build_config(None, repo / "configs" / "original.toml") == original


def test_a_run_made_under_the_old_names_resumes_and_evaluates(tmp_path, capsys):
    """A run directory whose config.toml and last.pt say recipe "seed" and gru_variant "seed",
    as every run made before the rename does: it resumes (not refused as another recipe), and
    its checkpoint evaluates."""
    data = make_cifar10_python_dir(tmp_path / "data", n_train_per_class=2, n_test_per_class=1)
    run = tmp_path / "run"
    assert main(["train", "--recipe", "seed", "--model", "resnet20_convgru", "--model-opt",
                 "gru_variant=seed", "--data", str(data), "--out", str(run), "--epochs", "1",
                 "--batch-size", "10", "--threads", "1"]) == 0
    # what the old code wrote, whatever this one records
    ckpt = torch.load(run / "last.pt", weights_only=True)
    ckpt["model_kwargs"] = ckpt["config"]["model_kwargs"] = {"gru_variant": "seed"}
    torch.save(ckpt, run / "last.pt")
    config = (run / "config.toml").read_text().replace('gru_variant = "original"',
                                                       'gru_variant = "seed"')
    (run / "config.toml").write_text(config)
    assert 'gru_variant = "seed"' in config
    assert main(["train", "--resume", str(run), "--epochs", "2", "--threads", "1"]) == 0
    capsys.readouterr()
    assert main(["eval", str(run / "last.pt"), "--data", str(data), "--json",
                 "--threads", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["total"] == 10


# ---------------------------------------------------------------- weights folders and timm names

IMAGES = torch.linspace(0, 1, 2 * 3 * 32 * 32).reshape(2, 3, 32, 32)


def logits_of(model) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(IMAGES)


def test_a_saved_folder_loads_back_to_the_same_logits_everywhere(registry, tiny, tmp_path,
                                                                  monkeypatch, capsys):
    """`weights --save TAG DIR`: the weights (safetensors), config.json and the card; the folder
    then loads wherever a tag does, to the same logits, and reproduces the same accuracy. A
    DIR ending in .pth is a plain state_dict, as the original code loads."""
    from resnet_cifar import Predictor, load_pretrained

    monkeypatch.chdir(tmp_path)
    assert main(["weights", "--save", TAG, "r20"]) == 0
    folder = tmp_path / "r20"
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json",
                                                        "model.safetensors"]
    safetensors_tensors(folder / "model.safetensors")
    want = logits_of(create_model("resnet20", pretrained=TAG))
    for model in (create_model("resnet20", pretrained="r20"), load_pretrained(folder),
                  create_model("resnet20", pretrained=folder)):
        assert torch.equal(logits_of(model), want)
    images = (IMAGES * 255).to(torch.uint8)
    assert torch.equal(Predictor("r20").logits(images), Predictor(TAG).logits(images))
    record = json.loads((folder / "config.json").read_text())
    assert record["tag"] == TAG and record["architecture"] == "resnet20"
    assert record["metrics"] == registry[1].meta["metrics"]
    capsys.readouterr()
    assert main(["eval", "--pretrained", "r20", "--data", str(tiny[0]), "--json",
                 "--threads", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == registry[1].test_acc
    assert main(["weights", "--save", TAG, "r20.pth"]) == 0
    plain = create_model("resnet20")
    plain.load_state_dict(torch.load("r20.pth", weights_only=True))  # strict
    assert torch.equal(logits_of(plain), want)


def test_the_model_card_is_yaml_front_matter_then_what_the_record_says(registry, tmp_path):
    yaml = pytest.importorskip("yaml")
    from resnet_cifar import save_pretrained

    folder = save_pretrained(create_model("resnet20", pretrained=TAG), tmp_path / "r20")
    _, front, body = (folder / "README.md").read_text().split("---\n", 2)
    meta = yaml.safe_load(front)
    assert {"library_name", "license", "tags", "datasets", "metrics"} <= set(meta)
    assert meta["license"] == "mit" and meta["datasets"] == ["cifar10"]
    assert f"# {TAG}" in body and "synthetic test images" in body
    assert f"{100 * registry[1].test_acc:.2f}%" in body and "resnet-cifar train" in body


def test_a_model_trained_further_claims_none_of_the_published_results(registry, tmp_path):
    from resnet_cifar import save_pretrained

    model = create_model("resnet20", pretrained=TAG)
    with torch.no_grad():
        model.linear.bias += 1.0
    folder = save_pretrained(model, tmp_path / "tuned")
    record = json.loads((folder / "config.json").read_text())
    assert record["tag"] is None and record["derived_from"] == TAG and "metrics" not in record
    assert "No results" in (folder / "README.md").read_text()
    assert torch.equal(logits_of(create_model("resnet20", pretrained=folder)), logits_of(model))


def test_arch_dot_tag_builds_with_its_weights_and_preprocessing(registry):
    """timm's "arch.tag": the tag's weights with pretrained=True, the bare architecture without;
    a model built with weights carries pretrained_cfg, in training mode as torch builds it."""
    model = create_model(TAG, pretrained=True)
    assert torch.equal(logits_of(model), logits_of(create_model("resnet20", pretrained=TAG)))
    cfg = create_model(TAG, pretrained=True).pretrained_cfg
    assert cfg["tag"] == TAG and cfg["architecture"] == "resnet20"
    assert cfg["mean"] == cfg["std"] == [0.5] * 3 and cfg["input_size"] == [3, 32, 32]
    assert len(cfg["classes"]) == 10 and create_model(TAG, pretrained=True).training
    assert not hasattr(create_model(TAG), "pretrained_cfg")
    with pytest.raises(UserError, match="names its weights"):
        create_model(TAG, pretrained="resnet20.fast15_jpeg")


def test_the_shipped_weights_load_by_arch_dot_tag_and_through_a_folder(tmp_path):
    from resnet_cifar import Predictor, load_pretrained, save_pretrained

    model = create_model("resnet20.fast15_jpeg", pretrained=True)
    assert model.pretrained_cfg["metrics"]["test_acc"] == get_weights(
        "resnet20.fast15_jpeg").test_acc
    folder = save_pretrained(model, tmp_path / "fast")
    assert torch.equal(logits_of(load_pretrained(folder)), logits_of(model))
    assert Predictor("resnet20.fast15_jpeg").classes == model.pretrained_cfg["classes"]


def test_bad_weights_folders_and_tags_are_refused(registry, tmp_path, capsys):
    from refusals import assert_refused

    empty = tmp_path / "empty"
    empty.mkdir()
    (tmp_path / "file").write_text("x")
    for argv, named in (
            (["weights", "--save", "resnet20.nope", tmp_path / "a"], "resnet20.nope"),
            (["weights", "--save", empty, tmp_path / "b"], empty),
            (["weights", "--save", TAG, tmp_path / "file" / "c"], tmp_path / "file"),
            (["eval", "--pretrained", empty], empty)):
        assert_refused(argv, named, tmp_path, capsys)
