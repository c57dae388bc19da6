"""Typed, frozen experiment configs that validate, serialize to JSON/TOML and hash to a run directory.

This module must stay importable without torch (``ticketlab --help`` imports it).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ticketlab.errors import ConfigError
from ticketlab.tasks import TASKS, task_info, task_of_dataset

MODEL_NAMES = tuple(dict.fromkeys(name for info in TASKS.values() for name in info.models))
DATASET_NAMES = tuple(dict.fromkeys(name for info in TASKS.values() for name in info.datasets))


def _names(kind: str) -> tuple[str, ...]:
    """Every registered task's datasets or models (read now: the registry can gain a task after import)."""
    return tuple(dict.fromkeys(name for info in TASKS.values() for name in getattr(info, kind)))
OPTIMIZER_NAMES = ("sgd", "adam", "adamw")
SCHEDULE_NAMES = ("constant", "step", "cosine")
INIT_NAMES = ("glorot_normal", "glorot_uniform", "kaiming_normal", "torch_default")
SCOPE_NAMES = ("layerwise", "global")
STRATEGY_NAMES = ("magnitude",)
VARIANT_NAMES = (
    "iterative_reset",
    "iterative_reinit",
    "oneshot_reset",
    "oneshot_reinit",
    "random_pruning",
    "finetune",
)

_STEP_PATTERN = re.compile(r"^\s*(\d+)\s*(it|ep)?\s*$")
_UNIFORM_INIT = re.compile(r"^uniform_(\d+(\.\d*)?|\.\d+)$")


def _unhashed(default: Any) -> Any:
    """A field that does not change results (paths, download switches), so it stays out of the hash."""
    return field(default=default, metadata={"hash": False})


def parse_step(text: str, iterations_per_epoch: int | None = None) -> int:
    """Convert a step string ('500it', '40ep', or a bare integer meaning iterations) to iterations.

    Epochs need ``iterations_per_epoch`` (batches per pass over the training set, last partial batch dropped).
    """
    match = _STEP_PATTERN.match(str(text))
    if not match:
        raise ConfigError(f"invalid step {text!r}: write iterations as '500it' or epochs as '40ep'")
    count, unit = int(match.group(1)), match.group(2) or "it"
    if unit == "it":
        return count
    if iterations_per_epoch is None:
        raise ConfigError(f"step {text!r} is in epochs but the dataset size is not known here")
    return count * iterations_per_epoch


@dataclass(frozen=True)
class ModelConfig:
    """Which network to build. Input and output sizes come from the dataset."""

    name: str = "mlp"
    hidden: tuple[int, ...] = (100, 100)  # hidden widths of 'mlp'; 'lenet300_100' is fixed at (300, 100)
    init: str = "glorot_normal"
    width: int | None = None  # conv nets: channels of the first stage, later stages scale with it (None: paper's)
    depth: int | None = None  # conv nets: the number in the name, e.g. 32 for a resnet20 made ResNet-32 (None: name's)
    dropout: float = 0.0  # conv2/4/6: drop probability after each hidden FC layer; lstm: between layers
    embedding_dim: int | None = None  # lstm: token embedding size (None: the LSTM's hidden size)
    tie_weights: bool = False  # lstm: the decoder shares the embedding matrix (needs embedding_dim == hidden)

    def validate(self) -> None:
        _check_choice("model.name", self.name, _names("models"), allow_custom=True)
        if not _UNIFORM_INIT.match(self.init):  # 'uniform_<r>': every parameter U(-r, r) (the lstm's init)
            _check_choice("model.init", self.init, INIT_NAMES + ("uniform_<r>",))
        if (self.width is not None and self.width < 1) or (self.depth is not None and self.depth < 1):
            raise ConfigError(f"model.width {self.width} and model.depth {self.depth} must be positive or unset")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"model.dropout {self.dropout} must be a probability in [0, 1)")
        if any(width < 1 for width in self.hidden):
            raise ConfigError(f"model.hidden {list(self.hidden)} must hold positive widths")


