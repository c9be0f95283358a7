"""Test-time augmentation: the stated views with the stated weights, computed by hand on a toy
model; "none" untouched; eval, predict and show report it beside (or label it on) their output."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from data_fixtures import make_cifar10_python_dir
from PIL import Image
from test_predict import calibrated_model, reference_probs, save_our_checkpoint
from test_viz import CaptureFigures, titled_panels
from torch import nn

from resnet_cifar.cli import main
from resnet_cifar.data import DeviceLoader, load_cifar
from resnet_cifar.engine import evaluate as tta_module
from resnet_cifar.engine.evaluate import TTA_VIEWS, evaluate_model, tta_logits, with_tta
from resnet_cifar.errors import ConfigError
from resnet_cifar.predict import Predictor


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class Toy(nn.Module):
    """Linear class scores of a (B, 3, 4, 4) image: each pixel position has its own weights, so
    a mirror or a shift changes the scores."""

    def __init__(self, classes: int = 3):
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(3 * 4 * 4, classes)
        self.calls: list[int] = []  # batch size of each forward

    def forward(self, x):
        self.calls.append(len(x))
        return self.linear(x.flatten(1)) * 3.0


def reflect(i: int, n: int) -> int:
    return -i if i < 0 else 2 * (n - 1) - i if i > n - 1 else i


def shifted(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """By hand: out[i, j] = x[i - dy, j - dx], reflected at the border (index -1 reads 1)."""
    h, w = x.shape[-2:]
    rows = [reflect(i - dy, h) for i in range(h)]
    cols = [reflect(j - dx, w) for j in range(w)]
    return x[:, :, rows][:, :, :, cols]


def mirror(x: torch.Tensor) -> torch.Tensor:
    return x[..., list(range(x.shape[-1] - 1, -1, -1))]


def averaged(model, weighted_views) -> torch.Tensor:
    with torch.no_grad():
        return sum(w * model(v).double().softmax(1) for w, v in weighted_views)


X = torch.randn(5, 3, 4, 4, generator=torch.Generator().manual_seed(1))


def test_none_is_the_model_itself():
    model = Toy()
    assert with_tta(model, "none") is model  # evaluate_model then runs exactly today's code
    with torch.no_grad():
        assert torch.equal(tta_logits(model, X, "none"), model(X))


def test_flip_averages_the_probabilities_of_the_image_and_its_mirror():
    model = Toy()
    expected = averaged(model, [(0.5, X), (0.5, mirror(X))])
    model.calls.clear()
    with torch.no_grad():
        out = tta_logits(model, X, "flip")
    assert model.calls == [2 * len(X)]  # both views in one forward
    # log of the averaged probabilities: softmax gives them back, and they sum to one
    torch.testing.assert_close(out.double().softmax(1), expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(out.double().exp().sum(1), torch.ones(len(X), dtype=torch.float64))


def test_flip_translate_averages_six_views_with_the_stated_weights():
    model = Toy()
    down, up = shifted(X, 1, 1), shifted(X, -1, -1)
    assert not torch.equal(down, X) and torch.equal(down[:, :, 1:, 1:], X[:, :, :-1, :-1])
    expected = averaged(model, [(1 / 4, X), (1 / 4, mirror(X)),
                                (1 / 8, down), (1 / 8, mirror(down)),
                                (1 / 8, up), (1 / 8, mirror(up))])
    model.calls.clear()
    with torch.no_grad():
        out = tta_logits(model, X, "flip-translate")
    assert model.calls == [TTA_VIEWS["flip-translate"] * len(X)]
    torch.testing.assert_close(out.double().softmax(1), expected, atol=1e-6, rtol=0)


def test_an_unknown_mode_names_the_setting():
    with pytest.raises(ConfigError, match="`tta`"):
        with_tta(Toy(), "rotate")


def test_evaluate_model_scores_the_averaged_prediction(monkeypatch):
    """Loss and confusion of tta="flip" are those of the hand-averaged probabilities; "none"
    is the plain model's, exactly."""
    torch.manual_seed(2)
    model = calibrated_model("resnet20")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 3, 32, 32), dtype=np.uint8)
    labels = rng.integers(0, 10, 40)
    loader = DeviceLoader(images, labels, batch_size=40, train=False)
    classes = [str(i) for i in range(10)]
    ((x, y),) = list(loader)
    probs = averaged(model, [(0.5, x), (0.5, mirror(x))])
    monkeypatch.setattr(tta_module, "CPU_EVAL_CHUNK", 10**6)  # one forward, as the reference
    flip = evaluate_model(model, loader, classes, tta="flip")
    assert not model.training  # the wrapper restores the model's own mode, not its own
    assert flip.correct == int((probs.argmax(1) == y).sum())
    assert flip.loss == pytest.approx(float(-probs[range(40), y].log().mean()), rel=1e-5)
    with torch.no_grad():
        plain_loss = torch.nn.functional.cross_entropy(model(x), y, reduction="sum").double()
    plain = evaluate_model(model, loader, classes, tta="none")
    assert plain.loss == float(plain_loss) / 40  # bitwise: no TTA arithmetic on "none"
    assert plain.loss != flip.loss


