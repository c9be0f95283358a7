"""ResNet-20 and its self-regulated recurrent variants on CIFAR-10.

Importing the package pulls in the models only; training, evaluation and prediction are loaded on
first use, so `import resnet_cifar` stays cheap.
"""

from resnet_cifar.errors import CheckpointError, ConfigError, DataError, UserError
from resnet_cifar.models import create_model, list_models
from resnet_cifar.version import __version__

_LAZY = {
    "train": ("resnet_cifar.engine.train", "train"),
    "evaluate": ("resnet_cifar.engine.evaluate", "evaluate_checkpoint"),
    "load_checkpoint": ("resnet_cifar.engine.checkpoint", "load_checkpoint"),
    "Predictor": ("resnet_cifar.predict", "Predictor"),
    "list_weights": ("resnet_cifar.models.pretrained", "list_weights"),
    "load_pretrained": ("resnet_cifar.models.hub", "load_pretrained"),
    "save_pretrained": ("resnet_cifar.models.hub", "save_pretrained"),
}

__all__ = ["__version__", "CheckpointError", "ConfigError", "DataError", "UserError",
           "create_model", "list_models", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module_name, attr = _LAZY[name]
        return getattr(importlib.import_module(module_name), attr)
    raise AttributeError(f"module 'resnet_cifar' has no attribute {name!r}")
