"""6. Reinforcement-learning tickets (Yu, Edunov, Tian & Morcos 2019, section 3 / Figure 1): PPO on CartPole-v1
and Acrobot-v1, IMP tickets with late rewinding against the reinitialized tickets and random pruning. Metric:
the greedy policy's mean return over the evaluation episodes at the early-stop point (higher is better).

The paper (classic control with a 3-layer MLP policy, 20% a round, late rewinding): tickets match the dense
agent's reward down to a few percent of the weights and beat both controls at high sparsity; Acrobot's dense
results vary most between seeds.

Scaled for about an hour of 2 CPU cores: the `ppo_cartpole` preset (CleanRL's ppo.py defaults, 150 iterations of
4 x 128 steps, 14 rounds of 20% to 4.4%, rewind to iteration 10), 3 trials, and `ppo_acrobot` (300 iterations,
9 rounds of 30% to 4.0%), 5 trials because Acrobot's outcomes are bimodal (an agent solves it or stays near -500):
269 jobs, 58,700 PPO iterations (Acrobot measured at ~0.14 CPU-s each), ~2 CPU-hours, `--workers 2`.
`--quick`: the `ppo_tiny` preset (4 iterations of 4 x 16 steps, 2 rounds, one evaluation episode at the end) on
each environment.

    python -m benchmarks.reproduce.rl [--quick] [--out DIR] [--trials N]
"""

from __future__ import annotations

import time
from typing import Sequence

from benchmarks.reproduce import common

TRIALS = {"CartPole-v1": 3, "Acrobot-v1": 5}


def protocol(quick: bool, trials: int | None):
    """One config per environment."""
    import ticketlab

    configs = []
    for environment, full_trials in TRIALS.items():
        if quick:
            config = ticketlab.preset("ppo_tiny").replace(**{  # one greedy episode at the end: Acrobot's last 500 steps
                "data.name": environment, "train.eval_every": "4it", "rl.eval_episodes": 1, "trials": 2})
        else:
            name = "ppo_cartpole" if environment == "CartPole-v1" else "ppo_acrobot"
            config = ticketlab.preset(name).replace(trials=full_trials)
        configs.append(config.replace(trials=trials or config.trials))
    return configs


def main(argv: Sequence[str] | None = None) -> common.Outputs:
    args = common.parse_args(__doc__, argv, "runs/reproduce/rl")
    started = time.time()
    rows = []
    for config in protocol(args.quick, args.trials):
        result = common.find(config, args.out, workers=args.workers)
        rows += common.results_table(result.run_dir, args.out, "early_stop_test_metric",
                                     group_prefix=f"{config.data.name}: ")
    return common.finish(args.out, rows, title="RL tickets: PPO on CartPole and Acrobot" + (" (quick)" * args.quick),
                         note="Yu et al. 2019, Figure 1: mean greedy return at the early-stop point.",
                         started=started)


if __name__ == "__main__":
    main()
