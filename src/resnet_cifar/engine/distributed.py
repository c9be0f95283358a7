"""Temporary alias of engine.runtime while the merge lands (removed before the refactor ends)."""
import sys

from resnet_cifar.engine import runtime as _module

sys.modules[__name__] = _module
