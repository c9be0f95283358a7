"""What the user asked to be written: show, plot, report, export and eval --plot outputs are
atomic (complete or absent), get the mode of every other file, are in the format their extension
names, and a write that cannot happen is one line naming the file, the cause and the fix.

Tests run as root, which ignores permission bits: an unwritable folder is /sys (no file can be
created in sysfs, even by root), and a full disk is a writer that raises ENOSPC halfway through.
"""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from data_fixtures import make_cifar10_python_dir
from matplotlib.figure import Figure
from PIL import Image
from test_predict import calibrated_model, save_our_checkpoint

import resnet_cifar.export
from resnet_cifar.cli import main
from resnet_cifar.data import load_cifar
from resnet_cifar.export import export_checkpoint
from resnet_cifar.predict import Predictor, read_image

# the first bytes of each format
MAGIC = {".png": b"\x89PNG\r\n\x1a\n", ".jpg": b"\xff\xd8\xff", ".jpeg": b"\xff\xd8\xff",
         ".pdf": b"%PDF-", ".svg": b"<?xml"}
FULL_DISK = OSError(errno.ENOSPC, "No space left on device")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny data set, a checkpoint that records it, and a 1-epoch run trained on it."""
    root = tmp_path_factory.mktemp("outputs")
    data = make_cifar10_python_dir(root / "data", n_train_per_class=2, n_test_per_class=2,
                                   seed=2, learnable=True)
    arrays = load_cifar(data, progress=False)
    ckpt = save_our_checkpoint(calibrated_model("resnet20"), "resnet20", root / "ckpt" / "last.pt",
                               mean=arrays.mean, std=arrays.std, classes=arrays.classes,
                               data_path=str(data))
    run = root / "run"
    assert main(["train", "--data", str(data), "--out", str(run), "--epochs", "1",
                 "--batch-size", "16", "--eval-batch-size", "64", "--threads", "1",
                 "--device", "cpu"]) == 0
    return {"data": data, "ckpt": ckpt, "run": run}


def command(tiny, name: str, out: Path, *extra: str) -> list[str]:
    """The command line of ``name`` writing to ``out``."""
    data = ["--data", str(tiny["data"])]
    head = {
        "show": ["show", str(tiny["ckpt"]), "--n", "4", "--device", "cpu", *data, "--out"],
        "plot": ["plot", str(tiny["run"]), "--out"],
        "report": ["report", str(tiny["run"]), "--no-eval", "--out"],
        "export": ["export", str(tiny["ckpt"]), "--format", "torchscript", *data, "--out"],
        "eval": ["eval", str(tiny["ckpt"]), "--device", "cpu", "--plot", *data, "--out-dir"],
    }[name]
    return [*head, str(out), *extra]


FILE_NAME = {"show": "x.png", "plot": "x.png", "report": "x.html", "export": "x.torchscript.pt",
             "eval": "plots"}
WHAT = {"show": "show output", "plot": "plot output", "report": "report",
        "export": "export output", "eval": "eval plot"}
FLAG = {"eval": "`out_dir` (--out-dir)"}  # how an error names the setting; else OUT
OUT = "`out` (--out)"
COMMANDS = list(FILE_NAME)


def one_error_line(capsys) -> str:
    """The single line a user error prints (after any progress the command printed)."""
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("error: "), err
    assert not any("Traceback" in line for line in err)
    return err[-1]


def leftovers(folder: Path) -> list[str]:
    """Temporary files of an atomic write left behind."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.fixture
def unwritable() -> Path:
    """A folder in which even root cannot create a file."""
    try:
        fd, name = tempfile.mkstemp(dir="/sys")
    except OSError:
        return Path("/sys")
    os.close(fd)
    os.unlink(name)
    pytest.skip("/sys is writable here")


@pytest.fixture
def full_disk_savefig(monkeypatch):
    """Figure.savefig writes half a file, then the disk is full."""
    def savefig(self, fname, *args, **kwargs):
        if hasattr(fname, "write"):
            fname.write(b"\x89PNG half")
        else:
            Path(fname).write_bytes(b"\x89PNG half")
        raise OSError(FULL_DISK.errno, FULL_DISK.strerror)

    monkeypatch.setattr(Figure, "savefig", savefig)


