"""Reinforcement learning: PPO agents (MLP actor-critics for classic control, the Nature-DQN CNN for Atari) in
gymnasium environments, scored by mean episodic return on fixed evaluation seeds.

Modules: `envs` (environments, preprocessing, extras), `data` (the environment record the engine carries),
`model` (actor-critics and their seeded init), `rollout` (seeded episodes, replayable environment state,
evaluation episodes), `ppo` (the trainer), `evaluate`, `task` (the TASK the lottery engine calls). Needs the
`[rl]` extra (gymnasium; `[atari]` adds ale-py).
"""

from ticketlab.tasks.rl.task import TASK

__all__ = ["TASK"]
