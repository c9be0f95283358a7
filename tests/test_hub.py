"""torch.hub: hubconf.py exposes exactly the registered models, loaded from the local checkout."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from resnet_cifar.models import count_parameters, create_model, list_models

REPO = Path(__file__).resolve().parents[1]


def hub_load(name: str, **kwargs):
    return torch.hub.load(str(REPO), name, source="local", **kwargs)


def load_hubconf():
    spec = importlib.util.spec_from_file_location("hubconf_under_test", REPO / "hubconf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def same_architecture(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    """Same class, same state_dict keys and shapes."""
    def shapes(model):
        return {k: tuple(v.shape) for k, v in model.state_dict().items()}

    return type(a) is type(b) and shapes(a) == shapes(b)


def test_entry_points_are_exactly_the_registered_models():
    hubconf = load_hubconf()
    # what torch.hub.list() offers: every public callable of hubconf
    entry_points = {n for n in dir(hubconf) if callable(getattr(hubconf, n)) and n[0] != "_"}
    assert entry_points == set(list_models())
    assert hubconf.dependencies == ["torch"]
    assert "pretrained=True: the model's default published weights" in hubconf.resnet20.__doc__


def test_resnet20_from_the_local_checkout_matches_create_model():
    model = hub_load("resnet20")
    reference = create_model("resnet20")
    assert same_architecture(model, reference)
    assert count_parameters(model) == count_parameters(reference) == 272_474
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("name", list_models())
def test_every_registered_name_loads_through_torch_hub(name):
    assert same_architecture(hub_load(name), create_model(name))


def test_options_are_passed_through():
    model = hub_load("resnet20", num_classes=100, shortcut="A")
    assert same_architecture(model, create_model("resnet20", num_classes=100, shortcut="A"))
    assert count_parameters(model) < count_parameters(create_model("resnet20", num_classes=100))


def test_pretrained_loads_the_published_weights_and_a_model_without_raises():
    """pretrained=True: the default tag's file, byte for byte the weights; a model with no
    published weights raises, naming the tags there are, instead of returning random weights."""
    from resnet_cifar.errors import UserError
    from resnet_cifar.models.pretrained import get_weights, list_weights, load_weights

    entry = get_weights(True, "resnet20")
    model = hub_load("resnet20", pretrained=True)
    expected = load_weights(entry)
    assert all(torch.equal(v, expected[k]) for k, v in model.state_dict().items())
    unpublished = next(n for n in list_models() if not list_weights(n))
    with pytest.raises(UserError, match=f"no published weights for '{unpublished}'") as info:
        hub_load(unpublished, pretrained=True)
    assert entry.tag in str(info.value)


def test_hubconf_finds_the_package_in_src_without_an_install(tmp_path):
    """A fresh interpreter where resnet_cifar is not importable (the editable install's path entry
    removed) still loads hubconf, from the checkout's src/, and gets its sys.path back as it was."""
    src = str(REPO / "src")
    probe = "\n".join([
        "import importlib.util, os, sys",
        f"sys.path = [p for p in sys.path if os.path.realpath(p or '.') != {src!r}]",
        "try:",
        "    import resnet_cifar",
        "    print('importable')",
        "except ImportError:",
        "    print('not importable')",
        "before = list(sys.path)",
        f"spec = importlib.util.spec_from_file_location('hubconf', {str(REPO / 'hubconf.py')!r})",
        "hub = importlib.util.module_from_spec(spec)",
        "spec.loader.exec_module(hub)",
        "import resnet_cifar",
        "print(resnet_cifar.__file__)",
        "print(sys.path == before, hub.resnet20().linear.out_features)",
    ])
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "not importable", str(REPO / "src" / "resnet_cifar" / "__init__.py"), "True 10"]


def test_the_old_tag_loads_the_same_weights_through_torch_hub():
    """resnet20.seed150_jpeg, the former name of resnet20.original150_jpeg, still loads."""
    old = hub_load("resnet20", pretrained="resnet20.seed150_jpeg").state_dict()
    new = hub_load("resnet20", pretrained="resnet20.original150_jpeg").state_dict()
    assert old.keys() == new.keys() and all(torch.equal(v, new[k]) for k, v in old.items())


def test_each_entry_point_is_the_models_own_named_function():
    from resnet_cifar.models import get_model_entry
    from resnet_cifar.models.resnet import resnet20

    hubconf = load_hubconf()
    assert hubconf.resnet20 is resnet20
    assert all(getattr(hubconf, name) is get_model_entry(name).builder for name in list_models())