# --------------------------------------------------------------------------- one-line errors


@pytest.mark.parametrize("name", COMMANDS)
def test_writing_to_a_read_only_folder_is_a_one_line_error(tiny, unwritable, capsys, name):
    assert main(command(tiny, name, unwritable if name == "eval" else
                        unwritable / FILE_NAME[name])) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"error: cannot write {WHAT[name]} {unwritable}"), line
    assert line.endswith(f"permission denied; choose a writable {FLAG.get(name, OUT)}"), line


@pytest.mark.parametrize("name", ["show", "plot", "report", "export"])
def test_out_an_existing_folder_is_a_one_line_error(tiny, tmp_path, capsys, name):
    assert main(command(tiny, name, tmp_path)) == 2
    assert one_error_line(capsys) == (f"error: cannot write {WHAT[name]} {tmp_path}: it is a "
                                      "folder; give `out` (--out) a file name")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", COMMANDS)
def test_out_under_a_regular_file_is_a_one_line_error(tiny, tmp_path, capsys, name):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("not a folder")
    out = blocker / "sub" / FILE_NAME[name]
    assert main(command(tiny, name, out)) == 2
    line = one_error_line(capsys)
    assert f"{blocker} is a file, not a folder; choose another {FLAG.get(name, OUT)}" in line


def test_eval_plot_out_dir_a_file_is_a_one_line_error(tiny, tmp_path, capsys):
    target = tmp_path / "plots"
    target.write_text("a file")
    assert main(command(tiny, "eval", target)) == 2
    assert one_error_line(capsys) == (f"error: cannot write eval plots into {target}: it is a "
                                      "file, not a folder; choose another `out_dir` (--out-dir)")


def test_show_refuses_an_impossible_out_before_reading_any_data(tiny, tmp_path, capsys,
                                                                 monkeypatch):
    def no_data(*args, **kwargs):
        raise AssertionError("the data was loaded before --out was checked")

    monkeypatch.setattr("resnet_cifar.viz.grid.sample_predictions", no_data)
    assert main(command(tiny, "show", tmp_path)) == 2
    assert "it is a folder" in one_error_line(capsys)


def test_export_refuses_an_impossible_out_before_decoding_the_parity_images(tiny, tmp_path,
                                                                            capsys, monkeypatch):
    def no_data(*args, **kwargs):
        raise AssertionError("the parity images were decoded before --out was checked")

    monkeypatch.setattr("resnet_cifar.export.load_parity_images", no_data)
    assert main(command(tiny, "export", tmp_path)) == 2
    assert "it is a folder" in one_error_line(capsys)


# --------------------------------------------------------------------------- atomic writes


@pytest.mark.parametrize("name,file", [("show", "x.png"), ("plot", "x.png"),
                                       ("eval", "confusion.png")])
def test_a_figure_on_a_full_disk_keeps_the_previous_file(tiny, tmp_path, capsys,
                                                          full_disk_savefig, name, file):
    previous = tmp_path / file
    previous.write_bytes(b"the previous figure")
    assert main(command(tiny, name, tmp_path if name == "eval" else previous)) == 2
    line = one_error_line(capsys)
    assert line == (f"error: cannot write {WHAT[name]} {previous}: no space left on device; "
                    f"free some space or choose another {FLAG.get(name, OUT)}")
    assert previous.read_bytes() == b"the previous figure"
    assert leftovers(tmp_path) == []


def test_report_on_a_full_disk_keeps_the_previous_report(tiny, tmp_path, capsys, monkeypatch):
    out = tmp_path / "report.html"
    out.write_text("the previous report")

    def full(src, dst):
        raise OSError(FULL_DISK.errno, FULL_DISK.strerror, str(src))

    monkeypatch.setattr(os, "replace", full)
    assert main(command(tiny, "report", out)) == 2
    assert one_error_line(capsys) == (f"error: cannot write report {out}: no space left on "
                                      "device; free some space or choose another `out` (--out)")
    assert out.read_text() == "the previous report"
    assert leftovers(tmp_path) == []


