"""Temporary alias of engine.inference while the merge lands (removed before the refactor ends)."""
import sys

from resnet_cifar.engine import inference as _module

sys.modules[__name__] = _module
