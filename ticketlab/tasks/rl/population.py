"""Train K PPO agents of one MLP architecture together: their weights stacked along a leading dimension, their
policies evaluated as one batched forward over K x E environments, their updates one batched backward.

Each member keeps everything `ppo.train_agent` gives an agent alone: its initial weights and masks, its own E
environments and their episode seeds (from its data seed), its own action-sampling generator and minibatch
order, its own Adam state and step count, its own place in the learning-rate schedule (start and total
iterations), its evaluation record, metrics.jsonl, rewind snapshots and checkpoint (the same file format, so a
job killed in a population resumes alone or in a population, either way exactly).

Layout: every parameter is one [K, *shape] leaf tensor; a Linear layer is `baddbmm(bias, x, weight^T)` over
[K, N, in] inputs, the policy and value losses are computed per member ([K]) and their sum is differentiated
(member k's loss reaches only its own slice, each with weight exactly 1). Gradient clipping is per member (the
global norm over the member's own slices, computed with the kernels `clip_grad_norm_` uses), and the update is
torch's fused functional Adam over the per-member views, one call per learning rate, each member with its own
step count: the update arithmetic is the reference's, element for element.

Why baddbmm and not torch.func.vmap: a 32-agent PPO minibatch forward+backward (128 samples each, one thread)
took 12-13 ms this way and 18 ms under vmap(grad(functional_call)) (benchmarks/rl_population_speed.py
--compare-vmap), and vmap's batched kernels would not round as the agent's own do.

Environments: each member keeps its own `EnvRunner` (E environments, its episode seeds and replay logs, so its
checkpoint is train_agent's), but the K x E sub-environments are stepped in one flat pass with one set of numpy
arrays per step (`_PopulationEnvs`); one vector env over all K x E would need the same per-member seeds and logs.
Evaluation plays the episodes of every member due together, one batched policy forward per step (`_Evaluator`).
Where the time goes (K = 32 CartPole agents, one thread): about half in gymnasium's Python (CartPole's step
and its wrappers, ~6-16 us a step), the rest in the batched forward/backward (tanh and small matmuls), the
per-member value head and the fused Adam.

Exactness against `train_agent` (the reference): with one thread on CPU a member is bitwise the agent trained
alone (weights, AgentTrainResult, metrics.jsonl, checkpoints; tests/tasks/rl/test_agent_population.py),
because each kernel rounds as the reference's: baddbmm as nn.Linear's addmm for these shapes, the one-output
value head as addmv per member (a batched matmul sums its 64 products in another order), the weight gradient as
grad^T x (addmm's backward; bmm's default (x^T grad)^T does not round the same), norms over a stack's rows as
norms of each row, and the fused Adam kernel per member view. With several threads or another BLAS, batched and
single products may round differently (~1e-8 an update), which PPO amplifies once a sampled action flips: expect
agreement within noise, not bit for bit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.optim.adam import adam as adam_update

from ticketlab.config import TrainConfig, parse_step
from ticketlab.errors import ConfigError
from ticketlab.seeds import derive_seed
from ticketlab.store import append_jsonl
from ticketlab.tasks.rl.model import MLPActorCritic
from ticketlab.tasks.rl.ppo import (
    AgentTrainResult,
    EvalRecord,
    TrainingInterrupted,
    _save_checkpoint,
    agent_result,
    fresh_env_state,
    generalized_advantages,
)
from ticketlab.tasks.rl.envs import make_env
from ticketlab.tasks.rl.evaluate import EVAL_SEED_BASE, evaluation_seeds, mean_return
from ticketlab.tasks.rl.rollout import EnvRunner, sample_actions
from ticketlab.tasks.rl.settings import RLConfig
from ticketlab.training.allocator import keep_freed_memory
from ticketlab.training.loop import CHECKPOINT_FILE, METRICS_FILE, read_checkpoint_parts, reset_metrics
from ticketlab.training.optim import build_optimizer, learning_rate_at, load_optimizer_tensors
from ticketlab.training.population import PopulationMember

__all__ = ["stackable_agent", "train_agent_population"]


def stackable_agent(model: nn.Module, device, population: int | None) -> bool:
    """Whether jobs of `model` train as stacked populations: ticketlab's MLP actor-critic (separate or shared
    trunk), never with population 1. The Nature CNN trains one agent at a time."""
    return type(model) is MLPActorCritic and population != 1


def population_size(model: nn.Module, data, config) -> int:
    """The automatic population size: 32 agents. Memory is no bound for 64-64 MLPs (a member's rollout and
    weights are well under 1 MB); the environment steps are, and 32 already amortizes the per-step overhead."""
    return 32


@dataclass
class _Agent:
    member: PopulationMember
    index: int  # position in the input list
    total: int
    step: int = 0
    record: EvalRecord = field(default_factory=EvalRecord)
    runner: EnvRunner | None = None
    observations: np.ndarray | None = None
    optimizer_steps: int = 0
    reported_step: int = 0
    last_checkpoint_time: float = 0.0

    @property
    def metrics_path(self):
        return self.member.job_dir / METRICS_FILE if self.member.job_dir else None

    @property
    def checkpoint_path(self):
        return self.member.job_dir / CHECKPOINT_FILE if self.member.job_dir else None


class _StackedLinear(torch.autograd.Function):
    """x [K, N, in] -> x W_k^T + b_k, whose weight gradient is grad^T x (as nn.Linear's addmm backward computes
    it for a weight stored [out, in]), not bmm's default (x^T grad)^T, which sums in another order."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad_x = torch.bmm(grad, weight) if ctx.needs_input_grad[0] else None
        return grad_x, torch.bmm(grad.transpose(1, 2), x), grad.sum(1)


