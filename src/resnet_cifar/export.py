"""Export a checkpoint to ONNX, TorchScript or a torch.export program ("images" -> "logits", a
dynamic batch), embedding ``resnet_cifar.json``, and check it against eager (export_check.py).
ONNX defaults to the TorchScript-based exporter: it needs only the onnx extra, and is faster."""

from __future__ import annotations

import importlib
import io
import json
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from resnet_cifar.atomic import atomic_path, check_target, explain_write_errors
from resnet_cifar.engine.checkpoint import Checkpoint
from resnet_cifar.engine.inference import InferenceContext
from resnet_cifar.errors import UserError
from resnet_cifar.export_check import (
    NOISE_FACTOR,
    PARITY_IMAGES,  # noqa: F401 (API)
    TOLERANCE,
    ParityCheck,
    load_parity_images,  # noqa: F401 (API)
    parity_checks,
)
from resnet_cifar.models.fold import fold_batchnorm
from resnet_cifar.predict import IMAGE_SIZE, NormalizedModel, class_names

FORMATS = {"onnx": ".onnx", "torchscript": ".torchscript.pt", "pt2": ".pt2"}
# What an output's name says it holds: a TorchScript file is often named .pt or .ts.
FORMAT_OF_SUFFIX = {".onnx": "onnx", ".pt2": "pt2", ".pt": "torchscript", ".ts": "torchscript"}
ONNX_EXPORTERS = ("legacy", "dynamo")
DEFAULT_OPSET = 17  # legacy exporter: opset 17 runs on every onnxruntime of the last years
LEGACY_OPSETS = range(9, 21)  # what the TorchScript-based exporter supports
DYNAMO_MIN_OPSET = 18
EXAMPLE_BATCH = 2  # the batch traced; torch.export specializes a dimension of size 1
METADATA_NAME = "resnet_cifar.json"
ONNX_INSTALL = "pip install 'resnet-cifar[onnx]'"
INPUT_NAME, OUTPUT_NAME = "images", "logits"
EXPORT_OUTPUT = "export output"  # what a write error calls the file


@dataclass
class ExportReport:
    path: Path
    format: str
    exporter: str  # how it was made, e.g. "torch.onnx.export (TorchScript-based), opset 17"
    include_normalization: bool
    input_contract: str
    tolerance: float = TOLERANCE
    checks: list[ParityCheck] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    folded: int | None = None  # convolutions BatchNorm was folded into; None: the graph as trained

    @property
    def max_abs_diff(self) -> float:
        return max((c.max_abs_diff for c in self.checks), default=float("nan"))

    @property
    def passed(self) -> bool:  # at least one check, all within the tolerance
        return bool(self.checks) and all(c.passed(self.tolerance) for c in self.checks)

    def lines(self) -> list[str]:
        folded = "" if self.folded is None else \
            f" (batchnorm folded into {self.folded} convolutions)"
        out = [f"wrote {self.path} ({self.format}: {self.exporter}){folded}",
               f"input: {self.input_contract}"]
        if self.checks:
            out.append(f"parity with eager PyTorch: max |logit diff| < {self.tolerance:g} x "
                       f"max(1, max |logit|), or <= {NOISE_FACTOR:g} x PyTorch's own float32 "
                       "error (float32 vs float64)")
            width = max(len(c.inputs) for c in self.checks)
            for c in self.checks:
                noise = "" if c.float32_noise is None else f"float32 error {c.float32_noise:.1e}, "
                out.append(f"  {c.inputs:<{width}}  max |diff| {c.max_abs_diff:.2e}  "
                           f"({noise}max |logit| {c.max_abs_logit:.3g})  "
                           f"top-1 agrees {c.top1_agree}/{c.batch}"
                           + ("" if c.passed(self.tolerance) else "  FAILED"))
        return out + [f"note: {note}" for note in self.notes]


class ParityError(RuntimeError):
    """The exported artifact's outputs differ from eager PyTorch beyond the tolerance."""

    def __init__(self, report: ExportReport):
        self.report = report
        super().__init__(f"{report.path}: the exported model differs from PyTorch by up to "
                         f"{report.max_abs_diff:.2e}, beyond the tolerance; the file was written "
                         "but should not be used")


# --------------------------------------------------------------------------- exporters


def _unknown_format(format: str) -> UserError:
    return UserError(f"unknown export format {format!r}: choose one of {', '.join(FORMATS)}")


def require_onnx(exporter: str = "legacy") -> None:
    """Raise a UserError naming the install command when the ONNX packages are missing."""
    missing = []
    for name in ["onnx", "onnxruntime"] + (["onnxscript"] if exporter == "dynamo" else []):
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        extra = " and pip install onnxscript" if "onnxscript" in missing else ""
        raise UserError(f"ONNX export needs {', '.join(missing)}, which is not installed: "
                        f"{ONNX_INSTALL}{extra}")


