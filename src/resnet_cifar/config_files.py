"""Config files: the shipped recipes (configs/<name>.toml), a TOML file read with one-line
errors, and a run's config written back as TOML."""

from __future__ import annotations

import dataclasses
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from resnet_cifar.errors import ConfigError


def recipe_path(name: str) -> Path:
    """The shipped recipe ``name`` (configs/<name>.toml), or a ConfigError listing them."""
    folder = resources.files("resnet_cifar") / "configs"
    path = Path(str(folder / f"{name}.toml"))
    if not path.is_file():
        known = sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))
        raise ConfigError(f"unknown recipe {name!r}; shipped recipes: {', '.join(known)}")
    return path


def read_toml(path: str | Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except IsADirectoryError:
        hint = " (the run's config is its config.toml)" if (Path(path) / "config.toml").is_file() \
            else ""
        raise ConfigError(f"config file {path} is a directory; give a .toml file{hint}") from None
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror or err}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not text; give a TOML file") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {path} is not valid TOML: {err}") from None


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def to_toml(config: Any) -> str:
    """The config as TOML that ``build_config(recipe=None, config_file=...)`` reads back.

    ``None`` has no TOML spelling, so unset optional fields are left out (they default to None).
    """
    values = dataclasses.asdict(config)
    tables = {k: values.pop(k) for k in ("data", "model_kwargs")}
    lines = [f"{k} = {_toml_value(v)}" for k, v in values.items() if v is not None]
    for table, content in tables.items():
        lines += ["", f"[{table}]"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in content.items() if v is not None]
    return "\n".join(lines) + "\n"
