"""Train K PPO agents of one MLP architecture together: their weights stacked along a leading dimension, their
policies evaluated as one batched forward over K x E environments, their updates one batched backward.

Each member keeps everything `ppo.train_agent` gives an agent alone: its initial weights and masks, its own E
environments and their episode seeds (from its data seed), its own action-sampling generator and minibatch
order, its own Adam state and step count, its own place in the learning-rate schedule (start and total
iterations), its evaluation record, metrics.jsonl, rewind snapshots and checkpoint (the same file format, so a
job killed in a population resumes alone or in a population, either way exactly).

The stacks, the per-member fused Adam step, `keep(rows)` and the member's model and optimizer in train_agent's
format are the shared population engine's (`ticketlab.training.population.RowStack`); what is PPO's is here:
the batched actor-critic (`stacked_policy`), the environments (`population_envs`), the rollout and update
(`_iteration`), and per-member gradient clipping (the global norm over the member's own slices, computed with
the kernels `clip_grad_norm_` uses).
Where the time goes (K = 32 CartPole agents, one thread): about half in gymnasium's Python (CartPole's step
and its wrappers, ~6-16 us a step), the rest in the batched forward/backward (tanh and small matmuls), the
per-member value head and the fused Adam.

Exactness against `train_agent` (the reference): with one thread on CPU a member is bitwise the agent trained
alone (weights, AgentTrainResult, metrics.jsonl, checkpoints; tests/tasks/rl/test_agent_population.py),
because each kernel rounds as the reference's (`stacked_policy`), norms over a stack's rows round as norms of
each row, and the fused Adam kernel runs per member view. With several threads or another BLAS, batched and
single products may round differently (~1e-8 an update), which PPO amplifies once a sampled action flips: expect
agreement within noise, not bit for bit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ticketlab.config import TrainConfig, parse_step
from ticketlab.errors import ConfigError
from ticketlab.seeds import derive_seed
from ticketlab.store import append_jsonl
from ticketlab.tasks.rl.evaluate import mean_return
from ticketlab.tasks.rl.model import MLPActorCritic
from ticketlab.tasks.rl.population_envs import PopulationEnvs, PopulationEvaluator
from ticketlab.tasks.rl.ppo import (
    AgentTrainResult,
    EvalRecord,
    TrainingInterrupted,
    _save_checkpoint,
    agent_result,
    fresh_env_state,
    generalized_advantages,
)
from ticketlab.tasks.rl.rollout import EnvRunner
from ticketlab.tasks.rl.stacked_policy import StackedActorCritic
from ticketlab.tasks.rl.settings import RLConfig
from ticketlab.training.allocator import keep_freed_memory
from ticketlab.training.bookkeeping import reset_metrics
from ticketlab.training.checkpoint import read_checkpoint_parts
from ticketlab.training.population import (
    MemberProgress,
    PopulationMember,
    RowStack,
    advance_members,
    report_progress,
)

__all__ = ["stackable_agent", "train_agent_population"]


def stackable_agent(model: nn.Module, device, population: int | None) -> bool:
    """Whether jobs of `model` train as stacked populations: ticketlab's MLP actor-critic (separate or shared
    trunk), never with population 1. The Nature CNN trains one agent at a time."""
    return type(model) is MLPActorCritic and population != 1


def population_size(model: nn.Module, data, config) -> int:
    """The automatic population size: 32 agents. Memory is no bound for 64-64 MLPs (a member's rollout and
    weights are well under 1 MB); the environment steps are, and 32 already amortizes the per-step overhead."""
    return 32


@dataclass(eq=False)
class AgentProgress(MemberProgress):
    """An agent's bookkeeping: its evaluation record (`record`), its environments and their observations."""

    runner: EnvRunner | None = None
    observations: np.ndarray | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.record is None:
            self.record = EvalRecord()


def agent_stack(template: MLPActorCritic, agents: list[AgentProgress], config: TrainConfig,
                device) -> tuple[RowStack, StackedActorCritic]:
    """The agents' stacks (autograd leaves; pruned Adam state kept, as train_agent keeps it) and the network."""
    if config.optimizer not in ("adam", "adamw"):
        raise ConfigError(f"train.optimizer {config.optimizer!r}: stacked PPO populations train with adam or "
                          "adamw; use --population 1 to train one agent at a time")
    states = [dict(agent.member.model.named_parameters()) for agent in agents]
    stack = RowStack(template, agents, states, config, device, zero_pruned_state=False, requires_grad=True)
    return stack, StackedActorCritic(template, stack.names)


