"""Rollouts in a vector of environments whose episodes are seeded one by one, and whose state can be saved as
(episode numbers, actions since each reset) and restored by replaying those actions."""

from __future__ import annotations

import numpy as np
import torch

from ticketlab.seeds import derive_seed
from ticketlab.tasks.rl.envs import make_vector_env


class EnvRunner:
    """`num_envs` training environments: env i's episode e starts from reset(seed=derive_seed(data_seed, 'env',
    i, e)). Tracks each environment's return and length so far, and the finished episodes' returns."""

    def __init__(self, name: str, num_envs: int, data_seed: int, episodic_life: bool = False):
        self.envs = make_vector_env(name, num_envs, episodic_life)
        self.sub_envs = list(self.envs.envs)
        self.num_envs, self.data_seed = num_envs, data_seed
        self.episodes = np.zeros(num_envs, dtype=np.int64)
        self.actions: list[list[int]] = [[] for _ in range(num_envs)]
        self.returns = np.zeros(num_envs)
        self.lengths = np.zeros(num_envs, dtype=np.int64)
        self.observations = None

    def _seed(self, env: int) -> int:
        return derive_seed(self.data_seed, "env", env, int(self.episodes[env])) % (2**31)

    def start(self, state: dict | None = None) -> np.ndarray:
        """Reset every environment to its current episode's start; with `state` (from `state()`), replay each
        environment's actions since that reset, restoring the exact observation, return and length."""
        if state is not None:
            self.episodes = np.array(state["episodes"], dtype=np.int64)
            self.actions = [list(actions) for actions in state["actions"]]
        observations, _ = self.envs.reset(seed=[self._seed(env) for env in range(self.num_envs)])
        self.returns[:], self.lengths[:] = 0.0, 0
        longest = max((len(actions) for actions in self.actions), default=0)
        for position in range(longest):  # replay: environments whose history is shorter sit still
            active = np.array([position < len(actions) for actions in self.actions])
            for env in np.flatnonzero(active):
                sub = self.envs.envs[env]
                observation, reward, *_ = sub.step(self.actions[env][position])
                observations[env] = observation
                self.returns[env] += reward
                self.lengths[env] += 1
        self.observations = observations
        return observations

    def step(self, actions: np.ndarray):
        """Step every environment; finished ones are reset with their next episode's seed. Returns (rewards,
        terminated, truncated, the observations the next step starts from, the finished episodes' returns)."""
        # The sub-environments are stepped directly: with autoreset disabled that is all SyncVectorEnv.step does,
        # and its per-call bookkeeping (info merging, copies) cost as much as the CartPole steps themselves.
        actions = actions.tolist()
        outcomes = [env.step(action) for env, action in zip(self.sub_envs, actions)]
        for log, action in zip(self.actions, actions):
            log.append(action)
        observations = np.stack([outcome[0] for outcome in outcomes])
        rewards = np.array([outcome[1] for outcome in outcomes], dtype=np.float64)
        terminated = np.array([outcome[2] for outcome in outcomes], dtype=np.bool_)
        truncated = np.array([outcome[3] for outcome in outcomes], dtype=np.bool_)
        self.returns += rewards
        self.lengths += 1
        done = terminated | truncated
        finished = []
        if done.any():
            for env in np.flatnonzero(done).tolist():
                finished.append(float(self.returns[env]))
                self.episodes[env] += 1
                self.actions[env] = []
                observations[env] = self.sub_envs[env].reset(seed=self._seed(env))[0]
                self.returns[env], self.lengths[env] = 0.0, 0
        self.observations = observations
        return rewards, terminated, truncated, observations, finished

    def state(self) -> dict:
        return {"episodes": self.episodes.tolist(), "actions": [list(actions) for actions in self.actions]}

    def close(self) -> None:
        self.envs.close()


def evaluate_episodes(name: str, policy, seeds: list[int], deterministic: bool, sample_seed: int,
                      device="cpu") -> list[float]:
    """The undiscounted return of one episode per seed (whole games: no reward clipping or episodic life),
    the environments stepped together, actions from `policy(observations) -> logits`."""
    from ticketlab.tasks.rl.envs import make_env

    envs = [make_env(name, training=False) for _ in seeds]
    try:
        observations = [env.reset(seed=seed % (2**31))[0] for env, seed in zip(envs, seeds)]
        returns, active = [0.0] * len(envs), list(range(len(envs)))
        generator = torch.Generator().manual_seed(sample_seed)
        while active:
            batch = torch.as_tensor(np.stack([observations[index] for index in active]), device=device)
            with torch.no_grad():
                logits = policy(batch).cpu()
            actions = logits.argmax(-1) if deterministic else sample_actions(logits, generator)
            still = []
            for index, action in zip(active, actions.tolist()):
                observation, reward, terminated, truncated, _ = envs[index].step(action)
                observations[index] = observation
                returns[index] += float(reward)
                if not (terminated or truncated):
                    still.append(index)
            active = still
        return returns
    finally:
        for env in envs:
            env.close()


def sample_actions(logits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Categorical samples of each row of `logits` from `generator` (Gumbel-max: argmax(logits + Gumbel noise))."""
    uniform = torch.rand(logits.shape, generator=generator, device="cpu").clamp_(1e-20, 1.0)
    return (logits.cpu() - torch.log(-torch.log(uniform))).argmax(-1).to(logits.device)
