"""Which config a resumed run trains with: the saved one, with only the overrides that keep it the
same run (more epochs, another device or thread count, the data moved to another path)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from resnet_cifar.config import TrainConfig, from_dict, read_toml, to_dict
from resnet_cifar.engine.checkpoint import load_checkpoint
from resnet_cifar.engine.recipes import flatten
from resnet_cifar.engine.rundir import resume_checkpoint
from resnet_cifar.engine.train_report import cli_command, restart_command
from resnet_cifar.errors import ConfigError

# Config keys a resumed run may change: they do not alter the computation (epochs extends it).
RESUME_OVERRIDABLE = {"epochs", "device", "threads", "tensorboard", "save_every"}


def resume_config(
    path: str | Path, overrides: dict[str, Any] | None
) -> tuple[TrainConfig, Path, dict]:
    """The saved config of a run to resume, with the few overrides that keep it the same run.
    Returns (config, run directory, {"state": training state, "model": state_dict})."""
    path = Path(path)
    ckpt_path = resume_checkpoint(path)
    if path.is_dir() and not ckpt_path.exists() and (path / "config.toml").exists():
        raise ConfigError(
            f"{path} has no last.pt to resume from: the run stopped before its first epoch "
            f"ended. Start it again with: {restart_command(path)}"
        )
    ckpt = load_checkpoint(ckpt_path)
    if ckpt.config is None or "optimizer" not in ckpt.training_state:
        raise ConfigError(f"{ckpt_path} holds weights only, not a training state to resume")
    config = from_dict(ckpt.config)
    check_belongs(config, ckpt_path)
    overrides = dict(overrides or {})
    data_overrides = overrides.pop("data", None) or {}
    check_unchanged(config, overrides, data_overrides, ckpt_path)
    done = int(ckpt.training_state.get("epoch", 0))
    if overrides.get("epochs", done) < done:
        raise ConfigError(
            f"`epochs` {overrides['epochs']} is fewer than the {done} epochs {ckpt_path} has "
            f"already done; give `epochs` {done} or more (or leave it out to keep "
            f"{config.epochs})"
        )
    for key, value in overrides.items():
        setattr(config, key, value)
    if done >= config.epochs and (ckpt_path.parent / "summary.json").exists():
        # finished and summarized: going on would only evaluate and rewrite its outputs again
        raise ConfigError(
            f"{ckpt_path.parent} has finished its {done} epochs already (summary.json is "
            f"there): nothing to resume; to train it longer, add `epochs` N with N > {done}"
        )
    for key, value in data_overrides.items():
        setattr(config.data, key, value)
    recorded = config.data.path
    if recorded and "path" not in data_overrides and not Path(recorded).exists():
        raise ConfigError(
            f"the data this run trains on, {recorded}, is not there any more; resume with "
            f"`data.path` PATH where that data is now (it is checked against the run's "
            f"fingerprint): {cli_command()} train --resume "
            f"{shlex.quote(str(ckpt_path.parent.resolve()))} --data PATH"
        )
    # the raw trained weights: what training continues from (a checkpoint whose weights are the
    # moving average gives those to inference, and keeps the raw ones beside them)
    model = ckpt.raw_state_dict if ckpt.raw_state_dict is not None else ckpt.state_dict
    return config, ckpt_path.parent, {"state": ckpt.training_state, "model": model}


def check_belongs(config: TrainConfig, ckpt_path: Path) -> None:
    """A run directory's checkpoints belong to it: a last.pt copied in from another run would
    continue that run here, over this run's config.toml and metrics."""
    own_file = ckpt_path.parent / "config.toml"
    if not own_file.is_file():
        return
    own = flatten(to_dict(from_dict(read_toml(own_file))))
    saved = flatten(to_dict(config))
    differ = sorted(k for k in own.keys() | saved.keys()
                    if k not in SAME_RUN_ANYWHERE and own.get(k) != saved.get(k))
    if differ:
        raise ConfigError(
            f"{ckpt_path} is not this run's checkpoint: its {', '.join(differ)} differ from "
            f"{own_file}; resume the run it came from in its own folder, or start a new run"
        )


# What may differ between a run's config.toml and its last.pt: what a resume may override, and
# where the data and the cache are (the fingerprint names the data).
SAME_RUN_ANYWHERE = RESUME_OVERRIDABLE | {"data.path", "data.cache_dir", "data.allow_other_data"}


def check_unchanged(config: TrainConfig, overrides: dict[str, Any],
                    data_overrides: dict[str, Any], ckpt_path: Path) -> None:
    """Refuse overrides that would make the resumed run another run."""
    changed = sorted(
        k for k, v in overrides.items()
        if k not in RESUME_OVERRIDABLE and merged(getattr(config, k, None), v) != getattr(
            config, k, None)
    )
    changed += [f"data.{k}" for k in changed_data(config, data_overrides)]
    if changed:
        raise ConfigError(
            f"cannot change {', '.join(changed)} when resuming {ckpt_path}; only "
            f"{', '.join(sorted(RESUME_OVERRIDABLE))} and the data's path may change (start a "
            "new run for the rest)"
        )


def merged(current: Any, value: Any) -> Any:
    """``value`` over ``current``: a table (model_kwargs) is updated key by key, as merge_into
    does, so naming the same options again is no change."""
    return {**current, **value} if isinstance(current, dict) and isinstance(value, dict) else value


def changed_data(config: TrainConfig, flags: dict[str, Any]) -> list[str]:
    """The data options in ``flags`` that would make a resumed run another run. The same value
    is no change. A new path is no change either when the run recorded its data's fingerprint:
    the data there is checked against it when it is loaded (a moved or copied data set)."""
    recorded = config.data
    changed = []
    for key, value in flags.items():
        if key == "cache_dir":  # where decoded arrays are kept: the machine's, not the run's
            continue
        if key == "path":
            same = recorded.path is not None and (
                Path(value).expanduser().resolve() == Path(recorded.path).expanduser().resolve()
            )
            if not same and recorded.fingerprint is None:
                changed.append("path (the run recorded no fingerprint to check new data by)")
            continue
        if value != getattr(recorded, key):
            changed.append(key)
    return changed
