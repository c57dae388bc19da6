"""The reinforcement-learning task's config section, `rl` in config.json (`config.rl`). Torch-free: the config
and `ticketlab --help` read it without loading gymnasium or torch. The tasks registry registers it."""

from __future__ import annotations

from dataclasses import dataclass

from ticketlab.config.checks import check_bool, check_int, check_number
from ticketlab.errors import ConfigError


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
            check_int(f"rl.{name}", getattr(self, name), 1, 1_000_000)
        for name in ("gamma", "gae_lambda"):
            check_number(f"rl.{name}", getattr(self, name), 0, 1)
        check_number("rl.clip_coef", self.clip_coef, 0, None, low_open=True)
        for name in ("entropy_coef", "value_coef"):
            check_number(f"rl.{name}", getattr(self, name), 0, None)
        for name in ("clip_value_loss", "normalize_advantages", "deterministic_eval", "shared_trunk", "episodic_life"):
            check_bool(f"rl.{name}", getattr(self, name))
        if self.num_envs * self.rollout_steps < self.minibatches:
            raise ConfigError(f"rl.minibatches {self.minibatches} is more than the {self.num_envs * self.rollout_steps} "
                              "transitions of a rollout (rl.num_envs x rl.rollout_steps)")