@torch.no_grad()
def _update(stack: RowStack, learning_rates: list[float]) -> None:
    """Mask the gradients, clip each member's global norm, Adam-step each member at its own learning rate and
    step count, zero the pruned weights again: `masked_optimizer_step` for every member."""
    grads = [param.grad for param in stack.params]
    stack.mask_gradients(grads)
    count = len(stack.members)
    if stack.config.clip_grad_norm is not None:
        # clip_grad_norm_(foreach=True) per member: the norm of each tensor, then the norm of those norms (a
        # norm over a stack's rows rounds as the norm of each row alone: tested against train_agent)
        norms = torch.stack([torch.linalg.vector_norm(grad.reshape(count, -1), 2, dim=1) for grad in grads], dim=1)
        totals = torch.linalg.vector_norm(norms, 2, dim=1)
        coefficients = torch.clamp(stack.config.clip_grad_norm / (totals + 1e-6), max=1.0)
        for grad in grads:
            grad.mul_(coefficients.view(-1, *([1] * (grad.dim() - 1))))
    stack.step(learning_rates, grads)
    stack.mask_parameters()
    for param in stack.params:
        param.grad = None


def _iteration(stack: RowStack, net: StackedActorCritic, rl: RLConfig, device) -> list[list[float]]:
    """One rollout of every agent and one PPO update of every agent, each at its own iteration (agent.step);
    returns each agent's finished training-episode returns."""
    agents, steps, envs = stack.members, rl.rollout_steps, rl.num_envs
    count = len(agents)
    first = agents[0].observations
    # the rollout is collected in numpy and moved to torch once: per-step, per-member tensor writes cost more
    # than the network's forward
    obs_buffer = np.zeros((steps, count, envs, *first.shape[1:]), dtype=first.dtype)
    rewards_np = np.zeros((steps, count, envs), dtype=np.float32)
    dones_np = np.zeros((steps, count, envs), dtype=np.float32)
    actions = torch.zeros((steps, count, envs), dtype=torch.int64)
    log_probs = torch.zeros((steps, count, envs), device=device)
    values = torch.zeros((steps, count, envs), device=device)
    generators = [torch.Generator().manual_seed(derive_seed(agent.member.data_seed, "actions", agent.step))
                  for agent in agents]
    finished: list[list[float]] = [[] for _ in agents]
    params = [param.detach() for param in stack.params]
    population_envs = PopulationEnvs([agent.runner for agent in agents])
    with torch.no_grad():
        for row, agent in enumerate(agents):
            obs_buffer[0, row] = agent.observations
        for t in range(steps):
            batch = torch.from_numpy(obs_buffer[t]).to(device)
            logits, value = net.forward(params, batch, differentiable=False)
            uniform = torch.stack([torch.rand(logits.shape[1:], generator=g) for g in generators]).clamp_(1e-20, 1.0)
            action = (logits.cpu() - torch.log(-torch.log(uniform))).argmax(-1)
            actions[t], values[t] = action, value
            log_probs[t] = torch.log_softmax(logits, -1).gather(2, action.to(device).unsqueeze(2)).squeeze(2)
            rewards_np[t], dones_np[t], observations, done_returns = population_envs.step(action.numpy())
            if t + 1 < steps:
                obs_buffer[t + 1] = observations
            for row, returns in enumerate(done_returns):
                if returns:
                    finished[row] += returns
        population_envs.write_back()
        for agent in agents:
            agent.observations = agent.runner.observations
        obs_buffer = torch.from_numpy(obs_buffer).to(device)
        actions = actions.to(device)
        rewards, dones = torch.from_numpy(rewards_np).to(device), torch.from_numpy(dones_np).to(device)
        last = torch.as_tensor(np.stack([agent.observations for agent in agents]), device=device)
        next_value = net.forward(params, last, differentiable=False)[1]
        advantages, returns = generalized_advantages(rewards, values, dones, next_value, rl.gamma, rl.gae_lambda)

    def flat(tensor):  # [steps, K, E, ...] -> [K, steps * E, ...], each member's rows in the reference's order
        return tensor.transpose(0, 1).reshape(count, steps * envs, *tensor.shape[3:])

    flats = [flat(t) for t in (obs_buffer, actions, log_probs, advantages, returns, values)]
    batch_size = steps * envs
    minibatch = batch_size // rl.minibatches
    member_rows = torch.arange(count, device=device).unsqueeze(1)
    learning_rates = stack.learning_rates(1)
    for epoch in range(rl.update_epochs):
        order = torch.stack([
            torch.randperm(batch_size, generator=torch.Generator().manual_seed(
                derive_seed(agent.member.data_seed, "minibatches", agent.step, epoch)))
            for agent in agents]).to(device)
        for start in range(0, minibatch * rl.minibatches, minibatch):
            rows = order[:, start: start + minibatch]
            obs, act, old_log_prob, adv, ret, old_value = (tensor[member_rows, rows] for tensor in flats)
            logits, value = net.forward(stack.params, obs)
            log_prob_all = torch.log_softmax(logits, -1)
            new_log_prob = log_prob_all.gather(2, act.unsqueeze(2)).squeeze(2)
            entropy = -(log_prob_all.exp() * log_prob_all).sum(-1).mean(1)
            ratio = (new_log_prob - old_log_prob).exp()
            if rl.normalize_advantages:
                adv = (adv - adv.mean(1, keepdim=True)) / (adv.std(1, keepdim=True) + 1e-8)
            policy_loss = torch.max(-adv * ratio, -adv * ratio.clamp(1 - rl.clip_coef, 1 + rl.clip_coef)).mean(1)
            if rl.clip_value_loss:
                clipped = old_value + (value - old_value).clamp(-rl.clip_coef, rl.clip_coef)
                value_loss = 0.5 * torch.max((value - ret) ** 2, (clipped - ret) ** 2).mean(1)
            else:
                value_loss = 0.5 * ((value - ret) ** 2).mean(1)
            loss = policy_loss - rl.entropy_coef * entropy + rl.value_coef * value_loss
            loss.sum().backward()
            _update(stack, learning_rates)
    return finished


