"""`eval --compile` (engine/inference.py): BatchNorm folded, weights frozen, one static shape.
Inductor on CPU needs a C++ compiler: the compiling tests skip without one (conftest marks them
heavy); any other compile failure fails them."""

from __future__ import annotations

import shutil

import pytest
import torch
from data_fixtures import make_cifar10_python_dir

from resnet_cifar.cli import main
from resnet_cifar.engine import inference as compiled_module
from resnet_cifar.engine.inference import compile_for_inference
from resnet_cifar.errors import ConfigError
from resnet_cifar.models import create_model

needs_compiler = pytest.mark.skipif(
    not any(shutil.which(cxx) for cxx in ("c++", "g++", "clang++")),
    reason="torch.compile (inductor) needs a C++ compiler on CPU; none is installed")


def trained_like(name: str = "resnet20") -> torch.nn.Module:
    """A model whose BatchNorm statistics are not the identity, so folding has work to do."""
    torch.manual_seed(0)
    model = create_model(name).eval()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    return model


@needs_compiler
def test_compiled_logits_equal_eager_for_any_batch_with_one_compilation():
    """70 images through pieces of 32: two full pieces and one padded with zeros. The logits
    are the eager ones within float rounding, and the padded piece compiles nothing new."""
    from torch._dynamo.utils import counters

    model = trained_like()
    x = torch.randn(70, 3, 32, 32)
    counters.clear()
    fast = compile_for_inference(model, batch=32)
    with torch.inference_mode():
        expected = model(x)
        got = fast(x)
        again = fast(x[:5])
    assert got.shape == expected.shape == (70, 10)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(again, expected[:5], rtol=1e-4, atol=1e-4)
    assert counters["stats"]["unique_graphs"] == 1
    assert fast.compile_seconds > 0
    assert any(type(m) is torch.nn.BatchNorm2d for m in model.modules())  # model untouched


def test_a_failed_compilation_is_one_line_that_says_to_run_without(monkeypatch):
    def broken(module, **_):
        def run(*_args):
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found\n  long trace")
        return run

    monkeypatch.setattr(compiled_module.torch, "compile", broken)
    with pytest.raises(ConfigError) as info:
        compile_for_inference(trained_like(), batch=8)
    message = str(info.value)
    assert "\n" not in message and "No working C++ compiler found" in message
    assert message.endswith("run without `compile` (--compile)")


@needs_compiler
def test_eval_compile_counts_what_eager_eval_counts(tmp_path, capsys):
    data = make_cifar10_python_dir(tmp_path / "data", n_train_per_class=8, n_test_per_class=7,
                                   seed=0, learnable=True)
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(run), "--epochs", "1",
                 "--batch-size", "16", "--threads", "1", "--device", "cpu"]) == 0
    capsys.readouterr()
    assert main(["eval", str(run / "last.pt"), "--threads", "1"]) == 0
    eager = capsys.readouterr().out.splitlines()
    assert main(["eval", str(run / "last.pt"), "--threads", "1", "--compile"]) == 0
    fast = capsys.readouterr().out.splitlines()
    # "test accuracy x% (c/70), mean loss L": the counts equal, the loss within rounding
    accuracy, loss = fast[0].split(", mean loss ")
    assert accuracy == eager[0].split(", mean loss ")[0]
    assert float(loss) == pytest.approx(float(eager[0].split(", mean loss ")[1]), rel=1e-5)
    assert fast[1].startswith("compiled (BatchNorm folded, weights frozen) in ")
    assert fast[2:] == eager[1:]  # data line, per-class accuracy, confusion matrix