def test_export_to_a_full_disk_is_a_one_line_error_and_leaves_no_file(tiny, tmp_path, capsys,
                                                                      monkeypatch):
    def half_written(module, path, *args, **kwargs):
        Path(path).write_bytes(b"PK half an archive")
        raise FULL_DISK

    monkeypatch.setattr(resnet_cifar.export, "export_module", half_written)
    out = tmp_path / "m.torchscript.pt"
    assert main(command(tiny, "export", out)) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"error: cannot write export output {out}: "), line
    assert line.endswith("; free some space or choose another `out` (--out)"), line
    assert list(tmp_path.iterdir()) == []


def test_torch_save_on_a_full_disk_becomes_an_oserror(tmp_path, monkeypatch):
    """torch.save to a file reports a full disk as a RuntimeError in C++'s words; atomic_save
    serializes in memory and writes from Python, so the OS's reason reaches the user."""
    import resnet_cifar.atomic
    from resnet_cifar.engine.checkpoint import atomic_save

    class FullDisk(io.FileIO):
        def write(self, data):
            raise FULL_DISK

    monkeypatch.setattr(resnet_cifar.atomic, "open", lambda path, *a, **k: FullDisk(path, "wb"),
                        raising=False)
    with pytest.raises(OSError) as caught:
        atomic_save({"x": torch.zeros(3)}, tmp_path / "last.pt")
    assert caught.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []


def test_exported_file_has_the_mode_of_every_other_file(tiny, tmp_path):
    old = os.umask(0o022)
    try:
        plain = tmp_path / "plain"
        plain.write_text("")
        out = tmp_path / "m.pt2"
        export_checkpoint(tiny["ckpt"], out, "pt2", verify=False)
    finally:
        os.umask(old)
    assert oct(out.stat().st_mode & 0o777) == oct(plain.stat().st_mode & 0o777) == "0o644"


# --------------------------------------------------------------------------- figure formats


@pytest.mark.parametrize("suffix", [".jpg", ".jpeg", ".pdf", ".svg"])
def test_show_out_jpg_writes_jpeg_bytes(tiny, tmp_path, suffix):
    out = tmp_path / f"grid{suffix}"
    assert main(command(tiny, "show", out)) == 0
    assert out.read_bytes().startswith(MAGIC[suffix])
    if suffix in (".jpg", ".jpeg"):
        with Image.open(out) as image:
            assert image.format == "JPEG"


@pytest.mark.parametrize("suffix", [".jpg", ".pdf", ".svg"])
def test_plot_out_writes_the_format_of_its_extension(tiny, tmp_path, suffix):
    out = tmp_path / f"curves{suffix}"
    assert main(command(tiny, "plot", out)) == 0
    assert out.read_bytes().startswith(MAGIC[suffix])


@pytest.mark.parametrize("name,file", [("show", "grid.gif"), ("plot", "curves.tiff"),
                                       ("plot", "curves")])
def test_an_unsupported_figure_extension_is_a_one_line_error_listing_the_supported(
        tiny, tmp_path, capsys, name, file):
    out = tmp_path / file
    assert main(command(tiny, name, out)) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"error: cannot write {WHAT[name]} {out}: ")
    assert line.endswith("; end `out` (--out) in one of .png, .jpg, .jpeg, .pdf, .svg"), line
    assert not out.exists()


def test_show_of_a_vector_figure_says_it_cannot_open_a_window(tiny, tmp_path, capsys):
    out = tmp_path / "curves.pdf"
    assert main(command(tiny, "plot", out, "--show")) == 2
    assert one_error_line(capsys) == (f"error: `show` (--show) opens .png and .jpg figures only, "
                                      f"not .pdf; the figure was written to {out}: open it with "
                                      "a viewer")
    assert out.read_bytes().startswith(MAGIC[".pdf"])


# --------------------------------------------------------------------------- predict --exact


