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
SCHEDULE_NAMES = ("constant", "step", "cosine", "inverse_sqrt", "linear")
INIT_NAMES = ("glorot_normal", "glorot_uniform", "kaiming_normal", "torch_default")
SCOPE_NAMES = ("layerwise", "global")
STRATEGY_NAMES = ("magnitude",)
UNIT_NAMES = ("weight", "channel")  # prune.unit: single weights, or whole channels / neurons (structured)
CHANNEL_SCORE_NAMES = ("l1", "bn_scale")  # prune.channel_score under prune.unit channel
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
# plan_estimate's arithmetic counts the early-bird search job (to leave with plan_estimate for the lottery layer)
EARLY_BIRD_VARIANTS = ("early_bird", "early_bird_reset")
EARLY_BIRD_CRITERIA = ("weights", "channels")

MAX_WIDTH = 1_000_000  # hidden units, channels or embedding size: far beyond any network that fits in memory
MAX_DEPTH = 10_000
MAX_LR = 100.0  # larger learning rates only diverge (an LSTM with plain SGD uses 20)
IMAGENET_RESNET_NAMES = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")  # torchvision layout
CONV_DEPTHS = {"conv": "even (two convs per pooling block)", "vgg": "one of 11, 13, 16, 19",
               "resnet": "6n+2 with n >= 1 (20, 32, 44, 56, 110)"}
VGG_DEPTHS = (11, 13, 16, 19)

_STEP_PATTERN = re.compile(r"^\s*(\d+)\s*(it|ep)?\s*$", re.ASCII)
_MAX_STEP_DIGITS = 30  # beyond any plan; also keeps int() far from Python's 4,300-digit limit
_UNIFORM_INIT = re.compile(r"^uniform_(\d+(\.\d*)?|\.\d+)$")


def _unhashed(default: Any) -> Any:
    """A field that does not change results (paths, download switches), so it stays out of the hash."""
    return field(default=default, metadata={"hash": False})


def parse_step(text: str, iterations_per_epoch: int | None = None) -> int:
    """Convert a step string ('500it', '40ep', or a bare integer meaning iterations) to iterations.

    Epochs need ``iterations_per_epoch`` (batches per pass over the training set, last partial batch dropped).
    """
    count, unit = step_count(text)
    if unit == "it":
        return count
    if iterations_per_epoch is None:
        raise ConfigError(f"step {text!r} is in epochs but the dataset size is not known here")
    return count * iterations_per_epoch


def step_count(text: str) -> tuple[int, str]:
    """The count and unit ('it' or 'ep') of a step string; ConfigError if it is not one."""
    match = _STEP_PATTERN.match(str(text))
    if not match:
        raise ConfigError(f"invalid step {text!r}: write iterations as '500it' or epochs as '40ep'")
    if len(match.group(1).lstrip("0")) > _MAX_STEP_DIGITS:
        raise ConfigError(f"step {str(text).strip()!r} is too large: at most {_MAX_STEP_DIGITS} digits")
    return int(match.group(1)), match.group(2) or "it"


_CLASS_ITEM = re.compile(r"^\s*(\d{1,6})\s*(?:-\s*(\d{1,6})\s*)?$", re.ASCII)


