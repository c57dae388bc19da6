"""Environments: gymnasium's classic control (and Box2D's LunarLander) and Atari through ale-py, as vector
environments whose episodes the trainer seeds one by one.

Training environments are a `gymnasium.vector.SyncVectorEnv` with autoreset disabled: the trainer resets each
finished sub-environment itself with the seed of its next episode (derived from the data seed, the environment
index and the episode number), so every episode is a pure function of its seed and actions. That is what makes a
resumed run exact: the checkpoint stores each environment's episode number and the actions since its reset,
and resuming replays them (see `rollout.EnvRunner`). Native vectorized implementations (CartPole's
`CartPoleVectorEnv`) cannot reset one sub-environment with its own seed, so they are not used.

Atari (standard preprocessing, Machado et al. 2018 / CleanRL's ppo_atari.py): the ALE v5 environment with
frameskip 1 and sticky actions 0.25 as ALE's default, gymnasium's `AtariPreprocessing` (up to 30 no-op starts,
frame skip 4 with max-pooling, grayscale, 84 x 84), `FrameStackObservation` of 4; rewards are clipped to their
sign for training only. `rl.episodic_life` (off by default) ends a training episode at a lost life.
"""

from __future__ import annotations

from dataclasses import dataclass

from ticketlab.errors import ConfigError


@dataclass(frozen=True)
class EnvInfo:
    gym_id: str
    family: str  # "classic" or "atari"
    extra: str | None = None  # the pip extra its dependencies come with


ENVIRONMENTS = {
    "CartPole-v1": EnvInfo("CartPole-v1", "classic"),
    "Acrobot-v1": EnvInfo("Acrobot-v1", "classic"),
    "MountainCar-v0": EnvInfo("MountainCar-v0", "classic"),
    "LunarLander-v3": EnvInfo("LunarLander-v3", "classic", extra="ticketlab[box2d]"),
    "Pong": EnvInfo("ALE/Pong-v5", "atari", extra="ale-py"),
    "Breakout": EnvInfo("ALE/Breakout-v5", "atari", extra="ale-py"),
}
INSTALL = "pip install 'ticketlab[rl]'"


def env_info(name: str) -> EnvInfo:
    if name not in ENVIRONMENTS:
        raise ConfigError(f"unknown environment {name!r}; allowed: {', '.join(ENVIRONMENTS)}")
    return ENVIRONMENTS[name]


def _gymnasium():
    try:
        import gymnasium
    except ImportError:
        raise ConfigError(f"reinforcement learning needs gymnasium: {INSTALL}") from None
    return gymnasium


def make_env(name: str, *, training: bool, episodic_life: bool = False):
    """One environment of `name` with its preprocessing; ConfigError naming the install command when an extra
    (Box2D, ale-py) is missing."""
    gymnasium = _gymnasium()
    info = env_info(name)
    if info.family == "atari":
        try:
            import ale_py
        except ImportError:
            raise ConfigError("Atari environments need ale-py: pip install 'ticketlab[atari]'") from None
        gymnasium.register_envs(ale_py)
        from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation, TransformReward

        env = gymnasium.make(info.gym_id, frameskip=1)
        try:
            env = AtariPreprocessing(env, noop_max=30, frame_skip=4, screen_size=84, grayscale_obs=True,
                                     terminal_on_life_loss=training and episodic_life)
        except gymnasium.error.DependencyNotInstalled:  # the resizing needs OpenCV
            raise ConfigError("Atari preprocessing needs OpenCV: pip install 'ticketlab[atari]'") from None
        env = FrameStackObservation(env, 4)
        if training:
            import numpy as np

            env = TransformReward(env, np.sign)
        return env
    try:
        return gymnasium.make(info.gym_id)
    except gymnasium.error.DependencyNotInstalled:
        raise ConfigError(f"{name} needs {info.extra}: pip install '{info.extra}'") from None


def make_vector_env(name: str, num_envs: int, episodic_life: bool = False):
    """`num_envs` training copies of `name` in a SyncVectorEnv whose sub-environments the caller resets."""
    gymnasium = _gymnasium()
    from gymnasium.vector import AutoresetMode, SyncVectorEnv

    first = make_env(name, training=True, episodic_life=episodic_life)  # fail early, with one line, on an extra
    envs = [first] + [make_env(name, training=True, episodic_life=episodic_life) for _ in range(num_envs - 1)]
    vector = SyncVectorEnv([lambda env=env: env for env in envs], autoreset_mode=AutoresetMode.DISABLED)
    check_action_space(name, vector.single_action_space, gymnasium)
    return vector


def check_action_space(name: str, space, gymnasium=None) -> int:
    """The number of actions of a Discrete space; ConfigError for any other (the agents are categorical)."""
    gymnasium = gymnasium or _gymnasium()
    if not isinstance(space, gymnasium.spaces.Discrete):
        raise ConfigError(f"{name} has a {type(space).__name__} action space; the PPO agent handles Discrete actions "
                          "only")
    return int(space.n)
