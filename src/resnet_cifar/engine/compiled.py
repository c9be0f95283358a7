"""A checkpoint's model compiled for inference: BatchNorm folded, weights frozen, shapes static.

    model = compile_for_inference(context.model, batch=CPU_EVAL_CHUNK)
    logits = model(images)  # any number of images; same logits as context.model within ~1e-4

What `eval --compile` and the benchmark's compiled variant run. Three steps, each a measured
lever on the 2-core CPU (docs/benchmarks.md):
- BatchNorm folded into the convolutions (models/fold.py): one op fewer per conv.
- torch.compile with inductor's ``freezing``: the weights become constants, so oneDNN packs them
  once and fuses conv + bias + add + ReLU. The compiled copy does not follow later changes to the
  weights, which is why training's own validation never uses it: it is for fixed weights only.
- Single-threaded kernels on CPU, where evaluate_model runs one piece per thread (its chunk
  pool): kernels generated for two threads would run four on two cores there.
- One static input shape: every call is cut into pieces of ``batch`` images and the last one
  padded with zeros (eval-mode BatchNorm is folded away, so images do not see each other), so
  one graph serves every batch and the first call compiles it, timed (``compile_seconds``).
"""

from __future__ import annotations

import time

import torch
from torch import Tensor, nn

from resnet_cifar.errors import ConfigError
from resnet_cifar.models.fold import fold_batchnorm


class CompiledInference(nn.Module):
    """``compiled`` (a torch.compile'd module) fed fixed-size pieces of ``batch`` images."""

    def __init__(self, compiled: nn.Module, batch: int, compile_seconds: float,
                 threads: int | None):
        super().__init__()
        self.compiled = compiled
        self.batch = batch
        self.compile_seconds = compile_seconds  # the first call: tracing and code generation
        self.threads = threads  # CPU: the intra-op thread count it was compiled for

    def forward(self, x: Tensor) -> Tensor:
        # torch.compile guards on the thread count: another one would compile a second graph
        before = torch.get_num_threads()
        if self.threads is not None and before != self.threads:
            torch.set_num_threads(self.threads)
        try:
            outputs = []
            with torch.inference_mode():  # compiled under it: its guards expect it
                for piece in x.split(self.batch):
                    n = len(piece)
                    if n < self.batch:  # pad: one static shape, never a second compilation
                        padding = piece.new_zeros((self.batch - n, *piece.shape[1:]))
                        piece = torch.cat([piece, padding])
                    elif not piece.is_inference():  # the guards also check this: a copy made
                        piece = piece.clone()  # here is an inference tensor, as compiled
                    outputs.append(self.compiled(piece.contiguous())[:n])
            return torch.cat(outputs)
        finally:
            if torch.get_num_threads() != before:
                torch.set_num_threads(before)


def compile_for_inference(model: nn.Module, batch: int,
                          example: Tensor | None = None) -> CompiledInference:
    """A folded, frozen, compiled copy of ``model`` (left untouched) for inputs like ``example``
    (default: CIFAR-shaped, on the model's device), compiled now on a zero batch of ``batch``
    images. A failed compilation (no C++ compiler, an unsupported device) is a ConfigError that
    says to run without compiling."""
    device = next(model.parameters()).device
    folded = fold_batchnorm(model)
    if example is None:
        example = torch.zeros(1, 3, 32, 32, device=device)
    compiled = torch.compile(folded, options={"freezing": True}, dynamic=False)
    threads = torch.get_num_threads()
    start = time.perf_counter()
    try:
        with torch.inference_mode():
            if device.type == "cpu":  # kernels are generated for the thread count at hand
                torch.set_num_threads(1)
            compiled(example.new_zeros((batch, *example.shape[1:])))
    except Exception as err:  # dynamo wraps every backend failure; its first line says which
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"torch.compile could not compile {type(model).__name__} on {device} "
                          f"({first[:200]}); run without `compile`") from None
    finally:
        torch.set_num_threads(threads)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return CompiledInference(compiled, batch, time.perf_counter() - start,
                             1 if device.type == "cpu" else None)