def parse_classes(text: str) -> tuple[int, ...]:
    """Class indices from text such as '0-4', '5-9' or '0,2,7-9' (ranges inclusive), in the order written;
    ConfigError for anything else, a repeated class or fewer than 2 classes."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"data.classes {text!r} must list class indices, e.g. 0-4 or 0,2,7-9")
    classes: list[int] = []
    for item in text.split(","):
        match = _CLASS_ITEM.match(item)
        if not match:
            raise ConfigError(f"data.classes item {item.strip()!r} must be a class index or a range such as 0-4")
        low = int(match.group(1))
        high = int(match.group(2)) if match.group(2) is not None else low
        if high < low:
            raise ConfigError(f"data.classes range {item.strip()!r} runs backwards; write {high}-{low}")
        classes.extend(range(low, high + 1))
    repeated = sorted({index for index in classes if classes.count(index) > 1})
    if repeated:
        raise ConfigError(f"data.classes {text!r} lists class {repeated[0]} more than once")
    if len(classes) < 2:
        raise ConfigError(f"data.classes {text!r} keeps {len(classes)} class; a classifier needs at least 2")
    return tuple(classes)


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
    heads: int | None = None  # transformer: attention heads (None: width // 64, at least 1)
    ffn_dim: int | None = None  # transformer: feed-forward width (None: 4 x width)

    def validate(self) -> None:
        _check_choice("model.name", self.name, _names("models"), allow_custom=True)
        if not (isinstance(self.init, str) and _UNIFORM_INIT.match(self.init)):  # 'uniform_<r>': U(-r, r) (lstm)
            _check_choice("model.init", self.init, INIT_NAMES + ("uniform_<r>",))
        if not isinstance(self.hidden, tuple):
            raise ConfigError(f"model.hidden {self.hidden!r} must be a list of widths, e.g. 256,256")
        for width in self.hidden:
            _check_int(f"model.hidden {list(self.hidden)}: width", width, 1, MAX_WIDTH)
        _check_int("model.width", self.width, 1, MAX_WIDTH, unset_ok=True)
        _check_int("model.depth", self.depth, 1, MAX_DEPTH, unset_ok=True)
        _check_int("model.embedding_dim", self.embedding_dim, 1, MAX_WIDTH, unset_ok=True)
        _check_number("model.dropout", self.dropout, 0, 1, high_open=True, what="a probability")
        _check_bool("model.tie_weights", self.tie_weights)
        _check_int("model.heads", self.heads, 1, MAX_WIDTH, unset_ok=True)
        _check_int("model.ffn_dim", self.ffn_dim, 1, MAX_WIDTH, unset_ok=True)
        if self.name in IMAGENET_RESNET_NAMES and self.depth is not None:
            raise ConfigError(f"model.depth does not apply to {self.name} (its depth is in the name); leave it unset")
        family = next((family for family in CONV_DEPTHS if self.name.startswith(family)), None)
        if self.depth is not None and family is not None and not _conv_depth_ok(family, self.depth):
            raise ConfigError(f"model.depth {self.depth} of {self.name} must be {CONV_DEPTHS[family]}")
        if self.name in ("mlp", "lenet300_100") and (self.width, self.depth) != (None, None):
            raise ConfigError(f"model.width and model.depth apply to conv nets, not {self.name}; leave them unset")


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
    # image classification: keep only these classes, relabelled 0..k-1 in the order given ('0-4', '5-9', '0,2,7');
    # data.validation_size and data.train_size count examples before the filter (None: every class)
    classes: str | None = None
    image_size: int | None = None  # image data: resize to image_size x image_size (bilinear; None: as stored)
    channels: int | None = None  # image data: 1 (grayscale: channel mean) or 3 (grayscale repeated); None: as stored
    source: str | None = None  # translation: source language code (None: the corpus's default, de for multi30k)
    target: str | None = None  # translation: target language code (None: the corpus's default, en for multi30k)
    vocab_size: int | None = None  # translation: joint BPE vocabulary size, special tokens included (None: 8000)
    eval_size: int | None = None  # translation: use only the first N validation and test pairs (None: all)
    # image folders (imagenet, image_folder): JPEG-decoding processes per job (None: the cores, at most 8)
    loader_workers: int | None = _unhashed(None)

    def validate(self) -> None:
        _check_choice("data.name", self.name, _names("datasets"), allow_custom=True)
        if self.classes is not None:
            parse_classes(self.classes)
        _check_int("data.image_size", self.image_size, 1, 1024, unset_ok=True)
        if self.channels is not None and self.channels not in (1, 3):
            raise ConfigError(f"data.channels {self.channels!r} must be 1 or 3, or unset")
        _check_int("data.validation_size", self.validation_size, 1)
        _check_int("data.train_size", self.train_size, 1, unset_ok=True)
        _check_int("data.sequence_length", self.sequence_length, 1)
        _check_int("data.vocab_size", self.vocab_size, 5, 1 << 24, unset_ok=True)
        _check_int("data.eval_size", self.eval_size, 1, unset_ok=True)
        _check_int("data.loader_workers", self.loader_workers, 0, 64, unset_ok=True)
        for label, value in (("data.source", self.source), ("data.target", self.target)):
            if value is not None and not (isinstance(value, str) and re.fullmatch(r"[a-z]{2,3}(_[A-Za-z]{2,4})?", value)):
                raise ConfigError(f"{label} {value!r} must be a language code such as de or en")
        for label, value in (("data.data_dir", self.data_dir), ("data.cache_dir", self.cache_dir)):
            if value is not None and not (isinstance(value, str) and value.strip()):
                raise ConfigError(f"{label} {value!r} must be a directory path or unset")
        _check_bool("data.download", self.download)
        _check_bool("data.augment", self.augment)


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
    beta2: float = 0.999  # adam/adamw: the second-moment decay (the Transformer's 0.98)
    eps: float = 1e-8  # adam/adamw: the denominator's epsilon (PPO's reference implementation: 1e-5)
    label_smoothing: float = 0.0  # translation: label-smoothed cross-entropy (the Transformer's 0.1)
    beam_size: int = 1  # translation: beam width of the test decoding behind BLEU (1: greedy)

    def validate(self) -> None:
        _check_choice("train.optimizer", self.optimizer, OPTIMIZER_NAMES)
        _check_choice("train.schedule", self.schedule, SCHEDULE_NAMES)
        _check_number("train.lr", self.lr, 0, MAX_LR, low_open=True)
        _check_number("train.momentum", self.momentum, 0, 1, high_open=True)
        _check_number("train.weight_decay", self.weight_decay, 0, 1)
        _check_number("train.gamma", self.gamma, 0, None, low_open=True)
        if self.clip_grad_norm is not None:
            _check_number("train.clip_grad_norm", self.clip_grad_norm, 0, None, low_open=True)
        _check_int("train.batch_size", self.batch_size, 1)
        _check_number("train.beta2", self.beta2, 0, 1, high_open=True)
        _check_number("train.eps", self.eps, 0, 1, low_open=True)
        _check_number("train.label_smoothing", self.label_smoothing, 0, 1, high_open=True)
        _check_int("train.beam_size", self.beam_size, 1, 1000)
        if self.schedule == "inverse_sqrt" and step_count(self.warmup)[0] < 1:
            raise ConfigError("train.schedule 'inverse_sqrt' needs train.warmup of at least 1 step (its peak)")
        _check_bool("train.nesterov", self.nesterov)
        if self.momentum > 0 and self.optimizer != "sgd":
            raise ConfigError(f"train.momentum {self.momentum} applies to train.optimizer 'sgd' only, "
                              f"not {self.optimizer!r}; leave it 0")
        if self.nesterov and (self.optimizer != "sgd" or self.momentum <= 0):
            raise ConfigError("train.nesterov needs train.optimizer 'sgd' with train.momentum > 0")
        for name in ("steps", "warmup", "eval_every"):
            _check_step(f"train.{name}", getattr(self, name))
        if not isinstance(self.milestones, tuple):
            raise ConfigError(f"train.milestones {self.milestones!r} must be a list of steps, e.g. 80ep,120ep")
        for milestone in self.milestones:
            _check_step("train.milestones", milestone)
        if self.milestones and self.schedule != "step":
            raise ConfigError(f"train.milestones apply to train.schedule 'step' only, not {self.schedule!r}")
        for name in ("steps", "eval_every"):
            if step_count(getattr(self, name))[0] < 1:
                raise ConfigError(f"train.{name} {getattr(self, name)!r} must be at least 1 iteration")


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
    # pruning at initialization (snip, grasp, synflow, magnitude_at_init): 'global' ranks all layers together at
    # each level's total count (as the papers do), 'layerwise' keeps the level's per-layer counts
    at_init_scope: str = "global"
    score_batches: int = 10  # training batches (train.batch_size each) whose loss SNIP and GraSP score
    synflow_rounds: int = 100  # SynFlow's pruning rounds (exponential keep schedule)
    # early-bird tickets: a mask every `early_bird_every` steps of dense training; detected when the last
    # `early_bird_window` masks are all within `early_bird_threshold` (normalized Hamming distance) of the newest
    early_bird_every: str = "1ep"
    early_bird_window: int = 5
    early_bird_threshold: float = 0.1
    early_bird_criterion: str = "weights"  # 'channels': the masks compared are BatchNorm-scale channel masks
    unit: str = "weight"  # 'channel': prune whole output channels / neurons (rates are fractions of channels)
    channel_score: str = "l1"  # unit 'channel': 'l1' (filter L1 norm) or 'bn_scale' (|BatchNorm scale|)

    def validate(self) -> None:
        _check_choice("prune.strategy", self.strategy, STRATEGY_NAMES)
        _check_choice("prune.scope", self.scope, SCOPE_NAMES)
        if not isinstance(self.layer_rates, tuple) or not all(
                isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str) for item in self.layer_rates):
            raise ConfigError(f"prune.layer_rates {self.layer_rates!r} must be name=rate pairs, "
                              "e.g. layers.0.weight=0.3,layers.2.weight=0.1")
        names = [name for name, _ in self.layer_rates]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ConfigError(f"prune.layer_rates names {repeated[0]!r} more than once")
        rates = [("prune.rate", self.rate), ("prune.output_rate", self.output_rate)]
        rates += [(f"prune.layer_rates[{name}]", rate) for name, rate in self.layer_rates]
        for label, rate in rates:
            if rate is not None:
                _check_number(label, rate, 0, 1, low_open=True, high_open=True, what="a fraction")
        _check_int("prune.levels", self.levels, 0)
        if self.target_remaining_percent is not None:
            _check_number("prune.target_remaining_percent", self.target_remaining_percent, 0, 100, low_open=True,
                          what="")
        _check_step("prune.rewind", self.rewind)
        _check_bool("prune.rewind_optimizer_state", self.rewind_optimizer_state)
        _check_choice("prune.at_init_scope", self.at_init_scope, SCOPE_NAMES)
        _check_int("prune.score_batches", self.score_batches, 1)
        _check_int("prune.synflow_rounds", self.synflow_rounds, 1)
        _check_step("prune.early_bird_every", self.early_bird_every)
        if step_count(self.early_bird_every)[0] < 1:
            raise ConfigError(f"prune.early_bird_every {self.early_bird_every!r} must be at least 1 iteration")
        _check_int("prune.early_bird_window", self.early_bird_window, 2)
        _check_number("prune.early_bird_threshold", self.early_bird_threshold, 0, 1, low_open=True,
                      what="a fraction")
        _check_choice("prune.early_bird_criterion", self.early_bird_criterion, EARLY_BIRD_CRITERIA)
        if self.at_init_scope == "layerwise" and self.scope == "global":
            raise ConfigError("prune.at_init_scope 'layerwise' needs per-layer counts: use it with prune.scope "
                              "layerwise (prune.scope global plans totals only)")
        if self.finetune_steps is not None:
            _check_step("prune.finetune_steps", self.finetune_steps)
            if step_count(self.finetune_steps)[0] < 1:
                raise ConfigError(f"prune.finetune_steps {self.finetune_steps!r} must be at least 1 iteration")
        _check_choice("prune.unit", self.unit, UNIT_NAMES)
        _check_choice("prune.channel_score", self.channel_score, CHANNEL_SCORE_NAMES)
        if self.unit == "channel" and self.strategy != "magnitude":
            raise ConfigError(f"prune.strategy {self.strategy!r} scores single weights; with prune.unit 'channel' "
                              "channels are scored by prune.channel_score (l1 or bn_scale)")


@dataclass(frozen=True)
class RLConfig:
    """Reinforcement learning (task 'rl'): PPO's settings, with the defaults of CleanRL's ppo.py (Huang et al.
    2022, "The 37 Implementation Details of PPO"), and how agents are evaluated. A training step is one PPO
    iteration: a rollout of `rollout_steps` in each of `num_envs` environments, then `update_epochs` passes."""

    num_envs: int = 4
    rollout_steps: int = 128
    gamma: float = 0.99
    gae_lambda: float = 0.95
    minibatches: int = 4
    update_epochs: int = 4
    clip_coef: float = 0.2
    clip_value_loss: bool = True
    entropy_coef: float = 0.01
    value_coef: float = 0.5
    normalize_advantages: bool = True
    eval_episodes: int = 10  # episodes (fixed seeds) per evaluation of the validation and of the test seeds
    deterministic_eval: bool = True  # evaluate the greedy (argmax) policy; False samples from it
    shared_trunk: bool = False  # one MLP trunk under the policy and value heads (CleanRL: separate networks)
    episodic_life: bool = False  # Atari: a lost life ends the training episode (evaluation always plays whole games)

    def validate(self) -> None:
        for name in ("num_envs", "rollout_steps", "minibatches", "update_epochs", "eval_episodes"):
            _check_int(f"rl.{name}", getattr(self, name), 1, 1_000_000)
        for name in ("gamma", "gae_lambda"):
            _check_number(f"rl.{name}", getattr(self, name), 0, 1)
        _check_number("rl.clip_coef", self.clip_coef, 0, None, low_open=True)
        for name in ("entropy_coef", "value_coef"):
            _check_number(f"rl.{name}", getattr(self, name), 0, None)
        for name in ("clip_value_loss", "normalize_advantages", "deterministic_eval", "shared_trunk", "episodic_life"):
            _check_bool(f"rl.{name}", getattr(self, name))
        if self.num_envs * self.rollout_steps < self.minibatches:
            raise ConfigError(f"rl.minibatches {self.minibatches} is more than the {self.num_envs * self.rollout_steps} "
                              "transitions of a rollout (rl.num_envs x rl.rollout_steps)")


@dataclass(frozen=True)
class ExperimentConfig:
    """One lottery-ticket experiment: model, data, training, pruning, which variants and how many trials."""

    task: str = "classification"  # which task package trains and evaluates (see ticketlab.tasks)
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    prune: PruneConfig = PruneConfig()
    rl: RLConfig = RLConfig()
    variants: tuple[str, ...] = _unhashed(DEFAULT_VARIANTS)  # adding variants or trials reuses finished jobs
    trials: int = _unhashed(1)
    seed: int = 0

    def validate(self) -> "ExperimentConfig":
        """Check every value; raise ConfigError naming the first bad one. Returns self."""
        for section in (self.model, self.data, self.train, self.prune, self.rl):
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
        # the names themselves are the variants registry's to check (`ticketlab.lottery.variants.check_variants`)
        if not isinstance(self.variants, tuple) or not all(isinstance(name, str) for name in self.variants):
            raise ConfigError(f"variants {self.variants!r} must be a list of names")
        if not self.variants:
            raise ConfigError(f"variants is empty; name at least one (default: {', '.join(DEFAULT_VARIANTS)})")
        repeated = [variant for index, variant in enumerate(self.variants) if variant in self.variants[:index]]
        if repeated:
            raise ConfigError(f"variants lists {repeated[0]!r} more than once")
        _check_int("trials", self.trials, 1)
        _check_int("seed", self.seed, None)
        check_steps(self)
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
        data = self.data.name + (f" c{self.data.classes}" if self.data.classes is not None else "")
        return f"{_slug(data)}_{_slug(self.model.name)}_{self.hash()}"

    def replace(self, **changes: Any) -> "ExperimentConfig":
        """A copy with dotted-path changes applied, e.g. replace(**{'train.lr': 0.01, 'trials': 3})."""
        merged = self.to_dict()
        for dotted, value in changes.items():
            _set_dotted(merged, dotted, value)
        return _build(ExperimentConfig, merged, prefix="", strict=False).validate()  # changes may be CLI text


def config_from_dict(values: dict[str, Any]) -> ExperimentConfig:
    """Build and validate an ExperimentConfig from plain data (parsed JSON or TOML); unknown keys are errors, and so
    is a value of the wrong JSON type (the text "yes" for a boolean, "64" for an integer): only the command line's
    text values are converted (`replace`)."""
    return _build(ExperimentConfig, values, prefix="", strict=True).validate()


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
    known (`check_against_data`); in the same unit they are compared here already.
    """
    train, prune = config.train, config.prune
    pairs = [("prune.rewind", prune.rewind, "before the end of training", lambda at, end: at < end),
             ("train.warmup", train.warmup, "at most the training length", lambda at, end: at <= end)]
    pairs += [("train.milestones", milestone, "within training", lambda at, end: at <= end)
              for milestone in train.milestones]
    for label, text, where, fits in pairs:
        at, end = _comparable(text, train.steps, iterations_per_epoch)
        if at is not None and not fits(at, end):
            raise ConfigError(f"{label} {text!r} must be {where} (train.steps {train.steps!r})")
    if iterations_per_epoch is not None and parse_step(train.steps, iterations_per_epoch) < 1:
        raise ConfigError(f"train.steps {train.steps!r} is less than 1 iteration")


