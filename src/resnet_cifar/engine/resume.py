"""Temporary alias of engine.state while the merge lands (removed before the refactor ends)."""
import sys

from resnet_cifar.engine import state as _module

sys.modules[__name__] = _module
