"""Proximal Policy Optimization (Schulman et al. 2017) with exact masks, evaluation bookkeeping and exact resume.

One readable loop after CleanRL's ppo.py (Huang et al. 2022; its defaults are `RLConfig`'s): a rollout of
`rl.rollout_steps` in each of `rl.num_envs` environments, generalized advantage estimation, then
`rl.update_epochs` passes over `rl.minibatches` shuffled minibatches of the clipped surrogate objective, the
clipped value loss and an entropy bonus, gradients clipped by global norm (`train.clip_grad_norm`, 0.5 there)
after masking, the learning rate annealed linearly to 0 (`train.schedule linear`). A training *step* of the
lottery engine is one such iteration (rollout + update), so `train.steps 500it` is 500 iterations and
`prune.rewind 10it` rewinds to the weights after 10.

Randomness: episode seeds (see `rollout.EnvRunner`), action sampling and minibatch order all derive from
(data_seed, iteration). Resume: a checkpoint (at an iteration boundary) holds the weights, optimizer state, the
evaluation record, and each environment's episode number and actions since its reset, which are replayed.

Evaluation every `train.eval_every`: the mean return of `rl.eval_episodes` whole episodes on validation seeds
and, where the validation return is the best so far, on test seeds; "loss" is the negative validation return,
so the early-stopping point is the best validation return. Every mean is stored with the episode returns it
averages (in the order of `evaluate.evaluation_seeds`): each metrics.jsonl row holds `val_returns` (and
`test_returns` where it has `test_return`; `train_returns`, the training episodes finished since the last row),
and the result the `early_stop_*_returns` and `final_*_returns` behind its means.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Unpack

import numpy as np
import torch
from torch import nn

from ticketlab.config import TrainConfig
from ticketlab.seeds import derive_seed
from ticketlab.tasks.rl.rollout import EnvRunner, sample_actions
from ticketlab.training.bookkeeping import TrainingInterrupted
from ticketlab.training.checkpoint import save_checkpoint_parts
from ticketlab.training.early_stop import EarlyStop, TrainResult
from ticketlab.training.engine import RunOptions, json_metadata, train_masked
from ticketlab.training.optim import optimizer_tensors

__all__ = ["AgentTrainResult", "TrainingInterrupted", "train_agent"]

# The one result class. Returns are undiscounted episode returns, averaged over the evaluation episodes;
# early_stop_val_loss is the negative validation return at the best evaluation. Details: early_stop_val_return,
# final_train_return (the training episodes finished in the last evaluation interval), env_steps, and the
# evaluation episodes' returns behind each mean (None: a row from a checkpoint written before they were kept).
AgentTrainResult = TrainResult


def train_agent(model: nn.Module, data, config: TrainConfig, *, rl=None, masks: dict[str, torch.Tensor],
                data_seed: int, augment: Callable | None = None, **run: Unpack[RunOptions]) -> TrainResult:
    """Train the actor-critic `model` in place with PPO (settings `rl`, an RLConfig) from `start_step` to
    `total_steps` iterations; the keyword arguments mean what they mean for `ticketlab.training.loop.train_model`
    (`augment` is not used)."""
    procedure = _PPO(model, data, config, rl or data.rl, data_seed)
    return train_masked(model, config, procedure, steps_per_epoch=1, device=procedure.device, masks=masks, **run)


class _PPO:
    """PPO for `train_masked`: a step is one rollout and update (`_iteration`); checkpoints add each
    environment's episode number and actions since its reset ("envs"), which are replayed on resume."""

    checkpoint_json_keys = ("record", "envs")
    grads_to_none = False
    checkpoint_on_stop = True

    def __init__(self, model: nn.Module, data, config: TrainConfig, rl, data_seed: int) -> None:
        from ticketlab.tasks.rl.evaluate import episode_returns

        self.model, self.data, self.config, self.rl, self.data_seed = model, data, config, rl, data_seed
        self.play = episode_returns
        self.device = torch.device(data.device)
        self.record = EvalRecord()
        self.env_state: dict | None = None
        self.runner = EnvRunner(data.name, rl.num_envs, data_seed, rl.episodic_life)

    def restore(self, parts: dict, metadata: dict) -> str | None:
        self.record.load(metadata["record"])
        self.env_state = metadata["envs"]
        return None

    def start(self, step: int, total: int, forward: nn.Module) -> None:
        self.observations = self.runner.start(self.env_state or fresh_env_state(self.rl.num_envs))

    def train_step(self, step: int, update) -> None:
        self.observations, finished = _iteration(self.model, update, self.runner, self.observations, self.rl,
                                                 self.data_seed, step, self.device)
        self.record.train_returns += finished
        return None

    def observe(self, step: int, train_loss: float) -> dict:
        return self.record.observe(step, self.model, self.data, self.rl, self.env_steps(step), self.play)

    def env_steps(self, step: int) -> int:
        return step * self.rl.num_envs * self.rl.rollout_steps

    def checkpoint_state(self) -> tuple[dict, dict]:
        return {}, json_metadata(record=self.record.state(), envs=self.runner.state())

    def close(self) -> None:
        self.runner.close()

    def result(self, step: int) -> TrainResult:
        return agent_result(self.record, step, self.model, self.data, self.rl, self.play)


