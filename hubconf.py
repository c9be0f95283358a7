"""torch.hub entry points: the named model functions (``resnet20``, ...), re-exported.

    model = torch.hub.load("<owner>/resnet-cifar", "resnet20")                 # from GitHub
    model = torch.hub.load("path/to/checkout", "resnet20", source="local")     # from a checkout
    model = torch.hub.load(..., "regnet20_convlstm", num_classes=100, hidden_ratio=0.5)

Each entry point is the model's own function (src/resnet_cifar/models/), which takes
``pretrained`` and the model's options (``num_classes`` and those listed by
``resnet-cifar models``). ``pretrained=True`` loads the model's default published weights and
``pretrained="TAG"`` those of a tag (``resnet-cifar weights`` lists them, with the data they were
trained and evaluated on); a model with no published weights raises instead of returning random
weights. Load your own checkpoint with ``resnet_cifar.load_checkpoint(path).build_model()``.
"""

# Underscored names: torch.hub.list() offers every public callable here as an entry point.
import importlib as _importlib
import sys as _sys
from pathlib import Path as _Path

dependencies = ["torch"]

_SRC = _Path(__file__).resolve().parent / "src"


def _import_models():
    """The checkout's own package when it has one (torch.hub loads this repository at a chosen
    ref: an installed copy may be another version), else an installed resnet_cifar."""
    added = "resnet_cifar" not in _sys.modules and (_SRC / "resnet_cifar").is_dir()
    if added:
        _sys.path.insert(0, str(_SRC))
    try:
        return _importlib.import_module("resnet_cifar.models")
    finally:
        if added:  # the package is imported now; leave sys.path as we found it
            _sys.path.remove(str(_SRC))


_models = _import_models()

# Every registered name, its named function as it is: the registry is the only list of models.
globals().update({_name: _models.get_model_entry(_name).builder
                  for _name in _models.list_models()})