def _export_onnx(module: nn.Module, example: torch.Tensor, path: Path, opset: int | None,
                 exporter: str) -> str:
    names = {"input_names": [INPUT_NAME], "output_names": [OUTPUT_NAME]}
    if exporter == "legacy":
        opset = DEFAULT_OPSET if opset is None else opset
        if opset not in LEGACY_OPSETS:
            raise UserError(f"`opset` (--opset) {opset}: the ONNX exporter supports opsets "
                            f"{LEGACY_OPSETS.start}-{LEGACY_OPSETS.stop - 1}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # upstream deprecation notice
            # harmless: the strided slices of option-A shortcuts are not constant-folded
            warnings.filterwarnings("ignore", "Constant folding", UserWarning)
            torch.onnx.export(module, (example,), str(path), dynamo=False, opset_version=opset,
                              dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                              **names)
        return f"torch.onnx.export (TorchScript-based), opset {opset}"
    if opset is not None and opset < DYNAMO_MIN_OPSET:
        raise UserError(f"`opset` (--opset) {opset}: the dynamo ONNX exporter needs opset >= "
                        f"{DYNAMO_MIN_OPSET}")
    program = torch.onnx.export(module, (example,), dynamo=True, opset_version=opset,
                                dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
                                verbose=False, **names)
    program.save(str(path), external_data=False)
    import onnx

    used = next(o.version for o in onnx.load(str(path)).opset_import if o.domain in ("", "ai.onnx"))
    return f"torch.onnx.export (dynamo), opset {used}"


def export_module(module: nn.Module, path: str | os.PathLike, format: str, *,
                  metadata: dict[str, Any], example: torch.Tensor, opset: int | None = None,
                  onnx_exporter: str = "legacy") -> str:
    """Write ``module`` (in eval mode, on the CPU) to ``path``; returns how it was exported.
    ``example`` fixes the input dtype; the batch dimension stays dynamic."""
    path = Path(path)
    extra = {METADATA_NAME: json.dumps(metadata)}
    if format == "onnx":
        how = _export_onnx(module, example, path, opset, onnx_exporter)
        import onnx

        proto = onnx.load(str(path))
        onnx.helper.set_model_props(proto, extra)
        onnx.checker.check_model(proto)
        onnx.save(proto, str(path))
        return how
    # torch's C++ zip writer aborts the whole process when a write fails (a full disk):
    # serialize into memory, then write the bytes, so that a failed write is an OSError
    buffer = io.BytesIO()
    if format == "torchscript":
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # upstream deprecation notice
            traced = torch.jit.trace(module, (example,), check_trace=False)  # we check parity
            torch.jit.save(traced, buffer, _extra_files=extra)
        how = "torch.jit.trace"
    elif format == "pt2":
        batch = torch.export.Dim("batch", min=1)
        program = torch.export.export(module, (example,), dynamic_shapes=({0: batch},))
        torch.export.save(program, buffer, extra_files=extra)
        how = "torch.export.export with a dynamic batch Dim"
    else:
        raise _unknown_format(format)
    path.write_bytes(buffer.getvalue())
    return how


def _jit_load(path: Path, **kwargs) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.load(str(path), map_location="cpu", **kwargs)


def load_exported(path: str | os.PathLike, format: str | None = None
                  ) -> Callable[[torch.Tensor], torch.Tensor]:
    """An exported file as a function CPU tensor -> CPU logits; format from the suffix if None."""
    path = Path(path)
    format = format or FORMAT_OF_SUFFIX.get(path.suffix.lower(), "pt2")
    if format == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda x: torch.from_numpy(
            session.run([OUTPUT_NAME], {INPUT_NAME: x.cpu().numpy()})[0])
    if format == "torchscript":
        module = _jit_load(path)
    elif format == "pt2":
        module = torch.export.load(str(path)).module()
    else:
        raise _unknown_format(format)

    def run_torch(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return module(x)

    return run_torch


def read_export_metadata(path: str | os.PathLike, format: str | None = None) -> dict[str, Any]:
    """The ``resnet_cifar.json`` an exported file carries."""
    path = Path(path)
    format = format or FORMAT_OF_SUFFIX.get(path.suffix.lower(), "pt2")
    if format == "onnx":
        import onnx

        props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
        return json.loads(props[METADATA_NAME])
    extra = {METADATA_NAME: ""}
    if format == "torchscript":
        _jit_load(path, _extra_files=extra)
    else:
        torch.export.load(str(path), extra_files=extra)
    return json.loads(extra[METADATA_NAME])


# --------------------------------------------------------------------------- the whole export


def resolve_format(out: str | os.PathLike | None, format: str | None) -> str:
    """The format to write: ``format`` as given, else the one ``out``'s suffix names, else ONNX.
    A name that says another format than ``format`` is refused."""
    named = FORMAT_OF_SUFFIX.get(Path(out).suffix.lower()) if out is not None else None
    if format is None:
        if out is not None and named is None:
            raise UserError(f"cannot tell the format from the name {out}: pass `format` "
                            "(--format) onnx, torchscript or pt2, or end it in .onnx, .pt "
                            "(TorchScript) or .pt2")
        return named or "onnx"
    if named is not None and named != format:
        raise UserError(f"{out} is named as {named} but `format` (--format) {format} writes "
                        f"{format}: name it {Path(out).stem}{FORMATS[format]}, or leave `format` "
                        f"(--format) out to write {named}")
    return format


def default_output(checkpoint_path: str | os.PathLike, format: str) -> Path:
    """best.pt -> best.onnx / best.torchscript.pt / best.pt2, beside the checkpoint."""
    path = Path(checkpoint_path)
    return path.with_name(path.stem + FORMATS[format])


def export_metadata(ckpt: Checkpoint, mean, std, include_normalization: bool,
                    input_contract: str) -> dict[str, Any]:
    from resnet_cifar.version import __version__

    return {"format": "resnet_cifar.export", "package_version": __version__,
            "model_name": ckpt.model_name, "model_kwargs": ckpt.model_kwargs,
            "num_classes": ckpt.num_classes, "classes": class_names(ckpt),
            "mean": list(mean), "std": list(std),
            "includes_normalization": include_normalization, "input": input_contract,
            "output": f"float32 logits (N, {ckpt.num_classes})"}


def export_checkpoint(checkpoint: str | os.PathLike | Checkpoint,
                      out: str | os.PathLike | None = None, format: str = "onnx",
                      include_normalization: bool = False, *, model: str | None = None,
                      model_kwargs: dict[str, Any] | None = None, normalize: str | None = None,
                      opset: int | None = None, onnx_exporter: str = "legacy",
                      images: np.ndarray | None = None, images_source: str = "real images",
                      verify: bool = True, tolerance: float = TOLERANCE,
                      fold_bn: bool = False) -> ExportReport:
    """Export a checkpoint (to ``out``, default beside it) and (``verify``) check the file against
    eager PyTorch, on random and, given uint8 ``images`` (load_parity_images), real images.
    ``fold_bn`` folds BatchNorm into the exported graph; parity is checked against the unfolded
    model. Raises ParityError when a check exceeds ``tolerance``."""
    if format not in FORMATS:
        raise _unknown_format(format)
    if onnx_exporter not in ONNX_EXPORTERS:
        raise UserError(f"unknown ONNX exporter {onnx_exporter!r}: choose one of "
                        f"{', '.join(ONNX_EXPORTERS)}")
    if format == "onnx":
        require_onnx(onnx_exporter)
    context = InferenceContext.build(checkpoint, dataset=False, model=model,
                                     model_kwargs=model_kwargs, normalize=normalize, device="cpu")
    ckpt, norm = context.checkpoint, context.normalization
    out = check_target(default_output(ckpt.path, format) if out is None else out, EXPORT_OUTPUT)
    net = context.model  # built only now that out is known to be writable
    wrapper = NormalizedModel(net, normalization=norm).eval()
    reference = wrapper if include_normalization else net  # parity: always the unfolded model
    module, folded = reference, None
    if fold_bn:
        graph = fold_batchnorm(net)
        folded = len(graph.fold_report.folded)
        module = NormalizedModel(graph, normalization=norm).eval() \
            if include_normalization else graph
    example, contract = input_contract(include_normalization, norm.mean, norm.std)
    metadata = export_metadata(ckpt, norm.mean, norm.std, include_normalization, contract)
    if folded is not None:
        metadata["batchnorm_folded_into_convolutions"] = folded
    # the temporary name keeps the suffix: torch.export.save warns about any other than .pt2
    with explain_write_errors(out, EXPORT_OUTPUT), atomic_path(out, f".tmp{out.suffix}") as tmp:
        how = export_module(module, tmp, format, metadata=metadata, example=example, opset=opset,
                            onnx_exporter=onnx_exporter)
    report = ExportReport(out, format, how, include_normalization, contract, tolerance,
                          folded=folded)
    if not verify:
        report.notes.append("parity not checked")
        return report
    report.checks = parity_checks(reference, load_exported(out, format), wrapper=wrapper,
                                  raw_input=include_normalization, images=images,
                                  images_source=images_source, tolerance=tolerance)
    if not report.passed:
        raise ParityError(report)
    return report


def input_contract(include_normalization: bool, mean, std) -> tuple[torch.Tensor, str]:
    """The example input traced (its dtype fixes the graph's) and the input contract in words."""
    shape = (EXAMPLE_BATCH, 3, IMAGE_SIZE, IMAGE_SIZE)
    if include_normalization:
        return (torch.zeros(shape, dtype=torch.uint8),
                "uint8 (N, 3, 32, 32) RGB pixels 0-255; normalized inside the graph")
    triple = [", ".join(f"{v:.4f}" for v in values) for values in (mean, std)]
    return (torch.zeros(shape), f"float32 (N, 3, 32, 32) RGB, normalized as (x / 255 - mean) / "
                                f"std with mean ({triple[0]}), std ({triple[1]})")
