"""The experiment config: the core sections, every task section, which variants and how many trials; it validates,
serializes to JSON/TOML and hashes to a run directory. Torch-free, and it imports no task: a task adds its own
section and checks through `ticketlab.config.extensions`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ticketlab.config.checks import check_int
from ticketlab.config.codec import build, hashable_dict, set_dotted, slug, to_jsonable, type_text, unhashed
from ticketlab.config.extensions import EXPERIMENT_CHECKS, EXPERIMENT_DEFAULTS, TASK_SECTIONS
from ticketlab.config.sections import DataConfig, ModelConfig, PruneConfig, TrainConfig
from ticketlab.config.steps import comparable_steps, parse_step
from ticketlab.errors import ConfigError

# The variants an experiment runs by default: iterative pruning and its controls. Which names exist, and what each
# does, is the variants registry's (`ticketlab.lottery.variants`); the config checks only the list's form.
DEFAULT_VARIANTS = (
    "iterative_reset",
    "iterative_reinit",
    "oneshot_reset",
    "oneshot_reinit",
    "random_pruning",
    "finetune",
)

_SECTIONS_BEFORE = "variants"  # config.json and the flags list the task sections after the core ones, before this


@dataclass(frozen=True, init=False, repr=False)
class ExperimentConfig:
    """One lottery-ticket experiment: model, data, training, pruning, the tasks' own sections (`config.rl`), which
    variants and how many trials. Built by keyword only, task sections by their key: `rl=RLConfig(num_envs=8)`."""

    # which task package trains and evaluates (see ticketlab.tasks; unset: the default task the registry names)
    task: str = None  # type: ignore[assignment]
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    prune: PruneConfig = PruneConfig()
    variants: tuple[str, ...] = unhashed(DEFAULT_VARIANTS)  # adding variants or trials reuses finished jobs
    trials: int = unhashed(1)
    seed: int = 0
    # the task sections (ticketlab.config.extensions.TASK_SECTIONS) that differ from their defaults, as (name,
    # section) pairs sorted by name, so that equal configs compare and hash equal; read them as `config.<name>`
    sections: tuple[tuple[str, Any], ...] = field(default=(), metadata={"hash": False})

    def __init__(self, **values: Any) -> None:
        given = dict(values.pop("sections", ()))
        for spec in dataclasses.fields(self):
            if spec.name != "sections":
                object.__setattr__(self, spec.name, values.pop(spec.name, spec.default))
        if self.task is None:
            object.__setattr__(self, "task", EXPERIMENT_DEFAULTS.get("task"))
        for name, section in values.items():
            if name not in TASK_SECTIONS:
                raise TypeError(f"ExperimentConfig got an unexpected keyword argument {name!r}")
            given[name] = section
        changed = [(name, section) for name, section in given.items()
                   if name not in TASK_SECTIONS or section != TASK_SECTIONS.get(name)()]
        object.__setattr__(self, "sections", tuple(sorted(changed, key=lambda item: item[0])))

    def __getattr__(self, name: str) -> Any:
        """A task section (`config.rl`): its value in this config, else its defaults."""
        if not name.startswith("__"):
            for key, section in self.__dict__.get("sections", ()):
                if key == name:
                    return section
            if name in TASK_SECTIONS:
                return TASK_SECTIONS.get(name)()
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.settable_fields())
        return f"{type(self).__name__}({shown})"

    @classmethod
    def settable_fields(cls) -> dict[str, Any]:
        """Top-level key -> type, in config.json's order: the core fields with the registered task sections."""
        hints = typing.get_type_hints(cls)
        fields: dict[str, Any] = {}
        for spec in dataclasses.fields(cls):
            if spec.name == _SECTIONS_BEFORE:
                fields.update(TASK_SECTIONS.items())
            if spec.name != "sections":
                fields[spec.name] = hints[spec.name]
        return fields

    def task_sections(self) -> dict[str, Any]:
        """Every registered task section's value in this config (its defaults where unset), by name."""
        values = {name: section() for name, section in TASK_SECTIONS.items()}
        values.update(self.sections)
        return values

    def validate(self) -> "ExperimentConfig":
        """Check every value; raise ConfigError naming the first bad one. Returns self."""
        for section in (self.model, self.data, self.train, self.prune, *self.task_sections().values()):
            section.validate()
        for _, check in EXPERIMENT_CHECKS.items():  # the tasks registry's: task, data.name and model.name
            check(self)
        # the names themselves are the variants registry's to check (`ticketlab.lottery.variants.check_variants`)
        if not isinstance(self.variants, tuple) or not all(isinstance(name, str) for name in self.variants):
            raise ConfigError(f"variants {self.variants!r} must be a list of names")
        if not self.variants:
            raise ConfigError(f"variants is empty; name at least one (default: {', '.join(DEFAULT_VARIANTS)})")
        repeated = [variant for index, variant in enumerate(self.variants) if variant in self.variants[:index]]
        if repeated:
            raise ConfigError(f"variants lists {repeated[0]!r} more than once")
        check_int("trials", self.trials, 1)
        check_int("seed", self.seed, None)
        check_steps(self)
        return self

    def to_dict(self) -> dict[str, Any]:
        values = {}
        for name in self.settable_fields():
            value = getattr(self, name)
            values[name] = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
        return to_jsonable(values)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def hash(self) -> str:
        """Hex digest of the fields that change results, leaving defaults out so new fields keep old hashes (and
        a task section at its defaults out, so registering one keeps them too)."""
        values = hashable_dict(self)
        if "task" in EXPERIMENT_DEFAULTS and values.get("task") == EXPERIMENT_DEFAULTS.get("task"):
            del values["task"]  # the default task, left out like every default
        for name, section in self.task_sections().items():
            nested = hashable_dict(section)
            if nested:
                values[name] = nested
        payload = json.dumps(values, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def run_name(self) -> str:
        data = self.data.name + (f" c{self.data.classes}" if self.data.classes is not None else "")
        return f"{slug(data)}_{slug(self.model.name)}_{self.hash()}"

    def replace(self, **changes: Any) -> "ExperimentConfig":
        """A copy with dotted-path changes applied, e.g. replace(**{'train.lr': 0.01, 'trials': 3})."""
        merged = self.to_dict()
        for dotted, value in changes.items():
            set_dotted(merged, dotted, value)
        return build(ExperimentConfig, merged, prefix="", strict=False).validate()  # changes may be CLI text


def config_from_dict(values: dict[str, Any]) -> ExperimentConfig:
    """Build and validate an ExperimentConfig from plain data (parsed JSON or TOML); unknown keys are errors, and so
    is a value of the wrong JSON type (the text "yes" for a boolean, "64" for an integer): only the command line's
    text values are converted (`replace`)."""
    return build(ExperimentConfig, values, prefix="", strict=True).validate()


def load_config(path: str | Path) -> ExperimentConfig:
    """Read a config from a .json or .toml file (partial configs fill in defaults).

    A run directory's config.json (the config under "config", with its hash) is read as the config it holds.
    """
    path = Path(path)
    if path.is_dir():
        hint = " (its config.json holds the run's config)" if (path / "config.json").is_file() else ""
        raise ConfigError(f"config file {str(path)!r} is a directory; pass a .json or .toml file{hint}")
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    if path.suffix not in (".json", ".toml"):
        raise ConfigError(f"config file {str(path)!r} must end in .json or .toml")
    try:
        text = path.read_bytes().decode("utf-8")
        values = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except UnicodeDecodeError:
        raise ConfigError(f"config file {str(path)!r} is not UTF-8 text") from None
    except ValueError as error:  # JSONDecodeError, TOMLDecodeError, and numbers beyond int()'s digit limit
        raise ConfigError(f"config file {str(path)!r} is not valid {path.suffix[1:].upper()}: {error}") from None
    except RecursionError:
        raise ConfigError(f"config file {str(path)!r} is nested too deeply") from None
    if not isinstance(values, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a table/object at the top level")
    if set(values) == {"hash", "fingerprint", "config"} and isinstance(values["config"], dict):
        values = values["config"]  # a run directory's config.json
    try:
        return config_from_dict(values)
    except ConfigError as error:
        raise ConfigError(f"config file {str(path)!r}: {error}") from None


def check_steps(config: ExperimentConfig, iterations_per_epoch: int | None = None) -> None:
    """Cross-field step checks: the rewind point before the end of training, milestones and warmup within it.

    Steps written in different units (iterations and epochs) are compared only once `iterations_per_epoch` is
    known (`ticketlab.lottery.estimate.check_against_data`); in the same unit they are compared here already.
    """
    train, prune = config.train, config.prune
    pairs = [("prune.rewind", prune.rewind, "before the end of training", lambda at, end: at < end),
             ("train.warmup", train.warmup, "at most the training length", lambda at, end: at <= end),
             ("prune.gmp_start", prune.gmp_start, "before the end of training", lambda at, end: at < end)]
    if prune.gmp_end is not None:
        pairs.append(("prune.gmp_end", prune.gmp_end, "before the end of training", lambda at, end: at < end))
    if prune.dst_end is not None:
        pairs.append(("prune.dst_end", prune.dst_end, "before the end of training", lambda at, end: at < end))
    pairs += [("train.milestones", milestone, "within training", lambda at, end: at <= end)
              for milestone in train.milestones]
    for label, text, where, fits in pairs:
        at, end = comparable_steps(text, train.steps, iterations_per_epoch)
        if at is not None and not fits(at, end):
            raise ConfigError(f"{label} {text!r} must be {where} (train.steps {train.steps!r})")
    if prune.gmp_end is not None:
        start, end = comparable_steps(prune.gmp_start, prune.gmp_end, iterations_per_epoch)
        if start is not None and start > end:
            raise ConfigError(f"prune.gmp_end {prune.gmp_end!r} must not come before prune.gmp_start "
                              f"{prune.gmp_start!r}")
    if iterations_per_epoch is not None and parse_step(train.steps, iterations_per_epoch) < 1:
        raise ConfigError(f"train.steps {train.steps!r} is less than 1 iteration")


def field_paths() -> list[tuple[str, Any, str]]:
    """(dotted name, default, type text) for every settable field, for the CLI and docs."""
    defaults = ExperimentConfig()
    annotations = {spec.name: spec.type for spec in dataclasses.fields(ExperimentConfig)}
    rows = []
    for name in ExperimentConfig.settable_fields():
        default = getattr(defaults, name)
        if dataclasses.is_dataclass(default):
            for inner in dataclasses.fields(default):
                rows.append((f"{name}.{inner.name}", getattr(default, inner.name), type_text(inner.type)))
        else:
            rows.append((name, default, type_text(annotations[name])))
    return rows
