"""Train a population of same-architecture networks together: K jobs stacked along a leading dimension.

Each member keeps everything its single-job trainer gives a job — its own initial weights, masks, data order,
optimizer state, start/total steps (so its place in the learning-rate schedule), evaluation record,
metrics.jsonl and checkpoint — while the arithmetic of all members runs as one batched step.

One engine serves every task that stacks (classifiers here, PPO agents in `ticketlab.tasks.rl.population`):
- `member`: the job handed in (`PopulationMember`) and the per-member bookkeeping and life cycle.
- `stack`: `RowStack`, the K-row stacks of weights, masks and optimizer state, the per-member fused
  Adam/SGD step, `keep(rows)` when members stop, and each member's model and optimizer in the single-job format.
A task supplies its batches, forward/backward and evaluation: for classifiers `classifier_nets` (a hand-written
backward for Linear/ReLU stacks, vmap for conv nets), `classifier` (batches, evaluation, weights at the minimum)
and `train` (`train_population`); `stackable` says which models stack, by a protocol the model class declares.
"""

from ticketlab.training.population.member import MemberProgress, PopulationMember, advance_members, report_progress
from ticketlab.training.population.stack import RowStack
from ticketlab.training.population.stackable import (
    can_vectorize,
    functional_vectorizable,
    member_memory_bytes,
    mlp_linears,
    population_eval_bytes,
    prefers_population,
)
from ticketlab.training.population.train import train_population

__all__ = [
    "MemberProgress",
    "PopulationMember",
    "RowStack",
    "advance_members",
    "can_vectorize",
    "functional_vectorizable",
    "member_memory_bytes",
    "mlp_linears",
    "population_eval_bytes",
    "prefers_population",
    "report_progress",
    "train_population",
]