def generalized_advantages(rewards: torch.Tensor, values: torch.Tensor, dones: torch.Tensor, next_value: torch.Tensor,
                           gamma: float, gae_lambda: float) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE (Schulman et al. 2016) over [steps, ...] rollouts: (advantages, returns). An episode that ended (done,
    also by truncation) is not bootstrapped past its end, as in CleanRL."""
    steps = len(rewards)
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[0])
    for t in reversed(range(steps)):
        following = next_value if t == steps - 1 else values[t + 1]
        not_done = 1.0 - dones[t]
        delta = rewards[t] + gamma * following * not_done - values[t]
        running = delta + gamma * gae_lambda * not_done * running
        advantages[t] = running
    return advantages, advantages + values


def fresh_env_state(num_envs: int) -> dict:
    """The environment state of a fresh or rewound start: every environment at the start of its episode 0."""
    return {"episodes": [0] * num_envs, "actions": [[] for _ in range(num_envs)]}


def agent_result(record: "EvalRecord", step: int, model: nn.Module, data, rl, play) -> TrainResult:
    """The result of an agent that stopped training at `step` with evaluation record `record`; `play(model, data,
    split, rl)` gives a split's evaluation episode returns (see `EvalRecord.observe`)."""
    from ticketlab.tasks.rl.evaluate import mean_return

    if record.last_row is None or record.last_row["step"] != step:  # no training happened (start == total)
        record.observe(step, model, data, rl, step * rl.num_envs * rl.rollout_steps, play)
    last = record.last_row
    final_test, final_test_returns = last.get("test_return"), last.get("test_returns")
    if final_test is None:
        final_test_returns = play(model, data, "test", rl)
        final_test = mean_return(final_test_returns)
    return TrainResult(
        early_stop_iteration=record.best_step,
        early_stop_val_loss=record.best_val_loss,
        early_stop_test_metric=record.best_test_return,
        final_iteration=step,
        final_val_loss=-last["val_return"],
        final_test_metric=final_test,
        details={"early_stop_val_return": record.best_val_return, "final_train_return": last["train_return"],
                 "env_steps": step * rl.num_envs * rl.rollout_steps,
                 "early_stop_val_returns": record.best_val_returns, "early_stop_test_returns": record.best_test_returns,
                 "final_val_returns": last.get("val_returns"), "final_test_returns": final_test_returns},
    )