class _Stack:
    """Stacked weights, masks and Adam state of the agents in `agents` (rows in that order)."""

    def __init__(self, template: MLPActorCritic, agents: list[_Agent], config: TrainConfig, device) -> None:
        self.config, self.device = config, device
        names = {id(parameter): name for name, parameter in template.named_parameters()}
        self.names = list(names.values())  # model.parameters() order: the optimizer's indices

        def layers(modules):
            return [(names[id(m.weight)], names[id(m.bias)]) for m in modules if isinstance(m, nn.Linear)]

        self.policy_layers = layers(template.policy_trunk)
        self.value_layers = None if template.shared_trunk else layers(template.value_trunk)
        self.policy_head, self.value_head = layers([template.policy_head])[0], layers([template.value_head])[0]
        probe = build_optimizer([nn.Parameter(torch.zeros(1))], config)
        self.hyper = dict(probe.param_groups[0])
        if config.optimizer not in ("adam", "adamw"):
            raise ConfigError(f"train.optimizer {config.optimizer!r}: stacked PPO populations train with adam or "
                              "adamw; use --population 1 to train one agent at a time")
        self.build(agents)

    def build(self, agents: list[_Agent]) -> None:
        self.agents = agents
        states = [dict(agent.member.model.named_parameters()) for agent in agents]
        self.params = {name: torch.stack([s[name].detach() for s in states]).to(self.device).requires_grad_()
                       for name in self.names}
        ones = {name: None for name in self.names}
        self.masks = dict(ones)
        for name in self.names:
            if any(name in agent.member.masks for agent in agents):
                self.masks[name] = torch.stack([
                    agent.member.masks[name].to(self.device, self.params[name].dtype) if name in agent.member.masks
                    else torch.ones_like(self.params[name][0]) for agent in agents])
        self.exp_avg = {name: torch.zeros_like(p.detach()) for name, p in self.params.items()}
        self.exp_avg_sq = {name: torch.zeros_like(p.detach()) for name, p in self.params.items()}
        self.steps = [[torch.zeros(()) for _ in self.names] for _ in agents]  # Adam's step counts, per tensor
        self._views()
        for row, agent in enumerate(agents):
            self.load_optimizer_row(row, agent.member.optimizer_state, agent)

    def _views(self) -> None:
        """Per-member views of the stacks, in the order the fused Adam takes them (member by member)."""
        def rows(stacks):
            per_name = [stacks[name].detach().unbind(0) for name in self.names]
            return [[views[row] for views in per_name] for row in range(len(self.agents))]

        self.param_rows, self.exp_avg_rows, self.exp_avg_sq_rows = (
            rows(self.params), rows(self.exp_avg), rows(self.exp_avg_sq))

    def keep(self, rows: list[int]) -> None:
        """Drop every agent whose row is not in `rows`."""
        select = torch.tensor(rows, dtype=torch.long, device=self.device)
        self.agents = [self.agents[row] for row in rows]
        self.params = {name: p.detach().index_select(0, select).requires_grad_() for name, p in self.params.items()}
        self.masks = {name: None if m is None else m.index_select(0, select) for name, m in self.masks.items()}
        self.exp_avg = {name: s.index_select(0, select) for name, s in self.exp_avg.items()}
        self.exp_avg_sq = {name: s.index_select(0, select) for name, s in self.exp_avg_sq.items()}
        self.steps = [self.steps[row] for row in rows]
        self._views()

    def load_optimizer_row(self, row: int, flat: dict[str, torch.Tensor] | None, agent: _Agent) -> None:
        """Row `row` of the Adam state from `optimizer_tensors` format ({} or None: a fresh optimizer)."""
        agent.optimizer_steps = 0
        for index, name in enumerate(self.names):
            for state, key in ((self.exp_avg, "exp_avg"), (self.exp_avg_sq, "exp_avg_sq")):
                value = (flat or {}).get(f"{index}.{key}")
                state[name][row].copy_(value) if value is not None else state[name][row].zero_()
        if flat and "0.step" in flat:
            agent.optimizer_steps = int(flat["0.step"].item())
        for step in self.steps[row]:
            step.fill_(float(agent.optimizer_steps))

    def optimizer_row(self, row: int) -> dict[str, torch.Tensor]:
        """Row `row`'s Adam state as `optimizer_tensors` of a torch Adam gives it."""
        flat: dict[str, torch.Tensor] = {}
        steps = self.agents[row].optimizer_steps
        if steps == 0:
            return flat
        for index, name in enumerate(self.names):
            flat[f"{index}.step"] = torch.tensor(float(steps))
            flat[f"{index}.exp_avg"] = self.exp_avg[name][row].detach().clone().cpu()
            flat[f"{index}.exp_avg_sq"] = self.exp_avg_sq[name][row].detach().clone().cpu()
        return flat

    def write_back(self, row: int) -> nn.Module:
        """The agent's own model, holding row `row`'s weights."""
        model = self.agents[row].member.model
        parameters = dict(model.named_parameters())
        with torch.no_grad():
            for name in self.names:
                parameters[name].copy_(self.params[name][row])
        return model

    def model_and_optimizer(self, row: int) -> tuple[nn.Module, torch.optim.Optimizer]:
        model = self.write_back(row)
        optimizer = build_optimizer(list(model.parameters()), self.config)
        flat = self.optimizer_row(row)
        if flat:
            load_optimizer_tensors(optimizer, flat)
        return model, optimizer

    def restore(self, row: int, parts: dict) -> None:
        with torch.no_grad():
            for name in self.names:
                self.params[name][row].copy_(parts["model"][name])
        self.load_optimizer_row(row, parts.get("optim", {}), self.agents[row])

    # --- the batched network ---

    @staticmethod
    def _linear(params, layer, x: torch.Tensor) -> torch.Tensor:
        weight, bias = params[layer[0]], params[layer[1]]
        if weight.shape[1] == 1:
            return _one_output_linear(weight, bias, x)
        return _StackedLinear.apply(x, weight, bias)

    def forward(self, observations: torch.Tensor, params=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits [K, N, actions], values [K, N]) of observations [K, N, features]; `params` (detached stacks):
        without autograd."""
        linear = self._linear if params is None else self._plain_linear
        params = self.params if params is None else params
        features = observations
        for layer in self.policy_layers:
            features = torch.tanh(linear(params, layer, features))
        if self.value_layers is None:
            value_features = features
        else:
            value_features = observations
            for layer in self.value_layers:
                value_features = torch.tanh(linear(params, layer, value_features))
        logits = linear(params, self.policy_head, features)
        return logits, linear(params, self.value_head, value_features).squeeze(-1)

    def policy_logits(self, observations: torch.Tensor, params) -> torch.Tensor:
        """Logits [K, N, actions] of observations [K, N, features] (detached `params`)."""
        features = observations
        for layer in self.policy_layers:
            features = torch.tanh(self._plain_linear(params, layer, features))
        return self._plain_linear(params, self.policy_head, features)

    @staticmethod
    def _plain_linear(params, layer, x: torch.Tensor) -> torch.Tensor:
        weight, bias = params[layer[0]], params[layer[1]]
        if weight.shape[1] == 1:
            return _one_output_linear(weight, bias, x)
        return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))

    def detached(self) -> dict[str, torch.Tensor]:
        return {name: p.detach() for name, p in self.params.items()}

    # --- the masked, clipped, per-member Adam step ---

    @torch.no_grad()
    def step(self, learning_rates: list[float]) -> None:
        """Mask the gradients, clip each member's global norm, Adam-step each member at its own learning rate and
        step count, zero the pruned weights again: `masked_optimizer_step` for every member."""
        grads = {name: p.grad for name, p in self.params.items()}
        for name, mask in self.masks.items():
            if mask is not None:
                grads[name].mul_(mask)
        count = len(self.agents)
        if self.config.clip_grad_norm is not None:
            # clip_grad_norm_(foreach=True) per member: the norm of each tensor, then the norm of those norms (a
            # norm over a stack's rows rounds as the norm of each row alone: tested against train_agent)
            norms = torch.stack([torch.linalg.vector_norm(grads[name].reshape(count, -1), 2, dim=1)
                                 for name in self.names], dim=1)
            totals = torch.linalg.vector_norm(norms, 2, dim=1)
            coefficients = torch.clamp(self.config.clip_grad_norm / (totals + 1e-6), max=1.0)
            for grad in grads.values():
                grad.mul_(coefficients.view(-1, *([1] * (grad.dim() - 1))))
        grad_rows = [grads[name].unbind(0) for name in self.names]
        hyper = self.hyper
        by_rate: dict[float, list[int]] = {}
        for row, rate in enumerate(learning_rates):
            by_rate.setdefault(rate, []).append(row)
        for rate, rows in by_rate.items():
            adam_update(
                [view for row in rows for view in self.param_rows[row]],
                [views[row] for row in rows for views in grad_rows],
                [view for row in rows for view in self.exp_avg_rows[row]],
                [view for row in rows for view in self.exp_avg_sq_rows[row]], [],
                [step for row in rows for step in self.steps[row]],
                foreach=hyper["foreach"], fused=hyper["fused"],
                decoupled_weight_decay=hyper.get("decoupled_weight_decay", self.config.optimizer == "adamw"),
                amsgrad=hyper["amsgrad"], beta1=hyper["betas"][0], beta2=hyper["betas"][1], lr=rate,
                weight_decay=hyper["weight_decay"], eps=hyper["eps"], maximize=hyper["maximize"],
            )
        for agent in self.agents:
            agent.optimizer_steps += 1
        for name, mask in self.masks.items():
            if mask is not None:
                self.params[name].detach().mul_(mask)
        for p in self.params.values():
            p.grad = None


class _PopulationEnvs:
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


class _Evaluator:
    """The evaluation episodes of several members played together: one batched policy forward per step over all
    their episodes. Each member plays what `evaluate.evaluate` plays for it alone: the same fixed seeds, the
    greedy action (or samples from the same generator, in the same order), so the same returns. The
    environments are made once and reseeded by every evaluation's resets."""

    def __init__(self, name: str, rl: RLConfig) -> None:
        self.name, self.rl, self.envs = name, rl, []

    def episode_returns(self, stack: _Stack, rows: list[int], split: str) -> list[list[float]]:
        """The evaluation episode returns of each member in `rows` on the episodes of `split` (seed order)."""
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
        params = {name: value.detach().index_select(0, select) for name, value in stack.params.items()}
        generators = [torch.Generator().manual_seed(derive_seed(EVAL_SEED_BASE, split, "actions")) for _ in rows]
        while active.any():
            batch = torch.as_tensor(observations.reshape(count, episodes, *observations.shape[1:]),
                                    device=stack.device)
            with torch.no_grad():
                logits = stack.policy_logits(batch, params).cpu()
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