@dataclass(frozen=True)
class DataConfig:
    """Which dataset, where to find it, and how much of the training set is held out for validation."""

    name: str = "mnist1d"
    validation_size: int = 500  # examples held out of the training set for early stopping
    train_size: int | None = None  # use only the first N training examples (None: all), for quick runs
    data_dir: str | None = _unhashed(None)  # a local directory with the dataset files
    cache_dir: str | None = _unhashed(None)  # download cache (default $TICKETLAB_CACHE or ~/.cache/ticketlab)
    download: bool = _unhashed(True)
    augment: bool = False  # image data: 4-pixel zero pad + random crop + horizontal flip of each training batch
    sequence_length: int = 35  # language data: tokens per truncated-BPTT segment

    def validate(self) -> None:
        _check_choice("data.name", self.name, _names("datasets"), allow_custom=True)
        if self.validation_size < 1:
            raise ConfigError(f"data.validation_size {self.validation_size} must be >= 1")
        if self.train_size is not None and self.train_size < 1:
            raise ConfigError(f"data.train_size {self.train_size} must be >= 1 or unset")


@dataclass(frozen=True)
class TrainConfig:
    """Optimizer, learning-rate schedule, length and evaluation cadence of every training run."""

    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.0  # SGD only
    nesterov: bool = False  # SGD only
    weight_decay: float = 0.0
    batch_size: int = 100
    steps: str = "3000it"
    schedule: str = "constant"
    milestones: tuple[str, ...] = ()  # 'step' schedule: multiply lr by gamma at each of these steps
    gamma: float = 0.1
    warmup: str = "0it"  # linear warmup from 0 to lr over this many steps
    eval_every: str = "100it"
    clip_grad_norm: float | None = None  # clip the global L2 norm of the (masked) gradients to this before a step

    def validate(self) -> None:
        _check_choice("train.optimizer", self.optimizer, OPTIMIZER_NAMES)
        _check_choice("train.schedule", self.schedule, SCHEDULE_NAMES)
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"train.lr {self.lr} must be a positive number")
        if self.batch_size < 1:
            raise ConfigError(f"train.batch_size {self.batch_size} must be >= 1")
        if self.weight_decay < 0 or self.momentum < 0:
            raise ConfigError("train.weight_decay and train.momentum must be >= 0")
        if self.nesterov and (self.optimizer != "sgd" or self.momentum <= 0):
            raise ConfigError("train.nesterov needs train.optimizer 'sgd' with train.momentum > 0")
        for name in ("steps", "warmup", "eval_every"):
            parse_step(getattr(self, name), iterations_per_epoch=1)
        for milestone in self.milestones:
            parse_step(milestone, iterations_per_epoch=1)
        if parse_step(self.eval_every, 1) < 1:
            raise ConfigError(f"train.eval_every {self.eval_every!r} must be at least 1 iteration")


@dataclass(frozen=True)
class PruneConfig:
    """How masks are computed, how many rounds, and where surviving weights are reset to."""

    strategy: str = "magnitude"
    scope: str = "layerwise"  # 'layerwise': each layer loses `rate` of its remaining weights; 'global': all together
    rate: float = 0.2  # fraction of the remaining weights removed per round
    output_rate: float | None = 0.1  # layerwise rate for the output layer (None: same as `rate`)
    layer_rates: tuple[tuple[str, float], ...] = ()  # per-parameter overrides, e.g. (("layers.0.weight", 0.3),)
    levels: int = 20  # pruning rounds after the dense level 0
    target_remaining_percent: float | None = None  # stop at the first level at or below this percent remaining
    rewind: str = "0it"  # reset survivors to the weights at this step of the dense run ('0it' = θ0)
    rewind_optimizer_state: bool = False  # also restore optimizer state saved at the rewind step
    finetune_steps: str | None = None  # training length of the 'finetune' variant (None: train.steps)

    def validate(self) -> None:
        _check_choice("prune.strategy", self.strategy, STRATEGY_NAMES)
        _check_choice("prune.scope", self.scope, SCOPE_NAMES)
        rates = [("prune.rate", self.rate), ("prune.output_rate", self.output_rate)]
        rates += [(f"prune.layer_rates[{name}]", rate) for name, rate in self.layer_rates]
        for label, rate in rates:
            if rate is not None and not 0 < rate < 1:
                raise ConfigError(f"{label} {rate} must be a fraction in (0, 1)")
        if self.levels < 0:
            raise ConfigError(f"prune.levels {self.levels} must be >= 0")
        target = self.target_remaining_percent
        if target is not None and not 0 < target <= 100:
            raise ConfigError(f"prune.target_remaining_percent {target} must be in (0, 100]")
        parse_step(self.rewind, iterations_per_epoch=1)
        if self.finetune_steps is not None:
            parse_step(self.finetune_steps, iterations_per_epoch=1)


