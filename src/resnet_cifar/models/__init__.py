"""Every model, behind one registry: create_model(name), list_models(). Importing this package
registers the plain ResNets, the original repository's recurrent ResNets and Xu et al.'s RegNets."""

from resnet_cifar.models import recurrent, regnet, resnet  # noqa: F401  (register the models)
from resnet_cifar.models.complexity import count_macs, count_parameters, model_complexity
from resnet_cifar.models.registry import (
    UnknownModelError,
    build_model,
    create_model,
    get_model_entry,
    list_models,
    model_options,
    register_model,
    resolve_options,
)

__all__ = ["UnknownModelError", "build_model", "count_macs", "count_parameters", "create_model",
           "get_model_entry", "list_models", "model_complexity", "model_options", "register_model",
           "resolve_options"]
