"""The config-shaping command-line flags of `find`, `sweep`, `transfer` and `config`, and their resolution into a
config.

Torch-free (`ticketlab --help` imports it). Every check that needs no data runs here or in the config's own
validation, so a bad value is refused before anything is loaded or written.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from ticketlab.config import DEFAULT_VARIANTS, ExperimentConfig, field_paths, load_config
from ticketlab.errors import ConfigError
from ticketlab.lottery.variants import check_variants, variant_names
from ticketlab.presets import DEFAULT_PRESET, preset
from ticketlab.tasks import TASKS

# flag attribute -> the config field it sets
SHORTCUTS = {
    "task": "task", "trials": "trials", "seed": "seed", "variants": "variants", "levels": "prune.levels",
    "target_remaining": "prune.target_remaining_percent", "rewind": "prune.rewind", "steps": "train.steps",
    "data_dir": "data.data_dir", "kernels": "train.kernels",
}
VALUE_FORMS = {  # how a value is written on the command line, where the type alone does not say
    "model.hidden": "comma-separated widths, e.g. 256,256",
    "train.milestones": "comma-separated steps, e.g. 80ep,120ep",
    "prune.layer_rates": "comma-separated NAME=RATE, e.g. layers.0.weight=0.3,layers.2.weight=0.1",
}
MAX_WORKERS = 256
MAX_POPULATION = 100_000
FILE_DATASETS = ("tiny_shakespeare",)  # datasets that are one file: --data-dir may name the file itself


def add_config_arguments(parser: argparse.ArgumentParser, *, rewind: bool = True, levels: bool = True) -> None:
    """--preset/--config/--task, the shortcuts (--trials, --steps, ...) and --SECTION.FIELD for every field.

    Help texts show the default preset's values, which is what a bare command runs. `levels` False leaves out
    the --levels shortcut (transfer, where --levels is the old spelling of --level; --prune.levels remains); `rewind`
    False leaves out the --rewind shortcut (sweep, where --rewind lists the steps to compare)."""
    shown = _flat_values(preset(DEFAULT_PRESET))
    parser.add_argument("--preset", help=f"starting config (default: {DEFAULT_PRESET}; see `ticketlab presets`)")
    parser.add_argument("--config", help="a .json or .toml config file, or a run directory's config.json "
                        "(replaces the preset: do not combine with --preset)")
    parser.add_argument("--task", help=f"which task trains and evaluates: {', '.join(TASKS)} "
                        f"(task; {DEFAULT_PRESET} preset: {shown['task']})")
    parser.add_argument("--trials", help=f"independent repetitions (different init and data order; "
                        f"{DEFAULT_PRESET} preset: {shown['trials']})")
    parser.add_argument("--seed", help="base seed every random choice derives from")
    parser.add_argument("--variants", help=f"comma-separated subset of: {', '.join(variant_names())} (default: "
                        f"{', '.join(DEFAULT_VARIANTS)})")
    if levels:
        parser.add_argument("--levels", help=f"pruning rounds after the dense network (prune.levels; "
                            f"{DEFAULT_PRESET} preset: {shown['prune.levels']}); not with --target-remaining")
    parser.add_argument("--target-remaining", metavar="PERCENT",
                        help="prune until at most this percent of weights remains, in (0, 100]; decides the number "
                        "of levels, so not with --levels")
    if rewind:
        parser.add_argument("--rewind", help="reset survivors to this step of the dense run: 0it (θ0), 500it, 2ep")
    parser.add_argument("--steps", help=f"training length per level, e.g. 50000it or 40ep (train.steps; "
                        f"{DEFAULT_PRESET} preset: {shown['train.steps']})")
    parser.add_argument("--data-dir", help="local directory holding the dataset files (data.data_dir)")
    parser.add_argument("--kernels", help="masked Linear layers on dense, sparse or auto (per-layer calibrated) "
                        "kernels, or compact: channel-pruned jobs train as the smaller network (auto does too) "
                        f"(train.kernels; {DEFAULT_PRESET} preset: {shown['train.kernels']})")
    for dotted, _, type_text in field_paths():
        if "." in dotted and (rewind or dotted != "prune.rewind"):
            parser.add_argument(f"--{dotted}", dest=f"set:{dotted}", metavar="VALUE",
                                help=f"{VALUE_FORMS.get(dotted, type_text)} ({DEFAULT_PRESET} preset: "
                                f"{shown[dotted]})")


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """--root and --allow-large, for the commands that train."""
    parser.add_argument("--root", default="runs", help="where run directories go (default: ./runs)")
    parser.add_argument("--allow-large", action="store_true",
                        help="run experiments beyond 100,000 jobs or 10^10 training iterations (refused otherwise)")


def resolve_config(args: argparse.Namespace, base: ExperimentConfig | None = None) -> ExperimentConfig:
    """The preset or config file (or, where neither is given, `base`: a command's own starting config) with the
    command line's changes applied and validated; ConfigError naming the flag for contradictory flags (--preset
    with --config, --levels with --target-remaining, a field set twice)."""
    if args.preset is not None and args.config is not None:
        raise ConfigError("--preset and --config cannot be combined: a config file replaces the preset; pass one")
    if args.config is not None:
        config = load_config(args.config)
    else:
        config = base if base is not None and args.preset is None else preset(args.preset or DEFAULT_PRESET)
    changes: dict[str, Any] = {}
    flags: dict[str, str] = {}
    for attribute, dotted in SHORTCUTS.items():
        value = getattr(args, attribute, None)
        if value is not None:
            changes[dotted], flags[dotted] = value, "--" + attribute.replace("_", "-")
    for attribute, value in vars(args).items():
        if attribute.startswith("set:") and value is not None:
            dotted = attribute[4:]
            if dotted in changes:
                raise ConfigError(f"{flags[dotted]} and --{dotted} set the same field; pass one")
            changes[dotted], flags[dotted] = value, f"--{dotted}"
    for dotted in ("data.source", "data.target"):  # '' would read as unset: the corpus's default pair, silently
        if isinstance(changes.get(dotted), str) and not changes[dotted].strip():
            raise ConfigError(f"{flags[dotted]} {changes[dotted]!r} is empty; name a language code such as de or en, "
                              "or 'none' for the corpus's default")
    target_key, levels_key = "prune.target_remaining_percent", "prune.levels"
    target = changes.get(target_key, config.prune.target_remaining_percent)
    target_set = target is not None and str(target).strip().lower() not in ("none", "null", "")
    if levels_key in changes and target_set:
        raise ConfigError(
            f"{flags[levels_key]} and {flags.get(target_key, 'prune.target_remaining_percent ' + str(target))} "
            "cannot be combined: the target percent decides the number of levels; pass one"
            + ("" if target_key in changes else f" (or add --{target_key} none)"))
    if target_key in changes and target_set:
        changes[levels_key] = 10_000  # the target decides; the levels are recorded as unbounded
    config = config.replace(**changes) if changes else config.validate()
    check_variants(config)  # the names are the variants registry's to check
    return config


def check_run_arguments(args: argparse.Namespace, config: ExperimentConfig) -> None:
    """The flags of commands that train: --root, --workers, --population, --device, --checkpoint-every."""
    root = args.root
    if not str(root).strip():
        raise ConfigError("--root is empty; give the directory run directories go in, e.g. --root runs")
    if "\0" in root:
        raise ConfigError("--root contains a NUL character")
    if Path(root).exists() and not Path(root).is_dir():
        raise ConfigError(f"--root {root!r} is a file, not a directory")
    for flag, value, high in (("--workers", getattr(args, "workers", None), MAX_WORKERS),
                              ("--population", getattr(args, "population", None), MAX_POPULATION)):
        if value is not None and not 1 <= value <= high:
            raise ConfigError(f"{flag} {value} must be between 1 and {high:,}")
    device = getattr(args, "device", "auto")
    kind, _, index = device.partition(":")
    if kind not in ("auto", "cpu", "cuda", "mps") or (index and (kind != "cuda" or not index.isdigit())):
        raise ConfigError(f"unknown --device {device!r}; allowed: auto, cpu, cuda, cuda:N")
    interval = getattr(args, "checkpoint_every", None)
    if interval is not None and not (math.isfinite(interval) and interval >= 0):
        raise ConfigError(f"--checkpoint-every {interval} must be a finite number of seconds >= 0")
    data_dir = config.data.data_dir
    if data_dir is not None and config.data.name in FILE_DATASETS:  # one text file: the file, or a folder with it
        if "\0" in data_dir or not (Path(data_dir).is_dir() or Path(data_dir).is_file()):
            raise ConfigError(f"data.data_dir {data_dir!r} is neither the {config.data.name} text file nor a "
                              "directory holding it")
    elif data_dir is not None and ("\0" in data_dir or not Path(data_dir).is_dir()):
        raise ConfigError(f"data.data_dir {data_dir!r} is not a directory")


def _flat_values(config: ExperimentConfig) -> dict[str, str]:
    """Every field of `config` as command-line text, by dotted name."""
    values = {}
    for section, fields in config.to_dict().items():
        if isinstance(fields, dict):
            values.update({f"{section}.{name}": _show(value) for name, value in fields.items()})
        else:
            values[section] = _show(fields)
    return values


def _show(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        if value and isinstance(value[0], (list, tuple)):
            return ",".join(f"{name}={rate}" for name, rate in value)
        return ",".join(map(str, value)) if value else "empty"
    return "none" if value is None else str(value)
