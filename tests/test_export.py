"""export: every registered model in every format, with a dynamic batch, checked against eager.

Each exported file is loaded back with the runtime's own API (onnxruntime, torch.jit.load,
torch.export.load), not through resnet_cifar, and run at batches 1 and 3 (it was traced at 2).
"""

from __future__ import annotations

import copy
import importlib.util
import json
import sys

import numpy as np
import pytest
import torch
from conftest import DEPTH_20
from data_fixtures import make_cifar10_python_dir
from test_predict import calibrated_model, one_thread, save_our_checkpoint  # noqa: F401

from resnet_cifar.cli import main
from resnet_cifar.data import CIFAR10_MEAN, CIFAR10_STD, load_cifar
from resnet_cifar.errors import UserError
from resnet_cifar.export import (
    ExportReport,
    ParityError,
    export_checkpoint,
    load_parity_images,
    read_export_metadata,
)
from resnet_cifar.predict import NormalizedModel

# the runtime's own loaders are used on purpose; torch.jit.load is deprecated upstream
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")

HAS_ORT = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))
needs_ort = pytest.mark.skipif(not HAS_ORT, reason="onnx/onnxruntime not installed "
                                                   "(pip install 'resnet-cifar[onnx]')")
FORMATS = [pytest.param("onnx", marks=needs_ort), "torchscript", "pt2"]
SUFFIX = {"onnx": ".onnx", "torchscript": ".torchscript.pt", "pt2": ".pt2"}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """name -> (calibrated eval-mode model, its plain state_dict file), built on first use."""
    root = tmp_path_factory.mktemp("export")
    cache: dict[str, tuple[torch.nn.Module, object]] = {}

    def get(name: str):
        if name not in cache:
            model = calibrated_model(name, seed=len(cache))
            path = root / f"{name}.pth"
            torch.save(model.state_dict(), path)
            cache[name] = (model, path)
        return cache[name]

    return get


def load_runtime(path, fmt: str):
    """Load ``path`` with the runtime's own API (no resnet_cifar code): a tensor -> logits."""
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        assert isinstance(session.get_inputs()[0].shape[0], str)  # a symbolic batch dimension
        return lambda x: torch.from_numpy(session.run(None, {"images": x.numpy()})[0])
    module = torch.jit.load(str(path)) if fmt == "torchscript" else torch.export.load(
        str(path)).module()

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return module(x)

    return run


def assert_close_to_eager(got: torch.Tensor, model: torch.nn.Module, x: torch.Tensor,
                          expected: torch.Tensor) -> None:
    """|got - expected| (expected = model(x)) within 1e-4 (times the logits' scale above 1), or
    within 4x the model's own float32 error against a float64 copy (see export.TOLERANCE)."""
    assert got.shape == expected.shape
    diff = float((got - expected).abs().max())
    bound = 1e-4 * max(1.0, float(expected.abs().max()))
    if diff >= bound:  # a deep untrained recurrent net: judge against its own float32 noise
        with torch.no_grad():
            exact = copy.deepcopy(model).double()(x.double())
        bound = max(bound, 4 * float((expected.double() - exact).abs().max()))
    assert diff <= bound, f"max |diff| {diff:.2e} > {bound:.2e}"


# every block and cell (the depth-20 models), and one deep model; the other depths
# repeat the same blocks, at up to 30 s each here
ROUND_TRIP = DEPTH_20 + ["resnet56"]


@pytest.mark.parametrize("name", ROUND_TRIP)
def test_every_model_round_trips_in_every_format_with_a_dynamic_batch(models, tmp_path, name):
    """Traced at batch 2, run at batches 1 and 3 by the runtime's own loader."""
    model, path = models(name)
    generator = torch.Generator().manual_seed(1)
    inputs = [torch.randn(batch, 3, 32, 32, generator=generator) for batch in (1, 3)]
    with torch.no_grad():
        expected = [model(x) for x in inputs]
    for fmt in (["onnx"] if HAS_ORT else []) + ["torchscript", "pt2"]:
        out = tmp_path / f"{name}{SUFFIX[fmt]}"
        report = export_checkpoint(path, out, fmt, model=name, verify=False)
        assert report.path == out and out.is_file() and not report.checks
        run = load_runtime(out, fmt)
        for x, y in zip(inputs, expected, strict=True):
            assert_close_to_eager(run(x), model, x, y)


