"""PPO population speed: K stacked CartPole agents vs the same K agents trained one after another.

Measured in one run, one process, the same thread count (OMP_NUM_THREADS / --threads):
- `plain`: a minimal CleanRL-style PPO loop written here (after cleanrl/ppo.py: gymnasium SyncVectorEnv with its
  own autoreset, nn.Sequential actor and critic, torch.distributions.Categorical, Adam, clip_grad_norm_), the
  same hyperparameters as the ppo_cartpole preset (4 envs x 128 steps, 4 epochs x 4 minibatches, lr 2.5e-4
  annealed, clip 0.2, GAE 0.99/0.95, entropy 0.01, value 0.5, gradient norm 0.5), training K agents one after
  another; no evaluation.
- `alone`: ticketlab's own `train_agent` (seeded episodes, replay logs, masks, checkpoints off), K agents one
  after another.
- `stacked`: `train_agent_population` with K members (their own seeds and 50% random masks).
Both ticketlab trainers include their end-of-training evaluation (rl.eval_episodes 1: one validation and one
test episode per agent, short this early in training), which the plain loop does not do: no time is subtracted.
Environment steps per second = K x iterations x 512 / training seconds. For a cost breakdown, --profile K prints
a cProfile of one stacked population of K.

Atari (--atari, needs `pip install -e '.[atari]'`): frames per second of one Pong agent with the ppo_pong_short
preset's settings (8 envs x 128 steps, Nature CNN, frame skip 4: 4 emulator frames per agent step).

Reproduce:  OMP_NUM_THREADS=1 nice -n 10 python benchmarks/rl_population_speed.py --threads 1
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import platform
import pstats
import time

import numpy as np
import torch
from torch import nn

import ticketlab
from ticketlab.pruning import keep_top, prunable_weights, random_scores
from ticketlab.tasks import load_task
from ticketlab.tasks.base import load_task_data
from ticketlab.tasks.rl.population import train_agent_population
from ticketlab.tasks.rl.ppo import train_agent
from ticketlab.training.population import PopulationMember

TASK = load_task("rl")
clock = time.process_time  # --clock wall: wall time; CPU time of this one-threaded process is robust to other load
STEPS_PER_ITERATION = 4 * 128


# --- the plain single-agent loop (CleanRL's ppo.py, condensed) ------------------------------------------------


def _layer(layer: nn.Linear, std: float = np.sqrt(2)) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, std)
    nn.init.constant_(layer.bias, 0.0)
    return layer


class CleanRLAgent(nn.Module):
    def __init__(self, observations: int, actions: int):
        super().__init__()
        self.critic = nn.Sequential(_layer(nn.Linear(observations, 64)), nn.Tanh(), _layer(nn.Linear(64, 64)),
                                    nn.Tanh(), _layer(nn.Linear(64, 1), 1.0))
        self.actor = nn.Sequential(_layer(nn.Linear(observations, 64)), nn.Tanh(), _layer(nn.Linear(64, 64)),
                                   nn.Tanh(), _layer(nn.Linear(64, actions), 0.01))

    def get_value(self, x):
        return self.critic(x)

    def get_action_and_value(self, x, action=None):
        probs = torch.distributions.Categorical(logits=self.actor(x))
        if action is None:
            action = probs.sample()
        return action, probs.log_prob(action), probs.entropy(), self.critic(x)


def plain_ppo(seed: int, iterations: int, env_id: str = "CartPole-v1", num_envs: int = 4, num_steps: int = 128,
              lr: float = 2.5e-4, gamma: float = 0.99, gae_lambda: float = 0.95, minibatches: int = 4,
              update_epochs: int = 4, clip_coef: float = 0.2, ent_coef: float = 0.01, vf_coef: float = 0.5,
              max_grad_norm: float = 0.5) -> float:
    """Train one agent CleanRL-style for `iterations`; returns the mean return of the episodes it finished."""
    import gymnasium as gym

    torch.manual_seed(seed)
    envs = gym.vector.SyncVectorEnv([lambda: gym.wrappers.RecordEpisodeStatistics(gym.make(env_id))
                                     for _ in range(num_envs)])
    agent = CleanRLAgent(int(np.prod(envs.single_observation_space.shape)), int(envs.single_action_space.n))
    optimizer = torch.optim.Adam(agent.parameters(), lr=lr, eps=1e-5)
    obs = torch.zeros((num_steps, num_envs) + envs.single_observation_space.shape)
    actions = torch.zeros((num_steps, num_envs))
    logprobs, rewards = torch.zeros((num_steps, num_envs)), torch.zeros((num_steps, num_envs))
    dones, values = torch.zeros((num_steps, num_envs)), torch.zeros((num_steps, num_envs))
    next_obs, _ = envs.reset(seed=seed)
    next_obs, next_done = torch.Tensor(next_obs), torch.zeros(num_envs)
    batch_size = num_envs * num_steps
    minibatch_size = batch_size // minibatches
    returns_seen = []
    for iteration in range(1, iterations + 1):
        optimizer.param_groups[0]["lr"] = (1.0 - (iteration - 1.0) / iterations) * lr
        for step in range(num_steps):
            obs[step], dones[step] = next_obs, next_done
            with torch.no_grad():
                action, logprob, _, value = agent.get_action_and_value(next_obs)
                values[step] = value.flatten()
            actions[step], logprobs[step] = action, logprob
            next_obs, reward, terminations, truncations, infos = envs.step(action.cpu().numpy())
            next_done = np.logical_or(terminations, truncations)
            rewards[step] = torch.tensor(reward).view(-1)
            next_obs, next_done = torch.Tensor(next_obs), torch.Tensor(next_done)
            if "episode" in infos:
                returns_seen += list(infos["episode"]["r"][infos["_episode"]])
        with torch.no_grad():
            next_value = agent.get_value(next_obs).reshape(1, -1)
            advantages = torch.zeros_like(rewards)
            lastgaelam = 0
            for t in reversed(range(num_steps)):
                if t == num_steps - 1:
                    nextnonterminal, nextvalues = 1.0 - next_done, next_value
                else:
                    nextnonterminal, nextvalues = 1.0 - dones[t + 1], values[t + 1]
                delta = rewards[t] + gamma * nextvalues * nextnonterminal - values[t]
                advantages[t] = lastgaelam = delta + gamma * gae_lambda * nextnonterminal * lastgaelam
            returns = advantages + values
        b_obs = obs.reshape((-1,) + envs.single_observation_space.shape)
        b_logprobs, b_actions = logprobs.reshape(-1), actions.reshape(-1)
        b_advantages, b_returns, b_values = advantages.reshape(-1), returns.reshape(-1), values.reshape(-1)
        b_inds = np.arange(batch_size)
        for _ in range(update_epochs):
            np.random.shuffle(b_inds)
            for start in range(0, batch_size, minibatch_size):
                mb_inds = b_inds[start:start + minibatch_size]
                _, newlogprob, entropy, newvalue = agent.get_action_and_value(b_obs[mb_inds],
                                                                              b_actions.long()[mb_inds])
                ratio = (newlogprob - b_logprobs[mb_inds]).exp()
                mb_advantages = b_advantages[mb_inds]
                mb_advantages = (mb_advantages - mb_advantages.mean()) / (mb_advantages.std() + 1e-8)
                pg_loss = torch.max(-mb_advantages * ratio,
                                    -mb_advantages * torch.clamp(ratio, 1 - clip_coef, 1 + clip_coef)).mean()
                newvalue = newvalue.view(-1)
                v_clipped = b_values[mb_inds] + torch.clamp(newvalue - b_values[mb_inds], -clip_coef, clip_coef)
                v_loss = 0.5 * torch.max((newvalue - b_returns[mb_inds]) ** 2,
                                         (v_clipped - b_returns[mb_inds]) ** 2).mean()
                loss = pg_loss - ent_coef * entropy.mean() + v_loss * vf_coef
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(agent.parameters(), max_grad_norm)
                optimizer.step()
    envs.close()
    return float(np.mean(returns_seen)) if returns_seen else float("nan")


# --- ticketlab's trainers ---------------------------------------------------------------------------------------


def _config(iterations: int):
    return ticketlab.preset("ppo_cartpole").replace(**{
        "train.steps": f"{iterations}it", "train.eval_every": f"{iterations}it", "prune.rewind": "0it",
        "rl.eval_episodes": 1})


def _members(config, data, count: int) -> list[PopulationMember]:
    members = []
    for index in range(count):
        model = TASK.initialize(TASK.build_model(config, data), config, index)
        weights = prunable_weights(model)
        masks = keep_top(random_scores(weights, index), {name: w.numel() // 2 for name, w in weights.items()})
        members.append(PopulationMember(model=model, masks=masks, data_seed=100 + index))
    return members


def stacked_seconds(count: int, iterations: int) -> float:
    config = _config(iterations)
    data = load_task_data(TASK, config)
    members = _members(config, data, count)
    started = clock()
    train_agent_population(members, data, config.train, rl=data.rl)
    return clock() - started


def alone_seconds(count: int, iterations: int) -> float:
    config = _config(iterations)
    data = load_task_data(TASK, config)
    members = _members(config, data, count)
    started = clock()
    for member in members:
        train_agent(member.model, data, config.train, rl=data.rl, masks=member.masks, data_seed=member.data_seed)
    return clock() - started


def plain_seconds(count: int, iterations: int) -> float:
    started = clock()
    for index in range(count):
        plain_ppo(100 + index, iterations)
    return clock() - started


def compare_vmap(count: int = 32, minibatch: int = 128, repeats: int = 20) -> dict[str, float]:
    """Milliseconds per PPO minibatch forward+backward of `count` stacked agents: the stacked baddbmm path
    (tasks/rl/stacked_policy.py) against torch.func.vmap(grad(functional_call)) of the agent's own forward."""
    from torch.func import functional_call, grad, vmap

    from ticketlab.tasks.rl.population import AgentProgress, agent_stack

    config = _config(1)
    data = load_task_data(TASK, config)
    members = _members(config, data, count)
    agents = [AgentProgress(member, index, 1) for index, member in enumerate(members)]
    stack, net = agent_stack(members[0].model, agents, config.train, "cpu")
    generator = torch.Generator().manual_seed(0)
    obs = torch.randn((count, minibatch, 4), generator=generator)
    act = torch.randint(0, 2, (count, minibatch), generator=generator)
    adv = torch.randn((count, minibatch), generator=generator)
    ret = torch.randn((count, minibatch), generator=generator)

    def loss(logits, value, act, adv, ret):
        log_prob_all = torch.log_softmax(logits, -1)
        new_log_prob = log_prob_all.gather(-1, act.unsqueeze(-1)).squeeze(-1)
        entropy = -(log_prob_all.exp() * log_prob_all).sum(-1).mean(-1)
        adv = (adv - adv.mean(-1, keepdim=True)) / (adv.std(-1, keepdim=True) + 1e-8)
        ratio = new_log_prob.exp()
        policy = torch.max(-adv * ratio, -adv * ratio.clamp(0.8, 1.2)).mean(-1)
        return policy - 0.01 * entropy + 0.5 * (0.5 * ((value - ret) ** 2).mean(-1))

    def stacked():
        loss(*net.forward(stack.params, obs), act, adv, ret).sum().backward()
        for parameter in stack.params:
            parameter.grad = None

    base = copy.deepcopy(members[0].model).to("meta")
    member_grad = vmap(grad(lambda params, o, a, d, r: loss(*functional_call(base, params, (o,)), a, d, r)))
    params = {name: value.detach() for name, value in zip(stack.names, stack.params)}

    def vmapped():
        member_grad(params, obs, act, adv, ret)

    timings = {}
    for name, run in (("stacked baddbmm", stacked), ("vmap(grad(functional_call))", vmapped)):
        run()
        started = clock()
        for _ in range(repeats):
            run()
        timings[name] = (clock() - started) / repeats * 1e3
    return timings


