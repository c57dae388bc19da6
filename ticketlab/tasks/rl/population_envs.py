"""The environments of a PPO population: the members' training environments stepped in one flat pass, and
their evaluation episodes played together.

Each member keeps its own `EnvRunner` (E environments, its episode seeds and replay logs, so its checkpoint is
train_agent's), but the K x E sub-environments are stepped in one flat pass with one set of numpy arrays per step
(`PopulationEnvs`); one vector env over all K x E would need the same per-member seeds and logs. Evaluation plays
the episodes of every member due together, one batched policy forward per step (`PopulationEvaluator`).
"""

from __future__ import annotations

import numpy as np
import torch

from ticketlab.tasks.rl.settings import RLConfig
from ticketlab.seeds import derive_seed
from ticketlab.tasks.rl.envs import make_env
from ticketlab.tasks.rl.evaluate import EVAL_SEED_BASE, evaluation_seeds
from ticketlab.tasks.rl.rollout import EnvRunner, sample_actions
from ticketlab.tasks.rl.stacked_policy import StackedActorCritic
from ticketlab.training.population import RowStack


class PopulationEnvs:
    """The members' EnvRunners stepped as one flat list of K x E environments: one Python pass and one set of
    numpy arrays per step instead of K (the runners keep each member's episode numbers and replay logs, so
    `runner.state()` checkpoints a member exactly as train_agent's runner would)."""

    def __init__(self, runners: list[EnvRunner]) -> None:
        self.runners = runners
        self.per_member = runners[0].num_envs
        self.envs = [env for runner in runners for env in runner.sub_envs]
        self.returns = np.concatenate([runner.returns for runner in runners])

    def write_back(self) -> None:
        """Hand the returns of the episodes under way back to the runners."""
        for row, runner in enumerate(self.runners):
            runner.returns[:] = self.returns[row * self.per_member:(row + 1) * self.per_member]

    def step(self, actions: np.ndarray):
        """actions [K, E] -> (rewards [K, E], done [K, E], next observations [K, E, ...], finished returns per
        member)."""
        count, per_member = len(self.runners), self.per_member
        flat = actions.reshape(-1).tolist()
        outcomes = [env.step(action) for env, action in zip(self.envs, flat)]
        for row, runner in enumerate(self.runners):
            for log, action in zip(runner.actions, flat[row * per_member:(row + 1) * per_member]):
                log.append(action)
        observations = np.stack([outcome[0] for outcome in outcomes])
        rewards = np.array([outcome[1] for outcome in outcomes], dtype=np.float64)
        done = np.array([outcome[2] or outcome[3] for outcome in outcomes], dtype=np.bool_)
        self.returns += rewards
        finished: list[list[float]] = [[] for _ in range(count)]
        if done.any():
            for index in np.flatnonzero(done).tolist():
                row, env = divmod(index, per_member)
                runner = self.runners[row]
                finished[row].append(float(self.returns[index]))
                runner.episodes[env] += 1
                runner.actions[env] = []
                observations[index] = runner.sub_envs[env].reset(seed=runner._seed(env))[0]
                self.returns[index] = 0.0
        observations = observations.reshape(count, per_member, *observations.shape[1:])
        for row, runner in enumerate(self.runners):
            runner.observations = observations[row]
        return rewards.reshape(count, per_member), done.reshape(count, per_member), observations, finished


class PopulationEvaluator:
    """The evaluation episodes of several members played together: one batched policy forward per step over all
    their episodes. Each member plays what `evaluate.evaluate` plays for it alone: the same fixed seeds, the
    greedy action (or samples from the same generator, in the same order), so the same returns. The
    environments are made once and reseeded by every evaluation's resets."""

    def __init__(self, name: str, rl: RLConfig) -> None:
        self.name, self.rl, self.envs = name, rl, []

    def episode_returns(self, stack: RowStack, net: StackedActorCritic, rows: list[int],
                        split: str) -> list[list[float]]:
        """The evaluation episode returns of each member in `rows` of `stack` on the episodes of `split` (seed
        order)."""
        if not rows:
            return []
        seeds = evaluation_seeds(split, self.rl.eval_episodes)
        episodes, count = len(seeds), len(rows)
        while len(self.envs) < count * episodes:
            self.envs.append(make_env(self.name, training=False))
        envs = self.envs[:count * episodes]
        observations = np.stack([env.reset(seed=seeds[index % episodes] % (2**31))[0]
                                 for index, env in enumerate(envs)])
        returns, active = np.zeros(count * episodes), np.ones(count * episodes, dtype=np.bool_)
        select = torch.tensor(rows, dtype=torch.long, device=stack.device)
        params = [value.detach().index_select(0, select) for value in stack.params]
        generators = [torch.Generator().manual_seed(derive_seed(EVAL_SEED_BASE, split, "actions")) for _ in rows]
        while active.any():
            batch = torch.as_tensor(observations.reshape(count, episodes, *observations.shape[1:]),
                                    device=stack.device)
            with torch.no_grad():
                logits = net.policy_logits(params, batch).cpu()
            if self.rl.deterministic_eval:
                actions = logits.argmax(-1).reshape(-1)
            else:  # as evaluate_episodes: one draw per step for the member's episodes still running, in order
                actions = torch.zeros(count * episodes, dtype=torch.int64)
                for row, generator in enumerate(generators):
                    running = torch.from_numpy(np.flatnonzero(active[row * episodes:(row + 1) * episodes]))
                    actions[row * episodes + running] = sample_actions(logits[row, running], generator)
            chosen = actions.tolist()
            for index in np.flatnonzero(active).tolist():
                observation, reward, terminated, truncated, _ = envs[index].step(chosen[index])
                observations[index] = observation
                returns[index] += float(reward)
                if terminated or truncated:
                    active[index] = False
        return [[float(value) for value in returns[row * episodes:(row + 1) * episodes]] for row in range(count)]

    def close(self) -> None:
        for env in self.envs:
            env.close()