def normalize_then_model(model, pixels: torch.Tensor, mean, std) -> torch.Tensor:
    """The plain way: (x / 255 - mean) / std in float64, then the model in float32."""
    x = (pixels.double() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(
        1, 3, 1, 1)
    with torch.no_grad():
        return model(x.float())


# a recurrent model in every format, and the "half" preset on a plain one in one format
@pytest.mark.parametrize("name, fmt, normalize", [
    pytest.param("resnet20_convrnn", "onnx", None, marks=needs_ort),
    ("resnet20_convrnn", "torchscript", None),
    ("resnet20_convrnn", "pt2", None),
    ("resnet20", "torchscript", "half"),
])
def test_included_normalization_equals_normalize_then_model(models, tmp_path, name, fmt,
                                                            normalize):
    model, path = models(name)
    out = tmp_path / f"{name}-norm{SUFFIX[fmt]}"
    export_checkpoint(path, out, fmt, include_normalization=True, model=name,
                      normalize=normalize, verify=False)
    # a foreign checkpoint's default normalization is CIFAR-10's; "half" is 0.5 everywhere
    mean, std = ((0.5,) * 3, (0.5,) * 3) if normalize == "half" else (CIFAR10_MEAN, CIFAR10_STD)
    pixels = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(2))
    expected = normalize_then_model(model, pixels, mean, std)
    run = load_runtime(out, fmt)  # takes the uint8 pixels themselves
    for batch in (1, 3):
        assert float((run(pixels[:batch]) - expected[:batch]).abs().max()) < 1e-4
    meta = read_export_metadata(out)
    assert meta["includes_normalization"] is True and "uint8" in meta["input"]
    assert meta["mean"] == pytest.approx(mean) and meta["std"] == pytest.approx(std)
    assert meta["model_name"] == name and len(meta["classes"]) == 10


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A last.pt whose config records a (tiny) data set."""
    root = tmp_path_factory.mktemp("run")
    data = make_cifar10_python_dir(root / "data", n_train_per_class=2, n_test_per_class=3,
                                   seed=4, learnable=True)
    arrays = load_cifar(data, progress=False)
    ckpt = save_our_checkpoint(calibrated_model("resnet20"), "resnet20",
                               root / "run" / "last.pt", mean=arrays.mean, std=arrays.std,
                               classes=arrays.classes, data_path=str(data))
    return ckpt, data, arrays


@pytest.mark.parametrize("fmt", FORMATS)
def test_verify_reports_random_and_real_image_parity(tiny_run, tmp_path, fmt):
    ckpt, _, arrays = tiny_run
    from resnet_cifar.engine.checkpoint import load_checkpoint

    loaded = load_checkpoint(ckpt)
    images, source = load_parity_images(loaded)  # the data set its config records: 30 images
    assert len(images) == 30 and "test images" in source
    few, _ = load_parity_images(loaded, n=7)  # evenly spaced over the (class-ordered) split
    assert len(few) == 7 and np.array_equal(few[-1], arrays.test_images[-1])
    report = export_checkpoint(ckpt, tmp_path / f"m{SUFFIX[fmt]}", fmt, images=images,
                               images_source=source)
    assert report.passed
    assert [c.batch for c in report.checks] == [1, 3, 30]
    assert all(c.top1_agree == c.batch for c in report.checks)
    assert report.max_abs_diff < 1e-4
    text = "\n".join(report.lines())
    assert "random, batch 3" in text and "30 test images of" in text and "max |diff|" in text
    meta = read_export_metadata(report.path)
    assert meta["classes"] == arrays.classes and meta["includes_normalization"] is False
    assert meta["mean"] == pytest.approx(arrays.mean)


def test_a_mismatching_artifact_raises_parity_error(models, tmp_path, monkeypatch):
    from resnet_cifar import export

    real = export.load_exported

    def off_by_a_little(*args, **kwargs):
        run = real(*args, **kwargs)
        return lambda x: run(x) + 1e-2

    monkeypatch.setattr(export, "load_exported", off_by_a_little)
    _, path = models("resnet20")
    with pytest.raises(ParityError) as info:
        export_checkpoint(path, tmp_path / "m.torchscript.pt", "torchscript", model="resnet20")
    assert isinstance(info.value.report, ExportReport) and not info.value.report.passed
    assert "FAILED" in "\n".join(info.value.report.lines())


def test_cli_export_uses_the_recorded_data_and_prints_the_figures(tiny_run, capsys):
    ckpt, _, _ = tiny_run
    assert main(["export", str(ckpt), "--format", "torchscript"]) == 0
    out = capsys.readouterr().out
    assert (ckpt.parent / "last.torchscript.pt").is_file()
    assert "random, batch 1" in out and "30 test images of" in out and "max |diff|" in out


@needs_ort
def test_cli_export_onnx_without_data_says_random_only(models, tmp_path, capsys):
    _, path = models("resnet20")
    out = tmp_path / "r.onnx"
    assert main(["export", str(path), "--model", "resnet20", "--format", "onnx", "--out", str(out),
                 "--opset", "13", "--include-normalization"]) == 0
    text = capsys.readouterr().out
    assert "random inputs only" in text and "opset 13" in text and "uint8" in text
    import onnx

    proto = onnx.load(str(out))
    assert proto.opset_import[0].version == 13
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert json.loads({p.key: p.value for p in proto.metadata_props}["resnet_cifar.json"])


def test_onnx_without_the_extra_is_a_user_error_naming_the_install(models, tmp_path,
                                                                   monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    _, path = models("resnet20")
    with pytest.raises(UserError, match=r"pip install 'resnet-cifar\[onnx\]'"):
        export_checkpoint(path, tmp_path / "m.onnx", "onnx", model="resnet20")
    argv = ["export", str(path), "--model", "resnet20", "--out", str(tmp_path / "m.onnx")]
    assert main(argv) == 2
    assert "resnet-cifar[onnx]" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("out, given, written", [
    (None, None, "onnx"), ("m.onnx", None, "onnx"), ("m.ts", None, "torchscript"),
    ("m.torchscript.pt", None, "torchscript"), ("m.pt2", None, "pt2"),
    ("m.pt", "torchscript", "torchscript"), ("m.bin", "pt2", "pt2"), (None, "pt2", "pt2"),
])
def test_the_format_follows_the_output_name_when_not_given(out, given, written):
    from resnet_cifar.export import resolve_format

    assert resolve_format(out, given) == written


def test_an_output_name_that_says_another_format_is_refused_before_writing(models, tmp_path,
                                                                          capsys):
    _, path = models("resnet20")
    for out, flags in ((tmp_path / "m.onnx", ["--format", "torchscript"]),
                       (tmp_path / "m.txt", [])):
        assert main(["export", str(path), "--model", "resnet20", "--out", str(out), *flags]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err
        assert ("named as onnx" if flags else "cannot tell the format") in err
        assert not out.exists()


@pytest.mark.parametrize("kwargs, needle", [
    ({"format": "tflite"}, "unknown export format"),
    ({"format": "onnx", "opset": 5}, "opset"),
    ({"format": "onnx", "onnx_exporter": "magic"}, "unknown ONNX exporter"),
])
def test_bad_options_are_user_errors(models, tmp_path, kwargs, needle):
    if kwargs.get("opset") and not HAS_ORT:
        pytest.skip("onnx not installed")
    _, path = models("resnet20")
    with pytest.raises(UserError, match=needle):
        export_checkpoint(path, tmp_path / "m.out", model="resnet20", **kwargs)


@pytest.mark.skipif(importlib.util.find_spec("onnxscript") is None or not HAS_ORT,
                    reason="the dynamo ONNX exporter needs onnxscript")
def test_dynamo_onnx_exporter(models, tmp_path):
    model, path = models("resnet20_convrnn")
    out = tmp_path / "d.onnx"
    report = export_checkpoint(path, out, "onnx", model="resnet20_convrnn",
                               onnx_exporter="dynamo")
    assert report.passed and "dynamo" in report.exporter
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert_close_to_eager(load_runtime(out, "onnx")(x), model, x, model(x))


def test_normalized_model_is_the_eval_loaders_arithmetic():
    from resnet_cifar.data import DeviceLoader

    pixels = np.random.default_rng(0).integers(0, 256, (4, 3, 32, 32), dtype=np.uint8)
    mean, std = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
    (x, _), = list(DeviceLoader(pixels, np.zeros(4, np.int64), batch_size=4, train=False,
                                mean=mean, std=std))
    wrapper = NormalizedModel(torch.nn.Identity(), mean, std)
    assert torch.equal(wrapper(torch.from_numpy(pixels)), x)


def batch_norm_ops(path) -> int:
    """BatchNorm calls in a TorchScript file's graph, read with torch.jit.load."""
    return str(torch.jit.load(str(path)).inlined_graph).count("aten::batch_norm")


