"""The one table from what the library calls a setting to the flag the command line spells it.

The library names a setting by its config key in backticks (`lr`, `data.val_split`); while a
command runs, the CLI renders each as its flag (--lr, --val-split), so what the user reads names
what they can type. Config keys come from the config dataclasses (a field's flag is derived from
its name, unless RENAMED says otherwise); the rest are parameters of library functions that a
message names and that only a command exposes (`n` of show, `topk` of predict...).
"""

from __future__ import annotations

import dataclasses

from resnet_cifar.config import setting_fields

# config keys whose flag is not their name's
RENAMED = {"data.path": "--data"}


def field_flag(key: str, f: dataclasses.Field) -> str | None:
    """The flag of config key ``key`` (field ``f``): --lr-scaling for
    lr_scaling unless RENAMED says otherwise; None when the field has no flag of its own."""
    if not f.metadata["flag"]:
        return None
    return RENAMED.get(key) or "--" + f.name.replace("_", "-")


# Settings that are not config fields: model options, and parameters of library functions that
# messages name (`split` of evaluate, `n` of the prediction grid...). A test checks that each flag
# exists on the parser and that every setting a library message names is in FLAG_OF.
PARAMETER_FLAGS = {
    "model_kwargs.shortcut": "--shortcut",
    "model_kwargs": "--model-opt",
    "recipe": "--recipe",
    "config": "--config",
    "resume": "--resume",
    "overwrite": "--overwrite",
    "split": "--split",
    "out_dir": "--out-dir",
    "plot": "--plot",
    "show": "--show",
    "n": "--n",
    "topk": "--topk",
    "exact": "--exact",
    "format": "--format",
    "opset": "--opset",
    "include_normalization": "--include-normalization",
    "baseline": "--baseline",
    "allow_mixed_data": "--allow-mixed-data",
    "steps": "--steps",
    "repeats": "--repeats",
    "warmup": "--warmup",
    "workers": "--workers",
    "eval_images": "--eval-images",
    "evaluate": "--no-eval",
    "replace": "--replace",
}

FLAG_OF: dict[str, str] = {
    **{key: flag for key, f in setting_fields().items() if (flag := field_flag(key, f))},
    **PARAMETER_FLAGS,
}


def flag_of(key: str) -> str | None:
    """The flag that sets ``key`` (None: no flag; the message keeps the key as written)."""
    return FLAG_OF.get(key)
