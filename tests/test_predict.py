"""predict: images of any size, mode and container; per-file errors; agreement with eval."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from data_fixtures import make_cifar10_python_dir
from PIL import Image
from torch import nn

from resnet_cifar.cli import main
from resnet_cifar.config import DataConfig, TrainConfig, to_dict
from resnet_cifar.data import (
    CIFAR10_CLASSES,
    CIFAR10_MEAN,
    CIFAR10_STD,
    NORMALIZATIONS,
    DeviceLoader,
    load_cifar,
)
from resnet_cifar.engine.checkpoint import atomic_save, checkpoint_payload
from resnet_cifar.engine.evaluate import evaluate_checkpoint
from resnet_cifar.errors import UserError
from resnet_cifar.models import create_model
from resnet_cifar.predict import Predictor, find_images

# --------------------------------------------------------------------------- shared helpers
# (test_export.py imports these too)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Batches of a few images gain nothing from threads, and on a shared machine the OpenMP
    workers of concurrent processes spin against each other: one thread is several times faster."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def calibrated_model(name: str, seed: int = 0, **kwargs) -> nn.Module:
    """A fresh model whose BatchNorm statistics come from one batch, so its logits have a trained
    model's scale (an uncalibrated deep ResNet's logits reach 1e9), in eval mode."""
    torch.manual_seed(seed)
    model = create_model(name, **kwargs)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = None  # cumulative average: the one batch's statistics
    model.train()
    with torch.no_grad():
        model(torch.randn(2, 3, 32, 32))  # 2 x 8 x 8 values per channel even at the last stage
    return model.eval()


def save_our_checkpoint(model: nn.Module, name: str, path: Path, *, mean, std, classes,
                        data_path: str | None = None, model_kwargs=None) -> Path:
    """A last.pt-style checkpoint (classes, mean/std, config) of ``model``."""
    config = TrainConfig(model=name, model_kwargs=dict(model_kwargs or {}))
    config.data.path = data_path
    payload = checkpoint_payload(
        model, model_name=name, model_kwargs=dict(model_kwargs or {}), num_classes=len(classes),
        classes=list(classes), mean=tuple(mean), std=tuple(std), normalize="dataset",
        config=to_dict(config), package_version="test",
    )
    atomic_save(payload, path)
    return path


def write_png(image_chw: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(image_chw.transpose(1, 2, 0))).save(path)
    return path


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 30-image test split, its decoded arrays, and a checkpoint trained "on" it."""
    root = tmp_path_factory.mktemp("predict")
    data = make_cifar10_python_dir(root / "data", n_train_per_class=2, n_test_per_class=3, seed=1,
                                    learnable=True)
    arrays = load_cifar(data, progress=False)
    model = calibrated_model("resnet20", seed=3)
    with torch.no_grad():  # spread the logits so the images do not all get one class
        model.linear.weight.mul_(8.0)
    ckpt = save_our_checkpoint(model, "resnet20", root / "last.pt", mean=arrays.mean,
                               std=arrays.std, classes=arrays.classes, data_path=str(data))
    return {"root": root, "data": data, "arrays": arrays, "ckpt": ckpt, "model": model}


@pytest.fixture(scope="module")
def predictor(tiny) -> Predictor:
    return Predictor(tiny["ckpt"], device="cpu")


