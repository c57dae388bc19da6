"""What an RL task holds in place of a dataset: the environment, its spaces and the PPO settings' shape."""

from __future__ import annotations

from dataclasses import dataclass, replace

from ticketlab.config import DataConfig, ExperimentConfig
from ticketlab.tasks.rl.envs import check_action_space, make_env
from ticketlab.tasks.rl.settings import RLConfig


@dataclass(frozen=True)
class EnvData:
    """The environment a run trains in (`name`, see envs.ENVIRONMENTS), its observation shape and action count,
    and the device agents run on. Environments are made by the trainer and the evaluator; this record is light."""

    name: str
    observation_shape: tuple[int, ...]
    actions: int
    rl: RLConfig = RLConfig()
    device: str = "cpu"

    def to(self, device) -> "EnvData":
        return replace(self, device=str(device))


def load_env_data(config: DataConfig, rl: RLConfig | None = None) -> EnvData:
    """The environment of `config.name` (checked: it exists, its extras are installed, its actions are discrete)."""
    env = make_env(config.name, training=False)
    try:
        actions = check_action_space(config.name, env.action_space)
        shape = tuple(int(size) for size in env.observation_space.shape)
    finally:
        env.close()
    return EnvData(config.name, shape, actions, rl or RLConfig())


def load_experiment_env(config: ExperimentConfig) -> EnvData:
    return load_env_data(config.data, config.rl)
