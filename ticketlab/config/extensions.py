"""The two tables through which higher layers extend the experiment config without the config importing them.

- `TASK_SECTIONS`: a task's own config section (a frozen dataclass with defaults and a `validate()` method), by
  the top-level key it has in config.json (`rl` for reinforcement learning). Every experiment carries every
  registered section (config.json lists it with its defaults, as it always did); the hash leaves a section out
  while it holds its defaults, so registering a section keeps every old run directory's name.
- `EXPERIMENT_CHECKS`: whole-config checks run by `ExperimentConfig.validate` after the sections' own checks (the
  tasks registry registers the task / dataset / model name checks here).
- `EXPERIMENT_DEFAULTS`: defaults of top-level keys that only a higher layer knows (the tasks registry names the
  default `task`); like any default, the hash leaves the value out.

Both are filled on import of the package that defines the entry; `import ticketlab` loads the built-in tasks.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from ticketlab.registry import Registry

TASK_SECTIONS: Registry[type] = Registry("config section")
EXPERIMENT_CHECKS: Registry[Callable[[Any], None]] = Registry("config check")
EXPERIMENT_DEFAULTS: Registry[Any] = Registry("experiment default")

# top-level keys of every experiment config (ExperimentConfig's own fields): no section may take one
CORE_KEYS = ("task", "model", "data", "train", "prune", "variants", "trials", "seed", "sections")


def register_section(name: str, section: type, *, replace: bool = False) -> type:
    """Add config section `name` (a frozen dataclass whose no-argument instance holds its defaults and whose
    `validate()` raises ConfigError) and return it; `ticketlab config`, `--NAME.FIELD` flags, config files and
    `config.NAME` then know it."""
    if name in CORE_KEYS:
        raise ValueError(f"config section {name!r} would shadow the experiment config's own key {name!r}")
    if not (dataclasses.is_dataclass(section) and isinstance(section, type) and hasattr(section, "validate")):
        raise ValueError(f"config section {name!r} must be a dataclass with a validate() method, not {section!r}")
    return TASK_SECTIONS.register(name, section, replace=replace)


def register_check(name: str, check: Callable[[Any], None], *, replace: bool = False) -> Callable[[Any], None]:
    """Add a whole-config check (called with the ExperimentConfig; raises ConfigError) and return it."""
    return EXPERIMENT_CHECKS.register(name, check, replace=replace)
