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

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from ticketlab.config import TrainConfig, parse_step
from ticketlab.seeds import derive_seed
from ticketlab.tasks.rl.rollout import EnvRunner, sample_actions
from ticketlab.training.loop import (
    StepBookkeeping,
    TrainingInterrupted,
    masked_optimizer_step,
    prepare_masked_training,
    read_checkpoint_parts,
    save_checkpoint_parts,
)
from ticketlab.training.optim import learning_rate_at, load_optimizer_tensors, optimizer_tensors

__all__ = ["AgentTrainResult", "TrainingInterrupted", "train_agent"]


@dataclass(frozen=True)
class AgentTrainResult:
    """Returns are undiscounted episode returns, averaged over the evaluation episodes."""

    early_stop_iteration: int
    early_stop_val_loss: float  # the negative validation return at the best evaluation
    early_stop_val_return: float
    early_stop_test_metric: float
    final_iteration: int
    final_val_loss: float
    final_test_metric: float
    final_train_return: float  # mean return of the training episodes finished in the last evaluation interval
    env_steps: int
    # the evaluation episodes' returns behind each mean above (None: a row from a checkpoint written before them)
    early_stop_val_returns: list[float] | None = None
    early_stop_test_returns: list[float] | None = None
    final_val_returns: list[float] | None = None
    final_test_returns: list[float] | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def train_agent(
    model: nn.Module,
    data,
    config: TrainConfig,
    *,
    rl=None,
    masks: dict[str, torch.Tensor],
    data_seed: int,
    start_step: int = 0,
    total_steps: int | None = None,
    optimizer_state: dict[str, torch.Tensor] | None = None,
    job_dir: Path | None = None,
    snapshot_steps: tuple[int, ...] = (),
    on_snapshot: Callable[[int, nn.Module, torch.optim.Optimizer], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
    checkpoint_interval_s: float = 30.0,
    stop_after_step: int | None = None,
    augment: Callable | None = None,
) -> AgentTrainResult:
    """Train the actor-critic `model` in place with PPO (settings `rl`, an RLConfig) from `start_step` to
    `total_steps` iterations; the keyword arguments mean what they mean for `ticketlab.training.loop.train_model`."""
    from ticketlab.tasks.rl.evaluate import episode_returns

    rl = rl or data.rl
    total = parse_step(config.steps, 1) if total_steps is None else total_steps
    eval_every = parse_step(config.eval_every, 1)
    device = torch.device(data.device)
    optimizer, masked_pairs, all_parameters = prepare_masked_training(model, masks, config, optimizer_state, device)

    step, record = start_step, EvalRecord()
    books = StepBookkeeping(start_step=start_step, total=total, eval_every=eval_every, job_dir=job_dir,
                            snapshot_steps=snapshot_steps, on_snapshot=on_snapshot, on_progress=on_progress,
                            checkpoint_interval_s=checkpoint_interval_s, stop_after_step=stop_after_step,
                            device=device, checkpoint_on_stop=True)
    checkpoint_path = books.checkpoint_path
    checkpoint = read_checkpoint_parts(checkpoint_path, device, ("record", "envs")) if checkpoint_path else None
    runner = EnvRunner(data.name, rl.num_envs, data_seed, rl.episodic_life)
    try:
        env_state = None
        if checkpoint is not None:
            step, env_state = _load_checkpoint(checkpoint, model, optimizer, record)
        books.begin(step, checkpoint is not None, model, optimizer)
        observations = runner.start(env_state or fresh_env_state(rl.num_envs))
        while step < total:
            for group in optimizer.param_groups:
                group["lr"] = learning_rate_at(step, config, total, 1)
            observations, finished = _iteration(model, optimizer, runner, observations, masked_pairs,
                                                all_parameters, config, rl, data_seed, step, device)
            record.train_returns += finished
            step += 1
            books.after_step(
                step, None, model, optimizer,
                observe=lambda _: record.observe(step, model, data, rl, step * rl.num_envs * rl.rollout_steps,
                                                 episode_returns),
                save=lambda: _save_checkpoint(checkpoint_path, model, optimizer, step, record, runner.state()))
    finally:
        runner.close()

    result = agent_result(record, step, model, data, rl, episode_returns)
    books.finish()
    return result


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


def agent_result(record: "EvalRecord", step: int, model: nn.Module, data, rl, play) -> AgentTrainResult:
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
    return AgentTrainResult(
        early_stop_iteration=record.best_step,
        early_stop_val_loss=-record.best_val_return,
        early_stop_val_return=record.best_val_return,
        early_stop_test_metric=record.best_test_return,
        final_iteration=step,
        final_val_loss=-last["val_return"],
        final_test_metric=final_test,
        final_train_return=last["train_return"],
        env_steps=step * rl.num_envs * rl.rollout_steps,
        early_stop_val_returns=record.best_val_returns,
        early_stop_test_returns=record.best_test_returns,
        final_val_returns=last.get("val_returns"),
        final_test_returns=final_test_returns,
    )


def _iteration(model, optimizer, runner: EnvRunner, observations, masked_pairs, all_parameters, config, rl,
               data_seed: int, iteration: int, device):
    """One rollout and PPO update; returns (the observations the next rollout starts from, finished returns)."""
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
            loss = policy_loss - rl.entropy_coef * entropy + rl.value_coef * value_loss
            optimizer.zero_grad(set_to_none=False)
            loss.backward()
            masked_optimizer_step(optimizer, masked_pairs, all_parameters, config.clip_grad_norm)
    return observations, finished_returns


class EvalRecord:
    """The best validation return, its step and the test return there (with their episode returns); the training
    returns since the last row."""

    def __init__(self) -> None:
        self.best_step, self.best_val_return, self.best_test_return = -1, -float("inf"), float("nan")
        self.best_val_returns: list[float] | None = None
        self.best_test_returns: list[float] | None = None
        self.last_row: dict | None = None
        self.train_returns: list[float] = []

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
        if val > self.best_val_return:
            test_returns = list(play(model, data, "test", rl))
            test = mean_return(test_returns)
            self.best_step, self.best_val_return, self.best_test_return = step, val, test
            self.best_val_returns, self.best_test_returns = val_returns, test_returns
            row["test_return"], row["test_returns"] = test, test_returns
        self.last_row = row
        return row

    def state(self) -> dict:
        return {"best_step": self.best_step, "best_val_return": self.best_val_return,
                "best_test_return": self.best_test_return, "last_row": self.last_row,
                "train_returns": self.train_returns, "best_val_returns": self.best_val_returns,
                "best_test_returns": self.best_test_returns}

    def load(self, state: dict) -> None:
        self.best_step, self.best_val_return = state["best_step"], state["best_val_return"]
        self.best_test_return, self.last_row = state["best_test_return"], state["last_row"]
        self.train_returns = list(state["train_returns"])
        self.best_val_returns = state.get("best_val_returns")  # absent in checkpoints written before they were kept
        self.best_test_returns = state.get("best_test_returns")


def _save_checkpoint(path: Path, model: nn.Module, optimizer, step: int, record: EvalRecord, env_state: dict) -> None:
    save_checkpoint_parts(path, {"model": model.state_dict(), "optim": optimizer_tensors(optimizer)},
                          {"step": str(step), "record": json.dumps(record.state()), "envs": json.dumps(env_state)})


def _load_checkpoint(checkpoint, model: nn.Module, optimizer, record: EvalRecord):
    parts, metadata = checkpoint
    model.load_state_dict(parts["model"])
    load_optimizer_tensors(optimizer, parts.get("optim", {}))
    record.load(metadata["record"])
    return metadata["step"], metadata["envs"]
