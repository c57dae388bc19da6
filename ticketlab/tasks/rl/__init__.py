"""Reinforcement learning: PPO agents (MLP actor-critics for classic control, the Nature-DQN CNN for Atari) in
gymnasium environments, scored by mean episodic return on fixed evaluation seeds.

Modules: `settings` (the `rl` config section, torch-free), `envs` (environments, preprocessing, extras), `data`
(the environment record the engine carries), `model` (actor-critics and their seeded init), `rollout` (seeded
episodes, replayable environment state, evaluation episodes), `ppo` (the trainer), `evaluate`, `task` (the TASK
the lottery engine calls). Needs the `[rl]` extra (gymnasium; `[atari]` adds ale-py). Importing the package
loads no torch (the tasks registry reads its settings); `TASK` loads on first use.
"""

from __future__ import annotations

import importlib


def __getattr__(name: str):
    if name == "TASK":
        return importlib.import_module("ticketlab.tasks.rl.task").TASK
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["TASK"]