def random_image(mode: str, size: tuple[int, int], seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    w, h = size
    rgba = Image.fromarray(rng.integers(0, 256, (h, w, 4), dtype=np.uint8), "RGBA")
    if mode == "P":
        return rgba.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    return rgba.convert(mode)


def by_hand(image: Image.Image) -> np.ndarray:
    """The documented conversion: RGB, whole-image bicubic resize to 32x32, (3, 32, 32)."""
    rgb = image.convert("RGB")
    if rgb.size != (32, 32):
        rgb = rgb.resize((32, 32), Image.Resampling.BICUBIC)
    return np.asarray(rgb).transpose(2, 0, 1)


def reference_probs(model: nn.Module, pixels: np.ndarray, mean, std) -> torch.Tensor:
    """softmax(model((x / 255 - mean) / std)) computed the plain way, for (N, 3, 32, 32) uint8."""
    x = torch.from_numpy(pixels).double() / 255.0
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        return model(x.float()).softmax(1)


# --------------------------------------------------------------------------- the library


IMAGES = [("L", (7, 9)), ("RGBA", (64, 48)), ("P", (32, 32)), ("RGB", (64, 48)),
          ("RGB", (32, 32)), ("LA", (5, 40))]


def test_any_size_and_mode_is_converted_as_documented(tiny, predictor):
    images = [random_image(mode, size, seed=i) for i, (mode, size) in enumerate(IMAGES)]
    preds = predictor.predict(images, topk=3)
    assert len(preds) == len(images)
    expected = reference_probs(tiny["model"], np.stack([by_hand(im) for im in images]),
                               tiny["arrays"].mean, tiny["arrays"].std)
    for pred, (mode, size), probs in zip(preds, IMAGES, expected, strict=True):
        assert (pred.size, pred.mode) == (size, mode)
        top = probs.topk(3)
        assert pred.topk_indices == top.indices.tolist()
        assert pred.topk_names == [tiny["arrays"].classes[i] for i in top.indices]
        assert pred.topk_probs == pytest.approx(top.values.tolist(), abs=1e-5)
        assert (pred.index, pred.name, pred.prob) == (pred.topk[0].index, pred.topk[0].name,
                                                      pred.topk[0].prob)
        assert pred.topk_probs == sorted(pred.topk_probs, reverse=True)


def test_arrays_tensors_and_pil_images_give_the_same_predictions(predictor):
    rng = np.random.default_rng(5)
    nhwc = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    nchw = torch.from_numpy(nhwc).permute(0, 3, 1, 2)
    variants = {
        "numpy NHWC": nhwc,
        "numpy NCHW": nchw.numpy(),
        "tensor NCHW uint8": nchw,
        "tensor NCHW float [0, 1]": nchw.float() / 255,
        "list of HWC arrays": list(nhwc),
        "list of CHW tensors": list(nchw),
        "list of PIL images": [Image.fromarray(a) for a in nhwc],
    }
    results = {k: predictor.predict(v, topk=2) for k, v in variants.items()}
    first = results.pop("numpy NHWC")
    for name, preds in results.items():  # the same uint8 pixels, so exactly the same figures
        assert [p.topk for p in preds] == [p.topk for p in first], name
    # one image on its own is a list of one; a greyscale 2-D array is an "L" image
    (single,) = predictor.predict(nhwc[0])
    assert single.topk_indices == first[0].topk_indices[:1]
    (grey,) = predictor.predict(nhwc[0, :, :, 0])
    assert grey.mode == "L" and grey.size == (32, 32)


@pytest.mark.parametrize("bad, needle", [
    (np.full((32, 32, 3), 200.0), "[0, 1]"),
    (np.zeros((32, 32, 7), dtype=np.uint8), "channels"),
    (np.full((32, 32, 3), 300, dtype=np.int64), "0-255"),
    ("not an image at all, and not a file either.png", "No such file"),
])
def test_unusable_inputs_raise_a_clear_error(predictor, bad, needle):
    with pytest.raises((UserError, OSError), match=re.escape(needle)):
        predictor.predict(bad)


def test_top1_matches_eval_exactly_on_the_same_pixels(tiny, tmp_path):
    arrays = tiny["arrays"]
    paths = [write_png(image, tmp_path / "test" / f"{i:03d}.png")
             for i, image in enumerate(arrays.test_images)]
    predictor = Predictor(tiny["ckpt"], device="cpu", batch_size=1000)
    results = predictor.predict_files(paths)
    predicted = [r.prediction.index for r in results]
    assert len(set(predicted)) > 1, "the check is vacuous if every image gets one class"
    # the evaluation pipeline on the same arrays: identical confusion matrix
    result = evaluate_checkpoint(tiny["ckpt"], DataConfig(path=str(tiny["data"])), device="cpu",
                                 progress=False)
    k = len(arrays.classes)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (arrays.test_labels, predicted), 1)
    assert confusion.tolist() == result.confusion
    # and image by image, the logits themselves are bit-identical to the eval loader's batches
    loader = DeviceLoader(arrays.test_images, arrays.test_labels, batch_size=1000, train=False,
                          mean=arrays.mean, std=arrays.std)
    (x, _), = list(loader)
    with torch.inference_mode():
        eval_logits = tiny["model"](x)
    assert predicted == eval_logits.argmax(1).tolist()
    pixels = torch.from_numpy(np.stack([np.asarray(Image.open(p)).transpose(2, 0, 1)
                                        for p in paths]))
    pixels = pixels.contiguous(memory_format=torch.channels_last)  # any layout gives the same
    assert torch.equal(predictor.logits(pixels), eval_logits)


