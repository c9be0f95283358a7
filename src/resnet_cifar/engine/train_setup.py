"""Temporary alias of engine.setup while the merge lands (removed before the refactor ends)."""
import sys

from resnet_cifar.engine import setup as _module

sys.modules[__name__] = _module