@pytest.mark.parametrize("include_normalization", [False, True])
def test_fold_bn_writes_the_folded_graph_and_checks_it_against_the_unfolded_model(
        models, tmp_path, monkeypatch, include_normalization):
    from resnet_cifar import export

    references = []
    real_checks = export.parity_checks

    def spy(reference, *args, **kwargs):
        references.append(reference)
        return real_checks(reference, *args, **kwargs)

    monkeypatch.setattr(export, "parity_checks", spy)
    model, path = models("resnet20")
    plain = export_checkpoint(path, tmp_path / "plain.torchscript.pt", "torchscript",
                              include_normalization, model="resnet20")
    folded = export_checkpoint(path, tmp_path / "folded.torchscript.pt", "torchscript",
                               include_normalization, model="resnet20", fold_bn=True)
    assert batch_norm_ops(plain.path) == 21 and batch_norm_ops(folded.path) == 0
    assert plain.folded is None and "batchnorm" not in plain.lines()[0]
    assert folded.folded == 21
    assert folded.lines()[0].endswith("(batchnorm folded into 21 convolutions)")
    assert folded.passed and folded.max_abs_diff < 1e-4
    assert read_export_metadata(folded.path)["batchnorm_folded_into_convolutions"] == 21
    assert "batchnorm_folded_into_convolutions" not in read_export_metadata(plain.path)
    # parity is judged against the eager model as trained, BatchNorm and all
    assert all(any(isinstance(m, torch.nn.BatchNorm2d) for m in r.modules())
               for r in references)
    x = torch.randn(3, 3, 32, 32)
    if include_normalization:
        x = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
        model = NormalizedModel(model, CIFAR10_MEAN, CIFAR10_STD).eval()
    with torch.no_grad():
        assert_close_to_eager(load_runtime(folded.path, "torchscript")(x), model, x, model(x))


def test_cli_export_fold_bn_says_what_it_wrote(models, tmp_path, capsys):
    _, path = models("resnet20")
    out = tmp_path / "r.pt2"
    assert main(["export", str(path), "--model", "resnet20", "--format", "pt2", "--out", str(out),
                 "--fold-bn"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith(f"wrote {out}") and "(batchnorm folded into 21 convolutions)" in first
