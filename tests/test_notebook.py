"""notebooks/quickstart.ipynb runs from top to bottom, here on tiny synthetic data, and is
committed without outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from data_fixtures import make_cifar10_python_dir

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"


def test_the_committed_notebook_has_no_outputs():
    notebook = json.loads(NOTEBOOK.read_text())
    assert notebook["metadata"]["kernelspec"]["name"] == "python3"
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, cell["source"]


def test_the_quickstart_runs_on_tiny_data(tmp_path, monkeypatch):
    nbclient = pytest.importorskip("nbclient")
    import nbformat

    # 13 images a class: 130, so the `fast` recipe's batch of 128 makes one step an epoch
    data = make_cifar10_python_dir(tmp_path / "data", n_train_per_class=13, n_test_per_class=2,
                                   seed=0, learnable=True)
    monkeypatch.setenv("QUICKSTART_DATA", str(data))  # the kernel inherits the environment
    monkeypatch.setenv("QUICKSTART_EPOCHS", "1")
    monkeypatch.setenv("QUICKSTART_TRAIN_SUBSET", "128")
    monkeypatch.delenv("QUICKSTART_RUNS", raising=False)
    work = tmp_path / "work"
    work.mkdir()
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(work)}}).execute()

    printed = "".join(output.get("text", "") for cell in notebook.cells
                      for output in cell.get("outputs", []) if output.get("name") == "stdout")
    assert "not on Colab" in printed  # the install cell never runs pip here
    runs = work / "runs"
    for model in ("resnet20", "regnet20_convgru"):
        summary = json.loads((runs / model / "summary.json").read_text())
        assert (summary["model"], summary["epochs"], summary["train_images"]) == (model, 1, 128)
        assert (runs / model / "curves.png").is_file()
        assert f"{model}  ({summary['params']:,} params" in printed  # the logger reached the cell
    assert (runs / "predictions.png").is_file() and (runs / "comparison.png").is_file()
    table = (runs / "comparison.md").read_text()
    assert "| resnet20 | resnet20 |" in table and "| regnet20_convgru | regnet20_convgru |" in table
