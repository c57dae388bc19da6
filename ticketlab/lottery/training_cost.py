"""The training cost of each result of a lottery run: the optimizer steps and the training FLOPs of every job that
led to it (results.csv's `train_steps_total` and `train_flops_total`), so methods compare on one budget axis.

A result's cost is its own job's training plus that of each job its variant says it builds on
(`Variant.cost_inputs`, followed recursively, each job counted once): an iterative IMP level L pays the dense run
and the retraining of levels 1..L, each at its own mask's density; one-shot pruning the dense run and one
retraining; learning-rate rewinding and fine-tuning their chains; pruning at init and random pruning their own
training only (the score's few batches, prune.score_batches forward-backward passes against thousands of training
steps, are not counted); gradual magnitude pruning and dynamic sparse training their one run. A `rewound` job
whose ancestry lacks the dense run (pruning at init under prune.rewind k > 0) pays the k dense steps that made θk.

Steps are the jobs' actual lengths (result.json's final_iteration - start_step: early stopping picks a point, it
never shortens training). FLOPs follow Evci et al. 2020 (RigL), Appendix H: a training step costs 3x the forward
pass (the forward pass, the gradient with respect to the activations, the one with respect to the weights) per
example, train.batch_size examples a step, with the forward FLOPs per example of `ticketlab cost`
(`ticketlab.export.flops`: 2 per multiply-accumulate of a nonzero Linear/Conv weight, on one `example_inputs`
input; biases, norms, activations, embedding lookups and recurrent cells are not counted) under the mask in
force. A mask that changes while the job trains is integrated over the counts its variant declares
(`Variant.kept_during_training`: exact per tensor for gmp's layer-wise schedule; a global total is spread over
the layers as the final mask's pruned weights are); without a declaration (RigL, SET: each layer's count is fixed)
the final mask's counts hold throughout. A step that also takes the dense gradient (RigL's update every ΔT steps,
`Variant.dense_gradient_steps`) computes the weight gradient densely: 2 f_S + f_D instead of 3 f_S per example, as
Evci et al. price it (ticketlab's RigL takes that gradient in a separate pass on a copy of the model, which costs
more wall time than the paper's fused step). Evaluation passes are not counted. A task
without `example_inputs` leaves the FLOPs cells empty, as does a job whose ancestry is not all finished.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from ticketlab.lottery.context import ExperimentContext, is_done, read_result
from ticketlab.lottery.keys import DENSE, JobKey
from ticketlab.lottery.variants import variant_named

TRAIN_FLOPS_PER_FORWARD = 3  # forward + backward to activations + backward to weights (Evci et al. 2020, App. H)
COST_COLUMNS = ("train_steps_total", "train_flops_total")


@dataclass(frozen=True)
class ForwardCost:
    """Forward FLOPs per example of each Linear/Conv weight tensor, per kept entry (2 x the positions it is applied
    at), and its number of entries: enough to price any mask of the network."""

    flops_per_weight: dict[str, int]
    weights: dict[str, int]

    def flops(self, kept: Mapping[str, int]) -> int:
        """Forward FLOPs per example with `kept` entries of the named tensors (the others dense)."""
        return sum(per * kept.get(name, self.weights[name]) for name, per in self.flops_per_weight.items())


def forward_cost(ctx: ExperimentContext) -> ForwardCost | None:
    """The run's network priced on one test input of the task (None: the task has no `example_inputs`)."""
    if ctx.task.example_inputs is None:
        return None
    from ticketlab.export.cost import model_cost

    cost = model_cost(ctx.make_model(0), ctx.task.example_inputs(ctx.data, "test", 1).cpu())
    per_weight = {layer.name: layer.dense_flops // layer.weights for layer in cost.layers if layer.weights}
    return ForwardCost(per_weight, {layer.name: layer.weights for layer in cost.layers if layer.weights})


def training_costs(ctx: ExperimentContext, graph: Mapping[JobKey, tuple]) -> dict[JobKey, dict]:
    """{job: {"train_steps_total": int, "train_flops_total": int or None}} for every finished job of `graph` whose
    cost ancestry has finished too."""
    pricing = forward_cost(ctx)
    own: dict[JobKey, tuple[int, float | None]] = {}
    costs = {}
    for key in graph:
        ancestry = cost_ancestry(key)
        if not all(is_done(ctx, job) for job in (key, *ancestry)):
            continue
        result = read_result(ctx, key)
        for job in (key, *ancestry):
            if job not in own:
                own[job] = job_training(ctx, job, result if job == key else read_result(ctx, job), pricing)
        steps = sum(own[job][0] for job in (key, *ancestry))
        flops = None if pricing is None else sum(own[job][1] for job in (key, *ancestry))
        prefix = _rewind_prefix(key, int(result.get("start_step", 0)), ancestry)
        if prefix:
            steps += prefix
            flops = None if flops is None else flops + _step_flops(ctx, pricing.flops({})) * prefix
        costs[key] = {"train_steps_total": steps, "train_flops_total": None if flops is None else round(flops)}
    return costs


def cost_ancestry(key: JobKey) -> tuple[JobKey, ...]:
    """Every job whose training `key`'s result builds on (`Variant.cost_inputs`, recursively), each once."""
    found: dict[JobKey, None] = {}
    pending = list(variant_named(key.variant).cost_inputs(key))
    while pending:
        job = pending.pop()
        if job not in found and job != key:
            found[job] = None
            pending.extend(variant_named(job.variant).cost_inputs(job))
    return tuple(sorted(found))


def job_training(ctx: ExperimentContext, key: JobKey, result: Mapping, pricing: ForwardCost | None
                 ) -> tuple[int, float | None]:
    """(optimizer steps, training FLOPs) of one job alone, from its sealed result."""
    variant = variant_named(key.variant)
    start = int(result.get("start_step", 0))
    if "final_iteration" in result:
        steps = int(result["final_iteration"]) - start
    elif "stopped_at_step" in result:  # a search that stops when it has found what it looks for
        steps = int(result["stopped_at_step"]) - start
    else:
        steps = variant.steps(ctx, key)
    if pricing is None:
        return steps, None
    layers = result["layer_remaining"]
    final = {name: int(remaining) for name, (remaining, _) in layers.items()}
    sizes = {name: int(total) for name, (_, total) in layers.items()}
    dense_gradients = variant.dense_gradient_steps(ctx, key) * ctx.config.train.batch_size * (
        pricing.flops(sizes) - pricing.flops(final))
    path = variant.kept_during_training(ctx, key, sizes)
    if path is None:
        return steps, _step_flops(ctx, pricing.flops(final)) * steps + dense_gradients
    end, flops = start + steps, 0.0
    for index, (from_step, kept) in enumerate(path):
        until = path[index + 1][0] if index + 1 < len(path) else end
        span = min(until, end) - max(from_step, start)
        if span > 0:
            flops += _step_flops(ctx, _forward_flops(pricing, kept, final, sizes)) * span
    return steps, flops + dense_gradients


def _forward_flops(pricing: ForwardCost, kept, final: dict[str, int], sizes: dict[str, int]) -> float:
    """Forward FLOPs per example with `kept` (per tensor, or a total spread like the final mask's pruning)."""
    if isinstance(kept, Mapping):
        return pricing.flops(kept)
    final_total, size_total = sum(final.values()), sum(sizes.values())
    final_flops = pricing.flops(final)
    if size_total == final_total:
        return final_flops
    return final_flops + (pricing.flops(sizes) - final_flops) * (kept - final_total) / (size_total - final_total)


def _step_flops(ctx: ExperimentContext, forward_flops: float) -> float:
    return TRAIN_FLOPS_PER_FORWARD * forward_flops * ctx.config.train.batch_size


def _rewind_prefix(key: JobKey, start_step: int, ancestry: tuple[JobKey, ...]) -> int:
    """Dense steps a `rewound` job starting at step k > 0 pays for its θk when the dense run is not in its cost."""
    if not variant_named(key.variant).rewound or any(job.variant == DENSE for job in ancestry):
        return 0
    return start_step