def train_agent_population(
    members: Sequence[PopulationMember],
    data,
    config: TrainConfig,
    *,
    rl: RLConfig | None = None,
    on_progress: Callable[[int], None] | None = None,
    checkpoint_interval_s: float = 30.0,
    stop_after_step: int | None = None,
) -> list[AgentTrainResult]:
    """Train every member as `train_agent` would train it alone, all agents stepped together; results in input
    order. Members end holding their trained weights; each writes its own metrics.jsonl, rewind snapshots and
    checkpoint (train_agent's format). `stop_after_step`: once any member reaches that iteration, every member
    still training checkpoints and TrainingInterrupted is raised (a kill, in tests). `on_progress(n)`: n more
    member-iterations done."""
    if not members:
        return []
    keep_freed_memory()
    rl = rl or data.rl
    device = torch.device(data.device)
    default_total = parse_step(config.steps, 1)
    eval_every = parse_step(config.eval_every, 1)
    template = members[0].model
    if not all(type(member.model) is MLPActorCritic for member in members):
        raise ValueError("only MLPActorCritic agents train in a population; use train_agent")
    agents = [AgentProgress(member, index, default_total if member.total_steps is None else member.total_steps)
              for index, member in enumerate(members)]
    for agent in agents:
        agent.member.model.to(device).train()
        with torch.no_grad():
            parameters = dict(agent.member.model.named_parameters())
            for name, mask in agent.member.masks.items():
                parameters[name].mul_(mask.to(device))
    stack, net = agent_stack(template, agents, config, device)
    results: list[AgentTrainResult | None] = [None] * len(members)

    evaluator = PopulationEvaluator(data.name, rl)

    def observe(rows: list[int]) -> list[dict]:
        """EvalRecord.observe for the members in `rows`, their validation (and, where it improves, test)
        episodes played together."""
        if not rows:
            return []
        val = evaluator.episode_returns(stack, net, rows, "val")
        improving = [row for row, returns in zip(rows, val)
                     if mean_return(returns) > stack.members[row].record.best_val_return]
        test = dict(zip(improving, evaluator.episode_returns(stack, net, improving, "test")))
        observed = []
        for row, returns in zip(rows, val):
            agent = stack.members[row]
            played = {"val": returns, "test": test.get(row)}
            env_steps = agent.step * rl.num_envs * rl.rollout_steps
            observed.append(agent.record.observe(agent.step, None, data, rl, env_steps,
                                                 lambda model, data, split, rl, played=played: played[split]))
        return observed

    def finish(rows: list[int]) -> None:
        """agent_result for the members in `rows`, their evaluations played together."""
        observe([row for row in rows if stack.members[row].record.last_row is None
                 or stack.members[row].record.last_row["step"] != stack.members[row].step])
        untested = [row for row in rows if stack.members[row].record.last_row.get("test_return") is None]
        test = dict(zip(untested, evaluator.episode_returns(stack, net, untested, "test")))
        for row in rows:
            agent = stack.members[row]
            model = stack.write_back(row)
            results[agent.index] = agent_result(agent.record, agent.step, model, data, rl,
                                                lambda model, data, split, rl, row=row: test[row])
            if agent.checkpoint_path is not None:
                agent.checkpoint_path.unlink(missing_ok=True)

    def checkpoint(row: int) -> None:
        agent = stack.members[row]
        model, optimizer = stack.model_and_optimizer(row)
        _save_checkpoint(agent.checkpoint_path, model, optimizer, agent.step, agent.record, agent.runner.state())

    def leave_finished() -> None:
        training = [row for row, agent in enumerate(stack.members) if agent.step < agent.total]
        done = [row for row in range(len(stack.members)) if row not in training]
        finish(done)
        for row in done:
            stack.members[row].runner.close()
        if len(training) < len(stack.members):
            stack.keep(training)

    try:
        for row, agent in enumerate(agents):
            parts = read_checkpoint_parts(agent.checkpoint_path, device, ("record", "envs")) \
                if agent.checkpoint_path else None
            env_state = None
            if parts is not None:
                tensors, metadata = parts
                stack.restore(row, tensors["model"], tensors.get("optim", {}))
                agent.record.load(metadata["record"])
                agent.step = agent.reported_step = metadata["step"]
                env_state = metadata["envs"]
                reset_metrics(agent.metrics_path, keep_through_step=agent.step)
                if on_progress:
                    on_progress(agent.step - agent.member.start_step)
            elif agent.metrics_path is not None:
                reset_metrics(agent.metrics_path, keep_through_step=None)
            agent.runner = EnvRunner(data.name, rl.num_envs, agent.member.data_seed, rl.episodic_life)
            agent.observations = agent.runner.start(env_state or fresh_env_state(rl.num_envs))
            if agent.at_start():
                agent.member.on_snapshot(agent.step, *stack.model_and_optimizer(row))

        leave_finished()
        while stack.members:
            finished = _iteration(stack, net, rl, device)
            for agent, returns in zip(stack.members, finished):
                agent.record.train_returns += returns
            due = advance_members(stack.members, eval_every, stack.model_and_optimizer)
            stopping = stop_after_step is not None and any(agent.step >= stop_after_step for agent in stack.members)
            for row, row_metrics in zip(due, observe(due)):
                agent = stack.members[row]
                if agent.metrics_path is not None:
                    append_jsonl(agent.metrics_path, row_metrics)
                progressed = report_progress(stack.members, [row])
                if on_progress:
                    on_progress(progressed)
                if agent.checkpoint_due(time.monotonic(), checkpoint_interval_s):
                    checkpoint(row)
            if stopping and any(agent.step < agent.total for agent in stack.members):
                for row, agent in enumerate(stack.members):
                    if agent.checkpoint_path is not None and agent.step < agent.total:
                        checkpoint(row)
                raise TrainingInterrupted(f"stopped after step {stop_after_step}")
            leave_finished()
    finally:
        evaluator.close()
        for agent in agents:
            if agent.runner is not None:
                agent.runner.close()
    return results