def check_against_data(config: ExperimentConfig, iterations_per_epoch: int, train_examples: int | None = None,
                       limit: "PlanLimit | None" = None) -> None:
    """The checks that need the data: the batch fits in the `train_examples` (when the task has examples), steps
    in epochs are consistent with the others, and (with `limit`) the plan is not too large. Call after loading the
    data, before writing the run directory."""
    batch_size = config.train.batch_size
    if train_examples is not None and batch_size > train_examples:
        raise ConfigError(f"train.batch_size {batch_size} is larger than the {train_examples} training examples "
                          f"of {config.data.name}; use at most {train_examples}")
    check_steps(config, iterations_per_epoch)
    if limit is not None:
        check_plan(config, limit, iterations_per_epoch)


@dataclass(frozen=True)
class PlanLimit:
    """The largest experiment run without asking (`ticketlab find --allow-large` lifts it)."""

    max_jobs: int = 100_000
    max_iterations: int = 10**10


@dataclass(frozen=True)
class PlanEstimate:
    """An experiment's size, computed arithmetically from the config (no model or job graph is built)."""

    jobs: int
    levels: int  # pruning levels after the dense one (an upper bound when a target percent decides it)
    iterations: int | None  # optimizer steps of all jobs; None when steps are in epochs and the data size unknown