def atari_frames_per_second(iterations: int) -> tuple[float, str]:
    config = ticketlab.preset("ppo_pong_short").replace(**{
        "train.steps": f"{iterations}it", "train.eval_every": f"{iterations}it", "prune.rewind": "0it",
        "rl.eval_episodes": 1})
    data = load_task_data(TASK, config)
    model = TASK.initialize(TASK.build_model(config, data), config, 0)
    masks = {name: torch.ones_like(w) for name, w in prunable_weights(model).items()}
    started = clock()
    rl = config.rl
    # the end-of-training evaluation plays whole Pong games: time the iterations through on_progress instead
    marks = []
    train_agent(model, data, config.train, rl=rl, masks=masks, data_seed=0,
                on_snapshot=lambda step, m, o: marks.append(clock()),
                snapshot_steps=tuple(range(1, iterations + 1)))
    seconds = marks[-1] - started
    frames = iterations * rl.num_envs * rl.rollout_steps * 4  # frame skip 4
    return frames / seconds, f"{iterations} iterations of {rl.num_envs} x {rl.rollout_steps} agent steps"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                        help="cpu (default): this process's CPU time, robust to other processes' load with one "
                        "thread; wall: elapsed time")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--iterations", type=int, default=8, help="PPO iterations per agent")
    parser.add_argument("--baseline-agents", type=int, default=2,
                        help="agents the one-after-another loops train (their rate does not depend on the number)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="each figure is the best of this many measurements, taken in turn (other load only "
                        "ever slows a measurement down)")
    parser.add_argument("--profile", type=int, default=None, metavar="K")
    parser.add_argument("--atari", action="store_true")
    parser.add_argument("--compare-vmap", action="store_true",
                        help="also time a minibatch forward+backward of 32 agents: stacked baddbmm vs torch.func.vmap")
    parser.add_argument("--atari-iterations", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    global clock
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {args.threads} thread(s), "
          f"CartPole-v1, {args.iterations} iterations x {STEPS_PER_ITERATION} steps per agent, {args.clock} clock")
    if args.profile:
        config = _config(args.iterations)
        data = load_task_data(TASK, config)
        members = _members(config, data, args.profile)
        profile = cProfile.Profile()
        profile.runcall(train_agent_population, members, data, config.train, rl=data.rl)
        pstats.Stats(profile).sort_stats("tottime").print_stats(30)
        return
    stacked_seconds(2, 1), plain_seconds(1, 1)  # warm-up: lazy imports (torch.optim builds dynamo on first use)
    steps = args.iterations * STEPS_PER_ITERATION
    best: dict[str, float] = {}
    for _ in range(args.repeats):  # in turn, so that a burst of other load does not fall on one figure only
        measured = {"plain": plain_seconds(args.baseline_agents, args.iterations) / args.baseline_agents,
                    "alone": alone_seconds(args.baseline_agents, args.iterations) / args.baseline_agents}
        measured.update({count: stacked_seconds(count, args.iterations) / count for count in args.sizes})
        best = {key: min(value, best.get(key, float("inf"))) for key, value in measured.items()}
    plain_rate, alone_rate = steps / best["plain"], steps / best["alone"]
    print(f"one after another ({args.baseline_agents} agents, best of {args.repeats}): plain CleanRL-style loop "
          f"{plain_rate:,.0f} steps/s; ticketlab train_agent {alone_rate:,.0f} steps/s")
    print(f"{'K':>3} {'stacked steps/s':>16} {'vs plain':>9} {'vs train_agent':>15}")
    for count in args.sizes:
        rate = steps / best[count]
        print(f"{count:>3} {rate:>16,.0f} {rate / plain_rate:>8.2f}x {rate / alone_rate:>14.2f}x")
    print("reproduce: OMP_NUM_THREADS=1 nice -n 10 python benchmarks/rl_population_speed.py "
          f"--threads {args.threads} --iterations {args.iterations} --repeats {args.repeats}"
          + (" --atari" if args.atari else "") + (" --compare-vmap" if args.compare_vmap else ""))
    if args.compare_vmap:
        timings = compare_vmap()
        print("PPO minibatch fwd+bwd, 32 agents x 128 samples: " + ", ".join(
            f"{name} {ms:.2f} ms" for name, ms in timings.items()))
    if args.atari:
        try:
            rate, what = atari_frames_per_second(args.atari_iterations)
            print(f"Atari Pong, one agent (ppo_pong_short settings, {what}): {rate:,.0f} frames/s")
        except ticketlab.errors.ConfigError as error:
            print(f"Atari: {error}")


if __name__ == "__main__":
    main()
