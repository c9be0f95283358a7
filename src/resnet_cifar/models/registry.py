"""The model registry: one name -> one builder, so tests, the CLI and torch.hub share one list."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from resnet_cifar.errors import UserError


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Callable[..., nn.Module]
    description: str


_REGISTRY: dict[str, ModelEntry] = {}


class UnknownModelError(UserError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def register_model(name: str, builder: Callable[..., nn.Module], description: str) -> None:
    """Add ``builder(num_classes=10, **kwargs)`` under ``name``; a name may be registered once."""
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is already registered")
    _REGISTRY[name] = ModelEntry(name, builder, description)


def list_models() -> list[str]:
    """Every registered name, in registration order (plain ResNets first)."""
    return list(_REGISTRY)


def get_model_entry(name: str) -> ModelEntry:
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, _REGISTRY, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UnknownModelError(
            f"unknown model {name!r}{hint}; valid models: {', '.join(_REGISTRY)}"
        ) from None


def model_options(name: str) -> dict[str, object]:
    """The keyword options a model's builder accepts, with their defaults (num_classes excluded)."""
    signature = inspect.signature(get_model_entry(name).builder)
    return {
        p.name: p.default
        for p in signature.parameters.values()
        if p.name != "num_classes" and p.default is not inspect.Parameter.empty
    }


def check_options(name: str, kwargs: dict) -> None:
    """Refuse options the model's builder does not take, listing the ones it does."""
    valid = model_options(name)
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise UserError(
            f"model {name!r} takes no option {', '.join(unknown)}; "
            f"its options are: {', '.join(valid) or 'none'}"
        )


def check_choice(option: str, value: object, choices: tuple) -> None:
    """A builder's check of one option's value: ValueError (a UserError from ``create_model``)
    naming the option and its choices."""
    if value not in choices:
        raise ValueError(f"{option} must be one of {choices}, got {value!r}")


def create_model(name: str, num_classes: int | None = None, pretrained: bool | str = False,
                 **kwargs) -> nn.Module:
    """Build a registered model. Unknown names and options raise a UserError listing valid ones.

    ``pretrained``: True for the model's default published weights, or a tag (see
    ``resnet-cifar weights``); the model is then built with the options and class count the
    weights were trained with, and any option or ``num_classes`` given must agree with them."""
    entry = get_model_entry(name)
    check_options(name, kwargs)
    if pretrained is False or pretrained is None:
        return build(name, entry, 10 if num_classes is None else num_classes, kwargs)
    from resnet_cifar.models.pretrained import get_weights, load_weights

    weights = get_weights(pretrained, name)
    options = weights.model_kwargs
    trained = {**options, "num_classes": weights.num_classes}
    given = {**kwargs, **({} if num_classes is None else {"num_classes": num_classes})}
    clash = [k for k, v in given.items() if k in trained and trained[k] != v]
    if clash:
        raise UserError(
            f"weights {weights.tag!r} were trained with "
            f"{', '.join(f'{k}={trained[k]!r}' for k in clash)}, not "
            f"{', '.join(f'{k}={given[k]!r}' for k in clash)}; leave those out, or build with "
            "pretrained=False")
    model = build(name, entry, weights.num_classes, {**options, **kwargs})
    model.load_state_dict(load_weights(weights))  # strict: every key and shape
    return model


def build(name: str, entry: ModelEntry, num_classes: int, kwargs: dict) -> nn.Module:
    try:
        return entry.builder(num_classes=num_classes, **kwargs)
    except ValueError as err:  # a bad option value, e.g. shortcut="C"
        raise UserError(f"model {name!r}: {err}") from None