@dataclass(frozen=True)
class ExperimentConfig:
    """One lottery-ticket experiment: model, data, training, pruning, which variants and how many trials."""

    task: str = "classification"  # which task package trains and evaluates (see ticketlab.tasks)
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    prune: PruneConfig = PruneConfig()
    variants: tuple[str, ...] = _unhashed(VARIANT_NAMES)  # adding variants or trials reuses finished jobs
    trials: int = _unhashed(1)
    seed: int = 0

    def validate(self) -> "ExperimentConfig":
        """Check every value; raise ConfigError naming the first bad one. Returns self."""
        for section in (self.model, self.data, self.train, self.prune):
            section.validate()
        info = task_info(self.task)
        if not self.data.name.startswith("custom:") and self.data.name not in info.datasets:
            owner = task_of_dataset(self.data.name)
            hint = f" (data.name {self.data.name!r} belongs to task {owner!r}: add --task {owner})" if owner else ""
            raise ConfigError(f"task {self.task!r} does not have data.name {self.data.name!r}; "
                              f"allowed: {', '.join(info.datasets)}{hint}")
        if not self.model.name.startswith("custom:") and self.model.name not in info.models:
            raise ConfigError(f"task {self.task!r} does not have model.name {self.model.name!r}; "
                              f"allowed: {', '.join(info.models)}")
        for variant in self.variants:
            _check_choice("variants", variant, VARIANT_NAMES)
        if not self.variants:
            raise ConfigError(f"variants is empty; choose from {', '.join(VARIANT_NAMES)}")
        if self.trials < 1:
            raise ConfigError(f"trials {self.trials} must be >= 1")
        return self

    def to_dict(self) -> dict[str, Any]:
        return _to_jsonable(dataclasses.asdict(self))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def hash(self) -> str:
        """Hex digest of the fields that change results, leaving defaults out so new fields keep old hashes."""
        payload = json.dumps(_hashable_dict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def run_name(self) -> str:
        return f"{_slug(self.data.name)}_{_slug(self.model.name)}_{self.hash()}"

    def replace(self, **changes: Any) -> "ExperimentConfig":
        """A copy with dotted-path changes applied, e.g. replace(**{'train.lr': 0.01, 'trials': 3})."""
        merged = self.to_dict()
        for dotted, value in changes.items():
            _set_dotted(merged, dotted, value)
        return config_from_dict(merged)


def config_from_dict(values: dict[str, Any]) -> ExperimentConfig:
    """Build and validate an ExperimentConfig from plain data; unknown keys are errors."""
    return _build(ExperimentConfig, values, prefix="").validate()


def load_config(path: str | Path) -> ExperimentConfig:
    """Read a config from a .json or .toml file (partial configs fill in defaults)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        if path.suffix == ".toml":
            values = tomllib.loads(path.read_text())
        elif path.suffix == ".json":
            values = json.loads(path.read_text())
        else:
            raise ConfigError(f"config file {str(path)!r} must end in .json or .toml")
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"config file {str(path)!r} is not valid: {error}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a table/object at the top level")
    return config_from_dict(values)


def field_paths() -> list[tuple[str, Any, str]]:
    """(dotted name, default, type text) for every settable field, for the CLI and docs."""
    rows = []
    for outer in dataclasses.fields(ExperimentConfig):
        if dataclasses.is_dataclass(outer.default):
            for inner in dataclasses.fields(outer.default):
                rows.append((f"{outer.name}.{inner.name}", getattr(outer.default, inner.name), _type_text(inner.type)))
        else:
            rows.append((outer.name, outer.default, _type_text(outer.type)))
    return rows


# --- helpers -------------------------------------------------------------------------------------


def _check_choice(label: str, value: Any, allowed: tuple[str, ...], allow_custom: bool = False) -> None:
    if value in allowed or (allow_custom and isinstance(value, str) and value.startswith("custom:")):
        return
    raise ConfigError(f"unknown {label} {value!r}; allowed: {', '.join(allowed)}")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "x"


def _to_jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _to_jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_jsonable(item) for item in value]
    return value


def _hashable_dict(instance: Any) -> dict[str, Any]:
    result = {}
    for spec in dataclasses.fields(instance):
        if spec.metadata.get("hash", True) is False:
            continue
        value = getattr(instance, spec.name)
        if dataclasses.is_dataclass(value):
            nested = _hashable_dict(value)
            if nested:
                result[spec.name] = nested
        elif value != spec.default:
            result[spec.name] = _to_jsonable(value)
    return result


def _set_dotted(values: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    target = values
    for part in parts[:-1]:
        if not isinstance(target.get(part), dict):
            raise ConfigError(f"unknown config key {dotted!r}")
        target = target[part]
    target[parts[-1]] = value


def _type_text(annotation: Any) -> str:
    return str(annotation).replace("typing.", "")


def _build(cls: type, values: dict[str, Any], prefix: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"config section {prefix.rstrip('.') or 'top level'!r} must be a table/object")
    hints = typing.get_type_hints(cls)
    known = {spec.name for spec in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"unknown config key {prefix + unknown[0]!r}; allowed in this section: {', '.join(sorted(known))}"
        )
    kwargs = {}
    for name, raw in values.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, raw, prefix=f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(raw, hint, prefix + name)
    return cls(**kwargs)


def _coerce(raw: Any, hint: Any, label: str) -> Any:
    """Convert JSON/TOML/CLI text values to the annotated type, with a one-line error on failure."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)) and type(None) in args:
        if raw is None or (isinstance(raw, str) and raw.lower() in ("none", "null", "")):
            return None
        inner = [arg for arg in args if arg is not type(None)][0]
        return _coerce(raw, inner, label)
    if origin is tuple:
        if isinstance(raw, str):
            text = raw.strip()
            if text.startswith(("[", "(")):
                try:
                    raw = json.loads(text.replace("(", "[").replace(")", "]"))
                except json.JSONDecodeError:
                    raise ConfigError(f"{label} value {raw!r} is not a list") from None
            else:
                raw = [item for item in text.split(",") if item.strip()]
        if not isinstance(raw, (list, tuple)):
            raise ConfigError(f"{label} value {raw!r} must be a list")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(item, args[0], label) for item in raw)
        if len(raw) != len(args):
            raise ConfigError(f"{label} value {raw!r} must have {len(args)} items")
        return tuple(_coerce(item, arg, label) for item, arg in zip(raw, args))
    if hint is bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            return raw.lower() in ("true", "1", "yes", "on")
        raise ConfigError(f"{label} value {raw!r} must be true or false")
    if hint in (int, float):
        if isinstance(raw, bool):
            raise ConfigError(f"{label} value {raw!r} must be a number")
        try:
            number = hint(raw) if not (hint is int and isinstance(raw, float)) else None
        except (TypeError, ValueError):
            number = None
        if number is None or (hint is int and isinstance(raw, str) and not re.fullmatch(r"\s*-?\d+\s*", raw)):
            kind = "an integer" if hint is int else "a number"
            raise ConfigError(f"{label} value {raw!r} must be {kind}")
        return number
    if hint is str:
        if isinstance(raw, (dict, list)):
            raise ConfigError(f"{label} value {raw!r} must be text")
        return str(raw)
    return raw