def plan_estimate(config: ExperimentConfig, iterations_per_epoch: int | None = None) -> PlanEstimate:
    """Jobs (trials x (1 + levels x variants), plus the hidden ticket chain of reinit/random controls) and total
    iterations; `levels` is at most prune.levels, or the rounds the slowest rate needs to reach the target."""
    prune = config.prune
    levels = prune.levels
    if prune.target_remaining_percent is not None:
        slowest = min([prune.rate] + [rate for rate in (prune.output_rate,) if rate is not None]
                      + [rate for _, rate in prune.layer_rates])
        fraction = prune.target_remaining_percent / 100
        levels = 0 if fraction >= 1 else min(10_000, math.ceil(math.log(fraction) / math.log1p(-slowest)))
    variants = config.variants
    hidden_chain = levels >= 1 and "iterative_reset" not in variants and any(
        variant in variants for variant in ("iterative_reinit", "random_pruning"))
    early_bird_search = levels >= 1 and any(variant in EARLY_BIRD_VARIANTS for variant in variants)
    per_trial_jobs = 1 + levels * len(variants) + (levels - 1 if hidden_chain else 0) + int(early_bird_search)
    texts = [config.train.steps, prune.rewind, prune.finetune_steps or config.train.steps]
    iterations = None
    if iterations_per_epoch is not None or all(step_count(text)[1] == "it" for text in texts):
        steps, rewind, finetune = (parse_step(text, iterations_per_epoch) for text in texts)
        retrain = max(steps - rewind, 0)
        per_level = sum(finetune if variant == "finetune" else retrain for variant in variants)
        per_trial = (steps + levels * per_level + (levels - 1 if hidden_chain else 0) * retrain
                     + (steps if early_bird_search else 0))  # the search stops at detection: an upper bound
        iterations = config.trials * per_trial
    return PlanEstimate(config.trials * per_trial_jobs, levels, iterations)


