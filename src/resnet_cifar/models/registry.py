"""The model registry: one name -> one builder, so tests, the CLI and torch.hub share one list.

Every model is a named function registered with ``@register_model(architecture)`` (timm's way):
the architecture's arguments without a default are what the name fixes, those with one are the
model's options, and the docstring's first paragraph is the model's description.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from resnet_cifar.errors import UserError


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Callable[..., nn.Module]  # the named function: builder(pretrained=False, **kwargs)
    description: str
    architecture: Callable[..., nn.Module]  # what build_model calls; its signature: the options
    # option -> {old value: the value it now means}: names a model option has had before
    aliases: dict[str, dict[object, object]] = field(default_factory=dict)


_REGISTRY: dict[str, ModelEntry] = {}


class UnknownModelError(UserError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def register_model(architecture: Callable[..., nn.Module],
                   aliases: dict[str, dict[object, object]] | None = None) -> Callable:
    """Register ``fn(pretrained=False, **kwargs)`` under its name, as building ``architecture``.
    ``aliases``: old option values that still work, e.g. {"gru_variant": {"seed": "original"}}."""

    def register(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = fn.__name__
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        first_paragraph = inspect.cleandoc(fn.__doc__ or name).split("\n\n")[0]
        description = " ".join(first_paragraph.split()).rstrip(".")
        _REGISTRY[name] = ModelEntry(name, fn, description, architecture, aliases or {})
        fn.__doc__ = hub_doc(name)  # what torch.hub.help() shows
        return fn

    return register


def hub_doc(name: str) -> str:
    options = ", ".join(f"{k}={v!r}" for k, v in model_options(name).items())
    return (
        f"{get_model_entry(name).description}.\n\n"
        f"Options: num_classes=10{', ' + options if options else ''}. "
        "pretrained=True: the model's default published weights, pretrained='TAG': those "
        "(`resnet-cifar weights` lists them); a model with none raises, naming what there is."
    )


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
    """The keyword options a model accepts, with their defaults (num_classes excluded)."""
    parameters = inspect.signature(get_model_entry(name).architecture).parameters.values()
    return {p.name: p.default for p in parameters
            if p.name != "num_classes" and p.default is not inspect.Parameter.empty}


def resolve_options(name: str, kwargs: dict) -> dict:
    """``kwargs`` with each old option value replaced by today's (the model's aliases): the one
    place an old value is translated. An unregistered name keeps its options as given."""
    entry = _REGISTRY.get(name)
    if entry is None:
        return dict(kwargs)
    return {k: entry.aliases.get(k, {}).get(v, v) if isinstance(v, str) else v
            for k, v in kwargs.items()}


def check_options(name: str, kwargs: dict) -> None:
    """Refuse options the model does not take, listing the ones it does."""
    valid = model_options(name)
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise UserError(
            f"model {name!r} takes no option {', '.join(unknown)}; "
            f"its options are: {', '.join(valid) or 'none'}"
        )


def check_choice(option: str, value: object, choices: tuple) -> None:
    """ValueError (a UserError from ``create_model``) naming the option and its choices."""
    if value not in choices:
        raise ValueError(f"{option} must be one of {choices}, got {value!r}")


def create_model(name: str, num_classes: int | None = None, pretrained: bool | str = False,
                 **kwargs) -> nn.Module:
    """Build a registered model. Unknown names and options raise a UserError listing valid ones.

    ``pretrained``: True (the default weights), a tag or a weights folder; the model is then built
    with the weights' options and class count (any given must agree) and carries
    ``pretrained_cfg``. timm's ``"arch.tag"`` names a tag."""
    if name not in _REGISTRY and "." in name:
        name, tag = name.split(".", 1)[0], name
        if pretrained not in (True, False, None, tag):
            raise UserError(f"{tag!r} names its weights; pretrained={pretrained!r} names others")
        pretrained = tag if pretrained else False
    entry = get_model_entry(name)
    check_options(name, kwargs)
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    return entry.builder(pretrained=pretrained, **kwargs)


def build_model(name: str, pretrained: bool | str = False, **kwargs) -> nn.Module:
    """``name``'s architecture built with ``kwargs``, with the weights ``pretrained`` names loaded
    (see create_model)."""
    entry = get_model_entry(name)
    # what the name fixes (depth) and num_classes are the architecture's, not options to check
    fixed = set(inspect.signature(entry.architecture).parameters) - set(model_options(name))
    check_options(name, {k: v for k, v in kwargs.items() if k not in fixed})
    kwargs = resolve_options(name, kwargs)
    if pretrained is False or pretrained is None:
        return construct(entry, kwargs)
    from resnet_cifar.models.pretrained import get_weights, load_weights, pretrained_cfg

    weights = get_weights(pretrained, name)
    trained = {**resolve_options(name, weights.model_kwargs), "num_classes": weights.num_classes}
    clash = [k for k, v in kwargs.items() if k in trained and trained[k] != v]
    if clash:
        raise UserError(
            f"weights {weights.tag!r} were trained with "
            f"{', '.join(f'{k}={trained[k]!r}' for k in clash)}, not "
            f"{', '.join(f'{k}={kwargs[k]!r}' for k in clash)}; leave those out, or build with "
            "pretrained=False")
    model = construct(entry, {**trained, **kwargs})
    model.load_state_dict(load_weights(weights))  # strict: every key and shape
    model.pretrained_cfg = pretrained_cfg(weights)
    return model


def construct(entry: ModelEntry, kwargs: dict) -> nn.Module:
    try:
        return entry.architecture(**kwargs)
    except ValueError as err:  # a bad option value, e.g. shortcut="C"
        raise UserError(f"model {entry.name!r}: {err}") from None