def _iteration(model, update, runner: EnvRunner, observations, rl, data_seed: int, iteration: int, device):
    """One rollout and PPO update (`update(loss)` for each minibatch: the engine's exact-mask step); returns (the
    observations the next rollout starts from, finished returns)."""
    steps, envs = rl.rollout_steps, rl.num_envs
    shape = observations.shape[1:]
    obs_buffer = torch.zeros((steps, envs, *shape), dtype=torch.as_tensor(observations).dtype, device=device)
    actions = torch.zeros((steps, envs), dtype=torch.int64, device=device)
    log_probs = torch.zeros((steps, envs), device=device)
    rewards = torch.zeros((steps, envs), device=device)
    dones = torch.zeros((steps, envs), device=device)  # 1 where the step ended its episode (terminated or truncated)
    values = torch.zeros((steps, envs), device=device)
    generator = torch.Generator().manual_seed(derive_seed(data_seed, "actions", iteration))
    finished_returns = []
    last_observations = observations
    for t in range(steps):
        batch = torch.as_tensor(observations, device=device)
        obs_buffer[t] = batch
        with torch.no_grad():
            logits, value = model(batch)
        action = sample_actions(logits, generator)
        actions[t], values[t] = action, value
        log_probs[t] = torch.log_softmax(logits, -1).gather(1, action[:, None]).squeeze(1)
        reward, terminated, truncated, observations, finished = runner.step(action.cpu().numpy())
        rewards[t] = torch.as_tensor(reward, dtype=torch.float32, device=device)
        done = terminated | truncated
        dones[t] = torch.as_tensor(done, dtype=torch.float32, device=device)
        finished_returns += finished
        last_observations = observations
    with torch.no_grad():
        next_value = model(torch.as_tensor(last_observations, device=device))[1]
    advantages, returns = generalized_advantages(rewards, values, dones, next_value, rl.gamma, rl.gae_lambda)

    flat = (obs_buffer.reshape(steps * envs, *shape), actions.reshape(-1), log_probs.reshape(-1),
            advantages.reshape(-1), returns.reshape(-1), values.reshape(-1))
    batch_size = steps * envs
    minibatch = batch_size // rl.minibatches
    for epoch in range(rl.update_epochs):
        order_generator = torch.Generator().manual_seed(derive_seed(data_seed, "minibatches", iteration, epoch))
        order = torch.randperm(batch_size, generator=order_generator).to(device)
        for start in range(0, minibatch * rl.minibatches, minibatch):
            rows = order[start: start + minibatch]
            obs, act, old_log_prob, adv, ret, old_value = (tensor[rows] for tensor in flat)
            logits, value = model(obs)
            log_prob_all = torch.log_softmax(logits, -1)
            new_log_prob = log_prob_all.gather(1, act[:, None]).squeeze(1)
            entropy = -(log_prob_all.exp() * log_prob_all).sum(-1).mean()
            ratio = (new_log_prob - old_log_prob).exp()
            if rl.normalize_advantages:
                adv = (adv - adv.mean()) / (adv.std() + 1e-8)
            policy_loss = torch.max(-adv * ratio, -adv * ratio.clamp(1 - rl.clip_coef, 1 + rl.clip_coef)).mean()
            if rl.clip_value_loss:
                clipped = old_value + (value - old_value).clamp(-rl.clip_coef, rl.clip_coef)
                value_loss = 0.5 * torch.max((value - ret) ** 2, (clipped - ret) ** 2).mean()
            else:
                value_loss = 0.5 * ((value - ret) ** 2).mean()
            update(policy_loss - rl.entropy_coef * entropy + rl.value_coef * value_loss)
    return observations, finished_returns


class EvalRecord(EarlyStop):
    """An agent's early stopping: the best validation return (its negative is the record's loss), its step and the
    test return there (with their episode returns); the training returns since the last row."""

    def __init__(self) -> None:
        super().__init__({"test_return": float("nan"), "val_returns": None, "test_returns": None})
        self.train_returns: list[float] = []

    @property
    def best_val_return(self) -> float:
        return -self.best_val_loss

    @property
    def best_test_return(self) -> float:
        return self.best["test_return"]

    @property
    def best_val_returns(self) -> list[float] | None:
        return self.best["val_returns"]

    @property
    def best_test_returns(self) -> list[float] | None:
        return self.best["test_returns"]

    def observe(self, step, model, data, rl, env_steps: int, play) -> dict:
        """The metrics row of an evaluation at `step`: `play(model, data, split, rl)` gives the episode returns of
        'val' (and of 'test' where validation improves); the row holds each mean and the returns behind it."""
        from ticketlab.tasks.rl.evaluate import mean_return

        val_returns = list(play(model, data, "val", rl))
        val = mean_return(val_returns)
        train_return = float(np.mean(self.train_returns)) if self.train_returns else float("nan")
        row = {"step": step, "env_steps": env_steps, "train_return": train_return,
               "train_returns": list(self.train_returns), "val_return": val, "val_returns": val_returns}
        self.train_returns = []
        best = None
        if self.improves(-val):
            test_returns = list(play(model, data, "test", rl))
            best = {"test_return": mean_return(test_returns), "val_returns": val_returns, "test_returns": test_returns}
            row["test_return"], row["test_returns"] = best["test_return"], test_returns
        return super().observe(row, -val, lambda: best)

    def state(self) -> dict:
        """The checkpoint's record, in the agent's own names (returns, not losses)."""
        return {"best_step": self.best_step, "best_val_return": self.best_val_return,
                "best_test_return": self.best_test_return, "last_row": self.last_row,
                "train_returns": self.train_returns, "best_val_returns": self.best_val_returns,
                "best_test_returns": self.best_test_returns}

    def load(self, state: dict) -> None:
        self.best_step, self.best_val_loss = state["best_step"], -state["best_val_return"]
        self.last_row, self.train_returns = state["last_row"], list(state["train_returns"])
        self.best = {"test_return": state["best_test_return"],
                     # absent in checkpoints written before they were kept
                     "val_returns": state.get("best_val_returns"), "test_returns": state.get("best_test_returns")}


def _save_checkpoint(path: Path, model: nn.Module, optimizer, step: int, record: EvalRecord, env_state: dict) -> None:
    """An agent's checkpoint in the engine's format (the stacked agent populations write each member's with it)."""
    save_checkpoint_parts(path, {"model": model.state_dict(), "optim": optimizer_tensors(optimizer)},
                          {"step": str(step), **json_metadata(record=record.state(), envs=env_state)})