# --------------------------------------------------------------------------- the commands


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tta")
    data = make_cifar10_python_dir(root / "data", n_train_per_class=2, n_test_per_class=3,
                                   seed=1, learnable=True)
    model = calibrated_model("resnet20", seed=3)
    with torch.no_grad():  # spread the logits so the views disagree
        model.linear.weight.mul_(8.0)
    arrays = load_cifar(data, progress=False)
    ckpt = save_our_checkpoint(model, "resnet20", root / "last.pt", mean=arrays.mean,
                               std=arrays.std, classes=arrays.classes, data_path=str(data))
    return {"root": root, "data": data, "ckpt": ckpt, "model": model, "arrays": arrays}


def eval_json(capsys, tiny, *extra) -> dict:
    assert main(["eval", str(tiny["ckpt"]), "--device", "cpu", "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def test_eval_reports_tta_beside_the_plain_accuracy(tiny, capsys):
    from resnet_cifar.engine.inference import InferenceContext

    plain = eval_json(capsys, tiny)
    assert "tta" not in plain
    both = eval_json(capsys, tiny, "--tta", "flip")
    report = both.pop("tta")
    assert both == plain  # the plain figures are still there, unchanged
    context = InferenceContext.build(tiny["ckpt"], device="cpu", progress=False)
    images, labels = context.split("test")
    expected = evaluate_model(context.model, context.loader(images, labels, 1000),
                              context.classes, tta="flip")
    assert report["mode"] == "flip" and report["views"] == 2
    assert (report["correct"], report["total"]) == (expected.correct, 30)
    assert report["accuracy"] == expected.accuracy
    assert report["loss"] == pytest.approx(expected.loss) and report["loss"] != plain["loss"]
    assert report["images_per_second"] > 0 and report["plain_images_per_second"] > 0

    assert main(["eval", str(tiny["ckpt"]), "--device", "cpu", "--tta", "flip"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"test accuracy {100 * plain['accuracy']:.2f}% "
                               f"({plain['correct']}/30)")
    assert lines[1].startswith(f"test accuracy with tta flip {100 * report['accuracy']:.2f}% "
                               f"({report['correct']}/30)")
    assert "img/s" in lines[2]


def test_predict_averages_the_views_and_says_so(tiny, tmp_path, capsys):
    pixels = tiny["arrays"].test_images[:6]
    predictor = Predictor(tiny["ckpt"], device="cpu", tta="flip")
    got = torch.tensor([[c.prob for c in p.topk] for p in predictor.predict(list(pixels), 10)])
    mean, std = tiny["arrays"].mean, tiny["arrays"].std
    model = tiny["model"]
    expected = (reference_probs(model, pixels, mean, std)
                + reference_probs(model, np.ascontiguousarray(pixels[..., ::-1]), mean, std)) / 2
    torch.testing.assert_close(got, expected.sort(1, descending=True).values.float(),
                               atol=1e-5, rtol=0)

    path = tmp_path / "a.png"
    Image.fromarray(np.ascontiguousarray(pixels[0].transpose(1, 2, 0))).save(path)
    assert main(["predict", str(tiny["ckpt"]), str(path), "--device", "cpu", "--json",
                 "--tta", "flip", "--topk", "10"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["tta"] == "flip"
    probs = [c["prob"] for c in out["predictions"][0]["topk"]]
    assert probs == pytest.approx(got[0].tolist(), abs=1e-6)
    assert main(["predict", str(tiny["ckpt"]), str(path), "--device", "cpu"]) == 0
    assert "tta" not in capsys.readouterr().out
    assert main(["predict", str(tiny["ckpt"]), str(path), "--device", "cpu", "--tta",
                 "flip-translate"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == (
        "probabilities: mean over 6 views per image (tta flip-translate)")


def test_show_titles_by_the_tta_prediction(tiny, tmp_path, monkeypatch):
    """Every panel names what tta_logits predicts for the mode asked, and the title says so."""
    real = tta_module.tta_logits

    def class_7_under_flip(model, x, mode):
        logits = real(model, x, mode)
        return torch.eye(10)[[7] * len(x)] if mode == "flip" else logits

    monkeypatch.setattr(tta_module, "tta_logits", class_7_under_flip)
    capture = CaptureFigures(monkeypatch)
    assert main(["show", str(tiny["ckpt"]), "--n", "4", "--device", "cpu", "--tta", "flip",
                 "--out", str(tmp_path / "grid.png")]) == 0
    (fig,) = capture.figures
    assert "with tta flip" in fig._suptitle.get_text()
    classes = tiny["arrays"].classes
    assert {ax.get_title().split("\n")[0] for ax in titled_panels(fig)} == {f"Pred: {classes[7]}"}
