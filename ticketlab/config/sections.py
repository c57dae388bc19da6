"""The core config sections every task reads: the model, the data, training and pruning.

Torch-free. Which model and dataset names exist is the tasks registry's business (`ticketlab.tasks`), checked
when the experiment config is validated; settings only some tasks read are refused for the others by
`ticketlab.tasks.data_settings`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ticketlab.config.codec import unhashed
from ticketlab.config.checks import check_bool, check_choice, check_int, check_number, check_step
from ticketlab.config.steps import comparable_steps, step_count
from ticketlab.errors import ConfigError

OPTIMIZER_NAMES = ("sgd", "adam", "adamw")
SCHEDULE_NAMES = ("constant", "step", "cosine", "inverse_sqrt", "linear")
INIT_NAMES = ("glorot_normal", "glorot_uniform", "kaiming_normal", "torch_default")
SCOPE_NAMES = ("layerwise", "global")
STRATEGY_NAMES = ("magnitude",)
UNIT_NAMES = ("weight", "channel")  # prune.unit: single weights, or whole channels / neurons (structured)
CHANNEL_SCORE_NAMES = ("l1", "bn_scale")  # prune.channel_score under prune.unit channel
EARLY_BIRD_CRITERIA = ("weights", "channels")
DENSITY_NAMES = ("uniform", "er", "erk")  # prune.densities: layer density distributions (ticketlab.pruning.densities)
KERNEL_NAMES = ("dense", "sparse", "auto", "compact")  # train.kernels: how masked layers multiply

MAX_WIDTH = 1_000_000  # hidden units, channels or embedding size: far beyond any network that fits in memory
MAX_DEPTH = 10_000
MAX_LR = 100.0  # larger learning rates only diverge (an LSTM with plain SGD uses 20)
HF_IMAGE_MODEL = "hf_image"  # a Hugging Face image classifier from model.pretrained_dir (classification)
IMAGENET_RESNET_NAMES = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")  # torchvision layout
CONV_DEPTHS = {"conv": "even (two convs per pooling block)", "vgg": "one of 11, 13, 16, 19",
               "resnet": "6n+2 with n >= 1 (20, 32, 44, 56, 110)"}
VGG_DEPTHS = (11, 13, 16, 19)

_UNIFORM_INIT = re.compile(r"^uniform_(\d+(\.\d*)?|\.\d+)$")
_N_M = re.compile(r"^(\d{1,4}):(\d{1,4})$", re.ASCII)
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
    # a .safetensors state_dict every trial starts from (pre-trained weights: θ0, and `rewind 0it`, are these);
    # None: θ0 is drawn from the trial's seed
    weights: str | None = None
    # hf_image: a local directory written by `save_pretrained` (any AutoModelForImageClassification); θ0 is its
    # weights, with a head of another class count drawn from the trial seed
    pretrained_dir: str | None = None

    def validate(self) -> None:
        if not (isinstance(self.init, str) and _UNIFORM_INIT.match(self.init)):  # 'uniform_<r>': U(-r, r) (lstm)
            check_choice("model.init", self.init, INIT_NAMES + ("uniform_<r>",))
        if not isinstance(self.hidden, tuple):
            raise ConfigError(f"model.hidden {self.hidden!r} must be a list of widths, e.g. 256,256")
        for width in self.hidden:
            check_int(f"model.hidden {list(self.hidden)}: width", width, 1, MAX_WIDTH)
        check_int("model.width", self.width, 1, MAX_WIDTH, unset_ok=True)
        check_int("model.depth", self.depth, 1, MAX_DEPTH, unset_ok=True)
        check_int("model.embedding_dim", self.embedding_dim, 1, MAX_WIDTH, unset_ok=True)
        check_number("model.dropout", self.dropout, 0, 1, high_open=True, what="a probability")
        check_bool("model.tie_weights", self.tie_weights)
        check_int("model.heads", self.heads, 1, MAX_WIDTH, unset_ok=True)
        check_int("model.ffn_dim", self.ffn_dim, 1, MAX_WIDTH, unset_ok=True)
        if self.weights is not None and not (isinstance(self.weights, str) and self.weights.endswith(".safetensors")):
            raise ConfigError(f"model.weights {self.weights!r} must be a .safetensors file (or unset)")
        if self.pretrained_dir is not None and not (isinstance(self.pretrained_dir, str) and self.pretrained_dir.strip()):
            raise ConfigError(f"model.pretrained_dir {self.pretrained_dir!r} must be a local model directory or unset")
        if self.name == HF_IMAGE_MODEL and self.pretrained_dir is None:
            raise ConfigError(f"model.pretrained_dir is unset; it goes with model.name {HF_IMAGE_MODEL!r}: name the "
                              "local directory save_pretrained wrote (an AutoModelForImageClassification)")
        if self.name != HF_IMAGE_MODEL and self.pretrained_dir is not None:
            raise ConfigError(f"model.pretrained_dir {self.pretrained_dir!r} goes with model.name {HF_IMAGE_MODEL!r} "
                              f"only, not {self.name!r}: add --model.name {HF_IMAGE_MODEL}, or leave it unset")
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
    data_dir: str | None = unhashed(None)  # a local directory with the dataset files
    cache_dir: str | None = unhashed(None)  # download cache (default $TICKETLAB_CACHE or ~/.cache/ticketlab)
    download: bool = unhashed(True)
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
    loader_workers: int | None = unhashed(None)

    def validate(self) -> None:
        if self.classes is not None:
            parse_classes(self.classes)
        check_int("data.image_size", self.image_size, 1, 1024, unset_ok=True)
        if self.channels is not None and self.channels not in (1, 3):
            raise ConfigError(f"data.channels {self.channels!r} must be 1 or 3, or unset")
        check_int("data.validation_size", self.validation_size, 1)
        check_int("data.train_size", self.train_size, 1, unset_ok=True)
        check_int("data.sequence_length", self.sequence_length, 1)
        check_int("data.vocab_size", self.vocab_size, 5, 1 << 24, unset_ok=True)
        check_int("data.eval_size", self.eval_size, 1, unset_ok=True)
        check_int("data.loader_workers", self.loader_workers, 0, 64, unset_ok=True)
        for label, value in (("data.source", self.source), ("data.target", self.target)):
            if value is not None and not (isinstance(value, str) and re.fullmatch(r"[a-z]{2,3}(_[A-Za-z]{2,4})?", value)):
                raise ConfigError(f"{label} {value!r} must be a language code such as de or en")
        for label, value in (("data.data_dir", self.data_dir), ("data.cache_dir", self.cache_dir)):
            if value is not None and not (isinstance(value, str) and value.strip()):
                raise ConfigError(f"{label} {value!r} must be a directory path or unset")
        check_bool("data.download", self.download)
        check_bool("data.augment", self.augment)


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
    # masked Linear layers: 'dense' matmuls on the masked weights; 'sparse' CSR kernels over the kept weights
    # (same results up to rounding); 'compact': jobs whose mask removes whole channels (prune.unit channel) train as
    # the smaller network; 'auto': compact where it applies to a job trained alone, else sparse for the layers where
    # a cached per-machine calibration says it wins
    kernels: str = "dense"

    def validate(self) -> None:
        check_choice("train.optimizer", self.optimizer, OPTIMIZER_NAMES)
        check_choice("train.kernels", self.kernels, KERNEL_NAMES)
        check_choice("train.schedule", self.schedule, SCHEDULE_NAMES)
        check_number("train.lr", self.lr, 0, MAX_LR, low_open=True)
        check_number("train.momentum", self.momentum, 0, 1, high_open=True)
        check_number("train.weight_decay", self.weight_decay, 0, 1)
        check_number("train.gamma", self.gamma, 0, None, low_open=True)
        if self.clip_grad_norm is not None:
            check_number("train.clip_grad_norm", self.clip_grad_norm, 0, None, low_open=True)
        check_int("train.batch_size", self.batch_size, 1)
        check_number("train.beta2", self.beta2, 0, 1, high_open=True)
        check_number("train.eps", self.eps, 0, 1, low_open=True)
        check_number("train.label_smoothing", self.label_smoothing, 0, 1, high_open=True)
        check_int("train.beam_size", self.beam_size, 1, 1000)
        if self.schedule == "inverse_sqrt" and step_count(self.warmup)[0] < 1:
            raise ConfigError("train.schedule 'inverse_sqrt' needs train.warmup of at least 1 step (its peak)")
        check_bool("train.nesterov", self.nesterov)
        if self.momentum > 0 and self.optimizer != "sgd":
            raise ConfigError(f"train.momentum {self.momentum} applies to train.optimizer 'sgd' only, "
                              f"not {self.optimizer!r}; leave it 0")
        if self.nesterov and (self.optimizer != "sgd" or self.momentum <= 0):
            raise ConfigError("train.nesterov needs train.optimizer 'sgd' with train.momentum > 0")
        for name in ("steps", "warmup", "eval_every"):
            check_step(f"train.{name}", getattr(self, name))
        if not isinstance(self.milestones, tuple):
            raise ConfigError(f"train.milestones {self.milestones!r} must be a list of steps, e.g. 80ep,120ep")
        for milestone in self.milestones:
            check_step("train.milestones", milestone)
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
    # GraSP divides the logits by this in both of its passes (g and Hg), as Wang et al.'s code does (T = 200,
    # github.com/alecwangcq/GraSP pruner/GraSP.py); 1: the plain loss
    grasp_temperature: float = 200.0
    # early-bird tickets: a mask every `early_bird_every` steps of dense training; detected when the last
    # `early_bird_window` masks are all within `early_bird_threshold` (normalized Hamming distance) of the newest
    early_bird_every: str = "1ep"
    early_bird_window: int = 5
    early_bird_threshold: float = 0.1
    early_bird_criterion: str = "weights"  # 'channels': the masks compared are BatchNorm-scale channel masks
    unit: str = "weight"  # 'channel': prune whole output channels / neurons (rates are fractions of channels)
    channel_score: str = "l1"  # unit 'channel': 'l1' (filter L1 norm) or 'bn_scale' (|BatchNorm scale|)
    # N:M sparsity ('2:4'): at most N of every M consecutive weights along each layer's input dimension survive,
    # exactly N while a level keeps at least N/M of the layer (the pattern sparse tensor cores run)
    n_m: str | None = None
    # gradual magnitude pruning (variant 'gmp', Zhu & Gupta 2017): from gmp_start to gmp_end the sparsity rises
    # from gmp_initial_sparsity to the level's on the cubic schedule, the mask recomputed every gmp_every steps
    gmp_start: str = "0it"
    gmp_end: str | None = None  # None: 3/4 of train.steps or gmp_start if later (the rest trains the final mask)
    gmp_every: str = "100it"
    gmp_initial_sparsity: float = 0.0
    # layer densities for the methods that fix each layer's budget before they have scores ('uniform', 'er', 'erk'):
    # None keeps each method's default (rigl and set: 'erk', as the papers; random_pruning: the ticket's per-layer
    # counts); set, random_pruning draws its mask at the level's overall density with this distribution instead
    densities: str | None = None
    # dynamic sparse training (variants 'rigl', 'set'): every dst_every steps until dst_end, drop the fraction
    # dst_drop_fraction / 2 * (1 + cos(pi * t / dst_end)) of each layer's active weights and regrow as many
    dst_every: str = "100it"
    dst_end: str | None = None  # None: 3/4 of train.steps
    dst_drop_fraction: float = 0.3

    def n_m_pattern(self) -> tuple[int, int] | None:
        """(N, M) of `n_m`, or None when unset."""
        if self.n_m is None:
            return None
        match = _N_M.match(self.n_m) if isinstance(self.n_m, str) else None
        if match is None or not 1 <= int(match[1]) < int(match[2]):
            raise ConfigError(f"prune.n_m {self.n_m!r} must be N:M with 1 <= N < M, e.g. 2:4 or 1:4")
        return int(match[1]), int(match[2])

    def validate(self) -> None:
        check_choice("prune.strategy", self.strategy, STRATEGY_NAMES)
        check_choice("prune.scope", self.scope, SCOPE_NAMES)
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
                check_number(label, rate, 0, 1, low_open=True, high_open=True, what="a fraction")
        check_int("prune.levels", self.levels, 0)
        if self.target_remaining_percent is not None:
            check_number("prune.target_remaining_percent", self.target_remaining_percent, 0, 100, low_open=True,
                          what="")
        check_step("prune.rewind", self.rewind)
        check_bool("prune.rewind_optimizer_state", self.rewind_optimizer_state)
        check_choice("prune.at_init_scope", self.at_init_scope, SCOPE_NAMES)
        check_int("prune.score_batches", self.score_batches, 1)
        check_int("prune.synflow_rounds", self.synflow_rounds, 1)
        check_number("prune.grasp_temperature", self.grasp_temperature, 0, None, low_open=True, what="")
        check_step("prune.early_bird_every", self.early_bird_every)
        if step_count(self.early_bird_every)[0] < 1:
            raise ConfigError(f"prune.early_bird_every {self.early_bird_every!r} must be at least 1 iteration")
        check_int("prune.early_bird_window", self.early_bird_window, 2)
        check_number("prune.early_bird_threshold", self.early_bird_threshold, 0, 1, low_open=True,
                      what="a fraction")
        check_choice("prune.early_bird_criterion", self.early_bird_criterion, EARLY_BIRD_CRITERIA)
        if self.at_init_scope == "layerwise" and self.scope == "global":
            raise ConfigError("prune.at_init_scope 'layerwise' needs per-layer counts: use it with prune.scope "
                              "layerwise (prune.scope global plans totals only)")
        if self.finetune_steps is not None:
            check_step("prune.finetune_steps", self.finetune_steps)
            if step_count(self.finetune_steps)[0] < 1:
                raise ConfigError(f"prune.finetune_steps {self.finetune_steps!r} must be at least 1 iteration")
        self._validate_gmp()
        self._validate_dst()
        check_choice("prune.unit", self.unit, UNIT_NAMES)
        check_choice("prune.channel_score", self.channel_score, CHANNEL_SCORE_NAMES)
        if self.unit == "channel" and self.strategy != "magnitude":
            raise ConfigError(f"prune.strategy {self.strategy!r} scores single weights; with prune.unit 'channel' "
                              "channels are scored by prune.channel_score (l1 or bn_scale)")
        if self.n_m_pattern() is not None and self.unit == "channel":
            raise ConfigError(f"prune.n_m {self.n_m!r} is a pattern of single weights; use it with prune.unit "
                              "'weight'")
        if self.densities is not None and self.unit == "channel":
            raise ConfigError(f"prune.densities {self.densities!r} distributes single weights over the layers; use "
                              "it with prune.unit 'weight'")

    def _validate_dst(self) -> None:
        if self.densities is not None:
            check_choice("prune.densities", self.densities, DENSITY_NAMES)
        check_step("prune.dst_every", self.dst_every)
        if step_count(self.dst_every)[0] < 1:
            raise ConfigError(f"prune.dst_every {self.dst_every!r} must be at least 1 iteration")
        if self.dst_end is not None:
            check_step("prune.dst_end", self.dst_end)
            if step_count(self.dst_end)[0] < 1:
                raise ConfigError(f"prune.dst_end {self.dst_end!r} must be at least 1 iteration")
        check_number("prune.dst_drop_fraction", self.dst_drop_fraction, 0, 1, low_open=True, high_open=True,
                     what="a fraction")

    def _validate_gmp(self) -> None:
        check_step("prune.gmp_start", self.gmp_start)
        if self.gmp_end is not None:
            check_step("prune.gmp_end", self.gmp_end)
            start, end = comparable_steps(self.gmp_start, self.gmp_end, None)
            if start is not None and start > end:
                raise ConfigError(f"prune.gmp_end {self.gmp_end!r} must not come before prune.gmp_start "
                                  f"{self.gmp_start!r}")
        check_step("prune.gmp_every", self.gmp_every)
        if step_count(self.gmp_every)[0] < 1:
            raise ConfigError(f"prune.gmp_every {self.gmp_every!r} must be at least 1 iteration")
        check_number("prune.gmp_initial_sparsity", self.gmp_initial_sparsity, 0, 1, high_open=True,
                     what="a fraction")


def _conv_depth_ok(family: str, depth: int) -> bool:
    if family == "conv":
        return depth % 2 == 0
    if family == "vgg":
        return depth in VGG_DEPTHS
    return depth >= 8 and (depth - 2) % 6 == 0