@pytest.fixture(scope="module")
def big_jpeg(tmp_path_factory) -> Path:
    """A 1000x750 photo-like JPEG: smooth gradients with noise, so scales decode differently."""
    h, w = 750, 1000
    y, x = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(0)
    rgb = np.stack([x * 255 // w, y * 255 // h, (x + y) * 255 // (w + h)], axis=-1)
    rgb = np.clip(rgb + rng.integers(-40, 41, rgb.shape), 0, 255).astype(np.uint8)
    path = tmp_path_factory.mktemp("jpeg") / "photo.jpg"
    Image.fromarray(rgb).save(path, quality=90)
    return path


def resized(image: Image.Image) -> np.ndarray:
    small = image.convert("RGB").resize((32, 32), Image.Resampling.BICUBIC)
    return np.array(small).transpose(2, 0, 1)


def test_exact_mode_equals_a_full_decode_and_resize(big_jpeg):
    with Image.open(big_jpeg) as image:
        image.load()
        expected = resized(image)
    pixels, info = read_image(big_jpeg, exact=True)
    assert np.array_equal(pixels, expected)
    assert info.size == (1000, 750)


def test_default_mode_decodes_large_jpegs_in_draft_mode(big_jpeg):
    with Image.open(big_jpeg) as image:
        image.draft("RGB", (32, 32))
        assert image.size == (125, 94)  # 1/8 scale: the largest that keeps both sides >= 32
        draft = resized(image)
    pixels, info = read_image(big_jpeg, exact=False)
    assert np.array_equal(pixels, draft)
    assert np.array_equal(read_image(big_jpeg)[0], draft)  # the default
    assert not np.array_equal(pixels, read_image(big_jpeg, exact=True)[0])
    assert info.size == (1000, 750)


def test_predict_exact_gives_the_probabilities_of_a_full_decode(tiny, big_jpeg, capsys):
    assert main(["predict", str(tiny["ckpt"]), str(big_jpeg), "--exact", "--json",
                 "--topk", "10", "--device", "cpu"]) == 0
    printed = json.loads(capsys.readouterr().out)["predictions"][0]["topk"]
    with Image.open(big_jpeg) as image:
        image.load()
        expected = Predictor(tiny["ckpt"], device="cpu").predict(
            torch.from_numpy(resized(image)), topk=10)[0]
    assert [(c["index"], c["prob"]) for c in printed] == [
        (c.index, c.prob) for c in expected.topk]
    exact = Predictor(tiny["ckpt"], device="cpu", exact=True).predict(big_jpeg, topk=10)[0]
    assert exact.topk == expected.topk


# --------------------------------------------------------------------------- default places


@pytest.mark.parametrize("name", ["eval", "show", "plot", "plot-several"])
def test_a_default_output_lands_where_the_help_says_and_is_named(tiny, tmp_path, monkeypatch,
                                                                 capsys, name):
    """Beside the checkpoint (eval --plot, show), in the run (plot), in the current folder
    (plot of several runs): never into the folder that holds the runs, where each run's plots
    would overwrite the last one's. Every file written is named on stderr."""
    from refusals import snapshot

    runs = tmp_path / "runs"
    run = Path(shutil.copytree(tiny["run"], runs / "a"))
    shutil.copytree(tiny["run"], runs / "b")
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    data = ["--data", str(tiny["data"]), "--device", "cpu"]
    argv, files = {
        "eval": (["eval", run / "last.pt", "--plot", *data],
                 [run / "confusion.png", run / "per_class.png"]),
        "show": (["show", run / "last.pt", "--n", "4", *data], [run / "predictions.png"]),
        "plot": (["plot", run], [run / "curves.png"]),
        "plot-several": (["plot", run, runs / "b"], [here / "curves.png"]),
    }[name]
    expected = {str(file.relative_to(tmp_path)) for file in files}
    before = snapshot(tmp_path)
    capsys.readouterr()
    assert main([str(word) for word in argv]) == 0
    after = snapshot(tmp_path)
    files_written = {path for path, (size, _) in after.items()
                     if size >= 0 and after[path] != before.get(path)}  # -1: a folder
    assert files_written == expected
    named = {str(Path(line.removeprefix("wrote ")).resolve().relative_to(tmp_path))
             for line in capsys.readouterr().err.splitlines() if line.startswith("wrote ")}
    assert named == expected