def check_plan(config: ExperimentConfig, limit: PlanLimit = PlanLimit(),
               iterations_per_epoch: int | None = None) -> PlanEstimate:
    """The plan estimate; ConfigError with its numbers if it exceeds `limit` (iterations: when known)."""
    plan = plan_estimate(config, iterations_per_epoch)
    too_many_jobs = plan.jobs > limit.max_jobs
    if too_many_jobs or (plan.iterations is not None and plan.iterations > limit.max_iterations):
        iterations = "" if plan.iterations is None else f" and {plan.iterations:,} training iterations"
        bound = (f"{limit.max_jobs:,} jobs" if too_many_jobs else f"{limit.max_iterations:,} iterations")
        raise ConfigError(f"the experiment is {plan.jobs:,} jobs ({config.trials:,} trials x (1 + {plan.levels:,} "
                          f"levels x {len(config.variants)} variants)){iterations}, more than {bound}; lower "
                          "trials, levels or train.steps, or pass --allow-large if you mean it")
    return plan


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


def _check_number(label: str, value: Any, low: float | None, high: float | None, *, low_open: bool = False,
                  high_open: bool = False, what: str = "a number") -> None:
    """A finite int/float within [low, high] (bounds None: unbounded; *_open: that end excluded)."""
    inside = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if inside and low is not None:
        inside = value > low if low_open else value >= low
    if inside and high is not None:
        inside = value < high if high_open else value <= high
    if inside:
        return
    if low is not None and high is not None:
        allowed = f"{what} in " if what else "in "
        allowed += f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    elif low is not None:
        allowed = f"a finite number {'>' if low_open else '>='} {low:g}"
    else:
        allowed = "a finite number"
    raise ConfigError(f"{label} {value!r} must be {allowed}")


