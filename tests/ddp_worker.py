"""Entry point for the DDP tests: `torchrun ... tests/ddp_worker.py train ...`.

It registers a BatchNorm-free model, because per-rank batch statistics (SyncBatchNorm needs a GPU)
would make a 2-rank run differ from a 1-rank run with the doubled batch for a reason that has
nothing to do with the data-parallel machinery under test. FAIL_RANK=r makes rank r raise in its
first epoch, to test that one failing rank stops the job. SAVE_DUE_RANK=r makes the mid-epoch
save of `save_every` due on rank r alone. ABORT_ONCE=path makes rank 1 abort natively after its
run, the first time (path marks it).
"""

import os
import sys

import torch.nn.functional as F
from torch import nn

from resnet_cifar.cli import main
from resnet_cifar.engine import runtime
from resnet_cifar.engine import train as train_module
from resnet_cifar.models import register_model
from resnet_cifar.models.registry import build_model


class TinyNet(nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.linear = nn.Linear(16, num_classes)

    def forward(self, x):
        x = F.relu(self.conv2(F.relu(self.conv1(x))))
        return self.linear(F.adaptive_avg_pool2d(x, 1).flatten(1))


@register_model(TinyNet)
def tiny_cnn(pretrained=False, **kwargs) -> TinyNet:
    """test-only: two convs, no BatchNorm"""
    return build_model("tiny_cnn", pretrained, **kwargs)

if os.environ.get("FAIL_RANK") is not None and os.environ.get("RANK") == os.environ["FAIL_RANK"]:

    def fail(self):
        raise RuntimeError("injected failure")

    train_module.Trainer.train_epoch = fail

if os.environ.get("SAVE_DUE_RANK") is not None:
    # `save_every` is due on one rank only (its clock ran ahead): every rank must still save
    # (the save gathers every rank's RNG state), at the same step, or the job hangs
    train_module.Trainer.save_due = lambda self: os.environ["RANK"] == os.environ["SAVE_DUE_RANK"]
    save_mid_epoch = train_module.Trainer.save_mid_epoch

    def saving(self, stats):
        # one write of one line: both ranks share the stderr pipe, and print() writes the text
        # and its newline apart, so the lines of two ranks could interleave
        step = self.step_in_epoch
        os.write(2, f"rank {os.environ['RANK']} saved mid-epoch at step {step}\n".encode())
        save_mid_epoch(self, stats)

    train_module.Trainer.save_mid_epoch = saving

if os.environ.get("ABORT_ONCE") and os.environ.get("RANK") == "1" and not os.path.exists(
    os.environ["ABORT_ONCE"]
):
    # the native abort at a rank's exit that tests/test_distributed.py's launch retries, on the
    # first launch only (the file at ABORT_ONCE marks it)
    open(os.environ["ABORT_ONCE"], "w").close()

    def abort_at_exit(status):
        os.write(2, b"terminate called without an active exception\n")
        os.abort()

    runtime.leave_rank = abort_at_exit

sys.exit(main(sys.argv[1:]))