def _iteration(stack: _Stack, rl: RLConfig, device) -> list[list[float]]:
    """One rollout of every agent and one PPO update of every agent, each at its own iteration (agent.step);
    returns each agent's finished training-episode returns."""
    agents, steps, envs = stack.agents, rl.rollout_steps, rl.num_envs
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
    params = stack.detached()
    population_envs = _PopulationEnvs([agent.runner for agent in agents])
    with torch.no_grad():
        for row, agent in enumerate(agents):
            obs_buffer[0, row] = agent.observations
        for t in range(steps):
            batch = torch.from_numpy(obs_buffer[t]).to(device)
            logits, value = stack.forward(batch, params)
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
        next_value = stack.forward(last, params)[1]
        advantages, returns = generalized_advantages(rewards, values, dones, next_value, rl.gamma, rl.gae_lambda)

    def flat(tensor):  # [steps, K, E, ...] -> [K, steps * E, ...], each member's rows in the reference's order
        return tensor.transpose(0, 1).reshape(count, steps * envs, *tensor.shape[3:])

    flats = [flat(t) for t in (obs_buffer, actions, log_probs, advantages, returns, values)]
    batch_size = steps * envs
    minibatch = batch_size // rl.minibatches
    member_rows = torch.arange(count, device=device).unsqueeze(1)
    learning_rates = [learning_rate_at(agent.step, stack.config, agent.total, 1) for agent in agents]
    for epoch in range(rl.update_epochs):
        order = torch.stack([
            torch.randperm(batch_size, generator=torch.Generator().manual_seed(
                derive_seed(agent.member.data_seed, "minibatches", agent.step, epoch)))
            for agent in agents]).to(device)
        for start in range(0, minibatch * rl.minibatches, minibatch):
            rows = order[:, start: start + minibatch]
            obs, act, old_log_prob, adv, ret, old_value = (tensor[member_rows, rows] for tensor in flats)
            logits, value = stack.forward(obs)
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
            stack.step(learning_rates)
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
    agents = [_Agent(member, index, default_total if member.total_steps is None else member.total_steps,
                     step=member.start_step, reported_step=member.start_step, last_checkpoint_time=time.monotonic())
              for index, member in enumerate(members)]
    for agent in agents:
        agent.member.model.to(device).train()
        with torch.no_grad():
            parameters = dict(agent.member.model.named_parameters())
            for name, mask in agent.member.masks.items():
                parameters[name].mul_(mask.to(device))
    stack = _Stack(template, agents, config, device)
    results: list[AgentTrainResult | None] = [None] * len(members)

    evaluator = _Evaluator(data.name, rl)

    def observe(rows: list[int]) -> list[dict]:
        """EvalRecord.observe for the members in `rows`, their validation (and, where it improves, test)
        episodes played together."""
        if not rows:
            return []
        val = evaluator.episode_returns(stack, rows, "val")
        improving = [row for row, returns in zip(rows, val)
                     if mean_return(returns) > stack.agents[row].record.best_val_return]
        test = dict(zip(improving, evaluator.episode_returns(stack, improving, "test")))
        observed = []
        for row, returns in zip(rows, val):
            agent = stack.agents[row]
            played = {"val": returns, "test": test.get(row)}
            env_steps = agent.step * rl.num_envs * rl.rollout_steps
            observed.append(agent.record.observe(agent.step, None, data, rl, env_steps,
                                                 lambda model, data, split, rl, played=played: played[split]))
        return observed

    def finish(rows: list[int]) -> None:
        """agent_result for the members in `rows`, their evaluations played together."""
        observe([row for row in rows if stack.agents[row].record.last_row is None
                 or stack.agents[row].record.last_row["step"] != stack.agents[row].step])
        untested = [row for row in rows if stack.agents[row].record.last_row.get("test_return") is None]
        test = dict(zip(untested, evaluator.episode_returns(stack, untested, "test")))
        for row in rows:
            agent = stack.agents[row]
            model = stack.write_back(row)
            results[agent.index] = agent_result(agent.record, agent.step, model, data, rl,
                                                lambda model, data, split, rl, row=row: test[row])
            if agent.checkpoint_path is not None:
                agent.checkpoint_path.unlink(missing_ok=True)

    def checkpoint(row: int) -> None:
        agent = stack.agents[row]
        model, optimizer = stack.model_and_optimizer(row)
        _save_checkpoint(agent.checkpoint_path, model, optimizer, agent.step, agent.record, agent.runner.state())

    try:
        for row, agent in enumerate(agents):
            parts = read_checkpoint_parts(agent.checkpoint_path, device, ("record", "envs")) \
                if agent.checkpoint_path else None
            env_state = None
            if parts is not None:
                tensors, metadata = parts
                stack.restore(row, tensors)
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
            member = agent.member
            if agent.step == member.start_step and member.start_step in member.snapshot_steps and member.on_snapshot:
                member.on_snapshot(agent.step, *stack.model_and_optimizer(row))

        def leave_finished() -> None:
            training = [row for row, agent in enumerate(stack.agents) if agent.step < agent.total]
            done = [row for row in range(len(stack.agents)) if row not in training]
            finish(done)
            for row in done:
                stack.agents[row].runner.close()
            if len(training) < len(stack.agents):
                stack.keep(training)

        leave_finished()
        while stack.agents:
            finished = _iteration(stack, rl, device)
            stopping, due = False, []
            for row, agent in enumerate(stack.agents):
                agent.record.train_returns += finished[row]
                agent.step += 1
                member = agent.member
                if agent.step in member.snapshot_steps and member.on_snapshot:
                    member.on_snapshot(agent.step, *stack.model_and_optimizer(row))
                if agent.step % eval_every == 0 or agent.step == agent.total:
                    due.append(row)
                stopping = stopping or (stop_after_step is not None and agent.step >= stop_after_step)
            for row, row_metrics in zip(due, observe(due)):
                agent = stack.agents[row]
                if agent.metrics_path is not None:
                    append_jsonl(agent.metrics_path, row_metrics)
                if on_progress:
                    on_progress(agent.step - agent.reported_step)
                agent.reported_step = agent.step
                now = time.monotonic()
                if (agent.checkpoint_path is not None and agent.step < agent.total
                        and now - agent.last_checkpoint_time >= checkpoint_interval_s):
                    checkpoint(row)
                    agent.last_checkpoint_time = now
            if stopping and any(agent.step < agent.total for agent in stack.agents):
                for row, agent in enumerate(stack.agents):
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


def _one_output_linear(weight: torch.Tensor, bias: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Stacked one-output Linear layers (the value heads), [K, N, 1]. nn.Linear with one output runs a
    matrix-vector product (addmv), which sums in another order than a batched matmul would: so per member, and
    each value head rounds as the agent's own does (unbind, whose backward stacks the members' gradients once, not
    select, whose backward fills a zero stack per member)."""
    return torch.stack([torch.addmv(b, v, w) for b, v, w in
                        zip(bias.unbind(0), x.unbind(0), weight[:, 0].unbind(0))]).unsqueeze(2)