def _check_int(label: str, value: Any, low: int | None, high: int | None = None, unset_ok: bool = False) -> None:
    if value is None and unset_ok:
        return
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(f"{label} {value!r} must be an integer{' or unset' if unset_ok else ''}")
    if low is not None and value < low:
        raise ConfigError(f"{label} {value} must be >= {low}{' or unset' if unset_ok else ''}")
    if high is not None and value > high:
        raise ConfigError(f"{label} {value} is too large: at most {high:,}")


def _check_bool(label: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{label} {value!r} must be true or false")


def _check_step(label: str, text: Any) -> None:
    if not isinstance(text, str):
        raise ConfigError(f"{label} {text!r} must be a step such as '500it' or '40ep'")
    try:
        step_count(text)
    except ConfigError as error:
        raise ConfigError(f"{label}: {error}") from None
    check_step_unit(label, text)


def check_step_unit(label: str, text: str) -> None:
    """ConfigError for a step a user wrote without its unit ('500'): iterations or epochs must be said."""
    count, unit = step_count(text)
    if not str(text).strip().endswith(unit):
        raise ConfigError(f"{label} {str(text).strip()!r} has no unit; write iterations as '{count}it' or epochs as "
                          f"'{count}ep'")


def _comparable(text: str, end_text: str, iterations_per_epoch: int | None) -> tuple[int | None, int | None]:
    """Two step strings as numbers of one unit (iterations once the epoch length is known); (None, None) if not."""
    if iterations_per_epoch is not None:
        return parse_step(text, iterations_per_epoch), parse_step(end_text, iterations_per_epoch)
    (count, unit), (end_count, end_unit) = step_count(text), step_count(end_text)
    if unit == end_unit or count == 0:  # 0 is 0 in either unit
        return count, end_count
    return None, None


def _conv_depth_ok(family: str, depth: int) -> bool:
    if family == "conv":
        return depth % 2 == 0
    if family == "vgg":
        return depth in VGG_DEPTHS
    return depth >= 8 and (depth - 2) % 6 == 0


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


def _pair(text: str, label: str) -> list[str]:
    name, equals, value = text.rpartition("=")
    if not equals or not name.strip() or not value.strip():
        raise ConfigError(f"{label} item {text!r} must be NAME=VALUE, e.g. layers.0.weight=0.3")
    return [name.strip(), value.strip()]


def _type_text(annotation: Any) -> str:
    return str(annotation).replace("typing.", "")


def _build(cls: type, values: dict[str, Any], prefix: str, strict: bool) -> Any:
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
            kwargs[name] = _build(hint, raw, prefix=f"{prefix}{name}.", strict=strict)
        else:
            kwargs[name] = _coerce(raw, hint, prefix + name, strict)
    return cls(**kwargs)


def _coerce(raw: Any, hint: Any, label: str, strict: bool = False) -> Any:
    """Convert JSON/TOML/CLI text values to the annotated type, with a one-line error on failure.

    `strict` (values parsed from JSON or TOML): the value must already have the field's JSON type, since text there
    is a mistake rather than the command line's only form; "none"/"null" still unset an optional field (TOML has no
    null)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)) and type(None) in args:
        if raw is None or (isinstance(raw, str) and raw.lower() in ("none", "null", "")):
            return None
        inner = [arg for arg in args if arg is not type(None)][0]
        return _coerce(raw, inner, label, strict)
    if strict:
        _check_json_type(raw, hint, label)
    if origin is tuple:
        if isinstance(raw, str):
            text = raw.strip()
            if text.startswith(("[", "(")):
                try:
                    raw = json.loads(text.replace("(", "[").replace(")", "]"))
                except json.JSONDecodeError:
                    raise ConfigError(f"{label} value {raw!r} is not a list") from None
            else:
                raw = [item.strip() for item in text.split(",") if item.strip()]
                if len(args) == 2 and typing.get_origin(args[0]) is tuple:  # pairs: name=value,name2=value2
                    raw = [_pair(item, label) for item in raw]
        if not isinstance(raw, (list, tuple)):
            raise ConfigError(f"{label} value {raw!r} must be a list")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(item, args[0], label, strict) for item in raw)
        if len(raw) != len(args):
            raise ConfigError(f"{label} value {raw!r} must have {len(args)} items")
        return tuple(_coerce(item, arg, label, strict) for item, arg in zip(raw, args))
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


def _check_json_type(raw: Any, hint: Any, label: str) -> None:
    """ConfigError unless a parsed JSON/TOML value has the JSON type of `hint` (an integer is a number too)."""
    if typing.get_origin(hint) is tuple:
        ok, kind = isinstance(raw, (list, tuple)), "a list"
    elif hint is bool:
        ok, kind = isinstance(raw, bool), "true or false"
    elif hint is int:
        ok, kind = isinstance(raw, int) and not isinstance(raw, bool), "an integer"
    elif hint is float:
        ok, kind = isinstance(raw, (int, float)) and not isinstance(raw, bool), "a number"
    elif hint is str:
        ok, kind = isinstance(raw, str), "text"
    else:
        return
    if not ok:
        quoted = " (not text in quotes)" if isinstance(raw, str) else ""
        raise ConfigError(f"{label} value {raw!r} must be {kind}{quoted}")
