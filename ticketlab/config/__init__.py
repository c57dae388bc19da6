"""Typed, frozen experiment configs that validate, serialize to JSON/TOML and hash to a run directory.

Modules: `steps` (step strings such as '500it' / '40ep'), `checks` (one-line value checks), `codec` (plain data
to configs and back, the hash payload), `sections` (the core model / data / train / prune sections),
`extensions` (the tables through which tasks add their own sections and checks), `experiment` (the experiment
config, config files). An experiment's size and limit are the lottery layer's (`ticketlab.lottery.estimate`).

This package must stay importable without torch (``ticketlab --help`` imports it), and it imports no task: the
tasks registry (`ticketlab.tasks`, loaded by `import ticketlab`) registers the task sections (`rl`) and the task,
dataset and model name checks.
"""

from ticketlab.config.checks import check_bool, check_choice, check_int, check_number, check_step
from ticketlab.config.experiment import (
    DEFAULT_VARIANTS,
    ExperimentConfig,
    check_steps,
    config_from_dict,
    field_paths,
    load_config,
)
from ticketlab.config.extensions import (
    EXPERIMENT_CHECKS,
    TASK_SECTIONS,
    register_check,
    register_section,
)
from ticketlab.config.sections import (
    CHANNEL_SCORE_NAMES,
    CONV_DEPTHS,
    EARLY_BIRD_CRITERIA,
    HF_IMAGE_MODEL,
    IMAGENET_RESNET_NAMES,
    INIT_NAMES,
    MAX_DEPTH,
    MAX_LR,
    MAX_WIDTH,
    OPTIMIZER_NAMES,
    SCHEDULE_NAMES,
    SCOPE_NAMES,
    STRATEGY_NAMES,
    UNIT_NAMES,
    VGG_DEPTHS,
    DataConfig,
    ModelConfig,
    PruneConfig,
    TrainConfig,
    parse_classes,
)
from ticketlab.config.steps import check_step_unit, parse_step, step_count

__all__ = [
    "CHANNEL_SCORE_NAMES", "CONV_DEPTHS", "DEFAULT_VARIANTS",
    "EARLY_BIRD_CRITERIA", "EXPERIMENT_CHECKS", "HF_IMAGE_MODEL", "IMAGENET_RESNET_NAMES", "INIT_NAMES",
    "MAX_DEPTH", "MAX_LR", "MAX_WIDTH", "OPTIMIZER_NAMES", "SCHEDULE_NAMES", "SCOPE_NAMES", "STRATEGY_NAMES",
    "TASK_SECTIONS", "UNIT_NAMES", "VGG_DEPTHS", "DataConfig", "ExperimentConfig", "ModelConfig",
    "PruneConfig", "TrainConfig", "check_bool", "check_choice",
    "check_int", "check_number", "check_step", "check_step_unit", "check_steps", "config_from_dict",
    "field_paths", "load_config", "parse_classes", "parse_step", "register_check",
    "register_section", "step_count",
]