def test_foreign_checkpoint_defaults_and_normalize_presets(tmp_path):
    path = tmp_path / "model.pth"
    torch.save(create_model("resnet20", shortcut="A").state_dict(), path)
    default = Predictor(path, model="resnet20", model_kwargs={"shortcut": "A"}, device="cpu")
    assert default.classes == list(CIFAR10_CLASSES)
    assert (default.mean, default.std) == (CIFAR10_MEAN, CIFAR10_STD)
    imagenet = Predictor(path, normalize="imagenet", device="cpu")  # architecture inferred
    assert (imagenet.mean, imagenet.std) == NORMALIZATIONS["imagenet"]
    path100 = tmp_path / "model100.pth"
    torch.save(create_model("resnet20", num_classes=100).state_dict(), path100)
    wide = Predictor(path100, model="resnet20", device="cpu")
    assert wide.classes[:2] == ["class_0", "class_1"] and len(wide.classes) == 100
    assert len(wide.predict(np.zeros((32, 32, 3), np.uint8), topk=200)[0].topk) == 100


def test_a_file_that_does_not_fit_the_model_is_the_only_line_said(tmp_path, capsys):
    """Not a normalization warning about a model that will not be built, then the error."""
    path = tmp_path / "model.pth"
    torch.save(create_model("resnet20").state_dict(), path)
    image = tmp_path / "x.png"
    Image.new("RGB", (32, 32)).save(image)
    assert main(["predict", str(path), str(image), "--model", "regnet20_convgru"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "does not fit model 'regnet20_convgru'" in err, err


def test_our_checkpoint_brings_its_classes_and_statistics(tiny, predictor):
    assert predictor.classes == tiny["arrays"].classes
    assert predictor.mean == pytest.approx(tiny["arrays"].mean)
    # "dataset" on a checkpoint trained with dataset statistics means its own statistics
    again = Predictor(tiny["ckpt"], normalize="dataset", device="cpu")
    assert again.mean == pytest.approx(tiny["arrays"].mean)
    half = Predictor(tiny["ckpt"], normalize="half", device="cpu")
    assert half.mean == (0.5, 0.5, 0.5)


# --------------------------------------------------------------------------- the CLI


@pytest.fixture
def image_dir(tmp_path):
    """Good images of several formats and modes (one nested), a corrupt and a truncated file, a
    text file and a hidden file that the walk must skip."""
    root = tmp_path / "images"
    (root / "nested").mkdir(parents=True)
    random_image("RGBA", (64, 48), 1).save(root / "a_rgba.png")
    random_image("L", (7, 9), 2).save(root / "b_grey.png")
    random_image("P", (32, 32), 3).save(root / "nested" / "c_palette.gif")
    random_image("RGB", (40, 30), 4).save(root / "nested" / "d_photo.JPG", quality=90)
    (root / "e_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(200)))
    good = io.BytesIO()
    random_image("RGB", (50, 50), 5).save(good, format="PNG")
    (root / "f_truncated.png").write_bytes(good.getvalue()[:300])
    (root / "notes.txt").write_text("not an image")
    random_image("RGB", (8, 8), 6).save(root / ".hidden.png")
    return root


GOOD = ["a_rgba.png", "b_grey.png", "c_palette.gif", "d_photo.JPG"]
BAD = ["e_corrupt.png", "f_truncated.png"]


def test_find_images_walks_recursively_and_skips_non_images(image_dir):
    names = [p.name for p in find_images([image_dir])]
    assert sorted(names) == sorted(GOOD + BAD)


def test_cli_json_reports_bad_files_and_still_predicts_the_rest(tiny, image_dir, capsys):
    missing = image_dir / "missing.png"
    code = main(["predict", str(tiny["ckpt"]), str(image_dir), str(missing), "--json",
                 "--topk", "3", "--device", "cpu"])
    assert code == 1
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    # the documented schema
    assert set(out) == {"checkpoint", "model", "predictions", "errors"}
    assert out["model"] == "resnet20"
    by_name = {Path(p["file"]).name: p for p in out["predictions"]}
    assert sorted(by_name) == sorted(GOOD)
    for entry in out["predictions"]:
        assert set(entry) == {"file", "size", "mode", "topk"}
        assert len(entry["topk"]) == 3
        for item in entry["topk"]:
            assert set(item) == {"class", "index", "prob"}
            assert tiny["arrays"].classes[item["index"]] == item["class"]
            assert 0.0 <= item["prob"] <= 1.0
    assert by_name["a_rgba.png"]["size"] == [64, 48] and by_name["a_rgba.png"]["mode"] == "RGBA"
    assert by_name["b_grey.png"]["size"] == [7, 9] and by_name["b_grey.png"]["mode"] == "L"
    assert by_name["c_palette.gif"]["mode"] == "P"
    errors = {Path(e["file"]).name: e["error"] for e in out["errors"]}
    assert sorted(errors) == sorted(BAD + ["missing.png"])
    assert errors["missing.png"] == "no such file"
    assert all(set(e) == {"file", "error"} for e in out["errors"])
    for name in BAD + ["missing.png"]:
        assert name in captured.err
    # the same image through the library gives the same figures
    direct = Predictor(tiny["ckpt"], device="cpu").predict(image_dir / "a_rgba.png", topk=3)[0]
    assert [t["index"] for t in by_name["a_rgba.png"]["topk"]] == direct.topk_indices


def test_cli_table_and_csv(tiny, image_dir, capsys):
    files = [str(image_dir / "a_rgba.png"), str(image_dir / "e_corrupt.png")]
    assert main(["predict", str(tiny["ckpt"]), *files, "--topk", "2", "--device", "cpu"]) == 1
    captured = capsys.readouterr()
    table = captured.out.splitlines()
    assert table[0].split() == ["file", "size", "top-k"]
    assert len(table) == 2 and "64x48" in table[1] and table[1].count(":") == 2
    assert "e_corrupt.png" in captured.err and "e_corrupt.png" not in captured.out

    assert main(["predict", str(tiny["ckpt"]), *files, "--topk", "2", "--csv"]) == 1
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert list(rows[0]) == ["file", "width", "height", "mode", "class_1", "index_1", "prob_1",
                             "class_2", "index_2", "prob_2", "error"]
    assert (rows[0]["width"], rows[0]["height"], rows[0]["mode"], rows[0]["error"]) == (
        "64", "48", "RGBA", "")
    assert rows[0]["class_1"] == tiny["arrays"].classes[int(rows[0]["index_1"])]
    assert rows[1]["error"] and rows[1]["class_1"] == ""


def test_cli_exit_code_0_when_all_succeed_and_2_when_nothing_to_predict(tiny, image_dir,
                                                                       tmp_path, capsys):
    assert main(["predict", str(tiny["ckpt"]), str(image_dir / "a_rgba.png"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["errors"] == []
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["predict", str(tiny["ckpt"]), str(empty)]) == 2
    assert "no images found" in capsys.readouterr().err


# --------------------------------------------------------------------------- argument order

ORDERS = [  # C: the checkpoint (or nothing, with --pretrained), A and B: images
    ["C", "A", "B", "--topk", "2", "--json"],
    ["--topk", "2", "--json", "C", "A", "B"],
    ["C", "--topk", "2", "A", "--json", "B"],
    ["C", "A", "--json", "B", "--topk", "2"],
    ["--pretrained", "TAG", "A", "B", "--topk", "2", "--json"],
    ["A", "--pretrained", "TAG", "B", "--json", "--topk", "2"],
    ["--json", "A", "B", "--topk", "2", "--pretrained", "TAG"],
]


@pytest.mark.parametrize("order", ORDERS, ids=" ".join)
def test_predict_takes_its_options_before_between_and_after_the_images(tiny, image_dir,
                                                                       monkeypatch, capsys,
                                                                       order):
    from resnet_cifar.engine import checkpoint

    # a published tag is a checkpoint like any other: here, the tiny one
    monkeypatch.setattr(checkpoint, "pretrained_checkpoint",
                        lambda tag: checkpoint.load_checkpoint(tiny["ckpt"]))
    files = {"C": tiny["ckpt"], "A": image_dir / "a_rgba.png", "B": image_dir / "b_grey.png"}
    capsys.readouterr()
    assert main(["predict", *(str(files.get(word, word)) for word in order)]) == 0
    predictions = json.loads(capsys.readouterr().out)["predictions"]
    assert [p["file"] for p in predictions] == [str(files["A"]), str(files["B"])]
    assert all(len(p["topk"]) == 2 for p in predictions)


@pytest.mark.parametrize("argv, named", [
    (["C"], "C"),  # a checkpoint and no image
    (["C", "--topk", "2", "--bogus", "A"], "--bogus"),
    (["C", "A", "--topk", "two"], "two"),
])
def test_predict_refuses_what_its_arguments_cannot_mean(tiny, image_dir, tmp_path, capsys,
                                                        argv, named):
    from refusals import assert_refused

    files = {"C": str(tiny["ckpt"]), "A": str(image_dir / "a_rgba.png")}
    assert_refused(["predict", *(files.get(word, word) for word in argv)],
                   files.get(named, named), tmp_path, capsys)


def test_predictor_takes_a_published_tag_as_the_cli_takes_it():
    from resnet_cifar.engine.checkpoint import pretrained_checkpoint

    image = Image.new("RGB", (32, 32), (200, 30, 30))
    by_tag = Predictor("resnet20.fast15_jpeg").predict([image], topk=3)
    checkpoint = pretrained_checkpoint("resnet20.fast15_jpeg")
    by_checkpoint = Predictor(checkpoint).predict([image], topk=3)
    assert by_tag == by_checkpoint
