"""The executor table: which executor trains a run, and a toy executor added in this one file (register, run,
unregister) that the `find` path picks up by its --executor name."""

import dataclasses

import pytest
import torch

from ticketlab.config import ExperimentConfig, ModelConfig, PruneConfig, TrainConfig
from ticketlab.data.splits import make_splits
from ticketlab.errors import ConfigError
from ticketlab.api import find_tickets
from ticketlab.lottery.workers import model_factory
from ticketlab.lottery.executors import (
    EXECUTORS,
    Execution,
    Executor,
    ExecutorChoice,
    RunPlan,
    check_choice,
    choose_executor,
)
from ticketlab.lottery.executors.in_process import train_in_process
from ticketlab.lottery.context import ExperimentContext
from ticketlab.lottery.jobs import job_graph
from ticketlab.lottery.progress import NoBar


def _data():
    generator = torch.Generator().manual_seed(0)
    inputs, labels = torch.randn(120, 6, generator=generator), torch.randint(0, 3, (120,), generator=generator)
    return make_splits(inputs[:90], labels[:90], inputs[90:], labels[90:], validation_size=15, num_classes=3)


def _config():
    return ExperimentConfig(model=ModelConfig(name="mlp", hidden=(8,)),
                            train=TrainConfig(batch_size=15, steps="12it", eval_every="6it"),
                            prune=PruneConfig(levels=1), variants=("iterative_reset", "random_pruning"), trials=1)


def _execution(tmp_path, **plan_changes) -> Execution:
    config, data = _config(), _data()
    ctx = ExperimentContext(config=config, run_dir=tmp_path, data=data, make_model=model_factory(config, data, None),
                            group=plan_changes.get("group"))
    plan = dataclasses.replace(RunPlan(config=config, run_dir=tmp_path, device=torch.device("cpu")), **plan_changes)
    return Execution(plan=plan, ctx=ctx, graph=job_graph(ctx), bar=NoBar(), template=ctx.make_model(0),
                     on_jobs_start=lambda keys: None, on_jobs_done=lambda keys: None)


@pytest.mark.parametrize("changes, expected", [
    ({}, "in_process"),
    ({"workers": 2, "population": 1}, "processes"),  # population 1: nothing stacks, jobs go one per process
    ({"workers": 2, "population": 4}, "population_processes"),
    ({"group": object(), "population": 1}, "torchrun"),
    ({"executor": ExecutorChoice("ray")}, "ray"),
])
def test_the_table_chooses_the_executor_the_if_chain_chose(changes, expected, tmp_path):
    assert choose_executor(_execution(tmp_path, **changes)).name == expected


def test_a_toy_executor_is_one_registration(tmp_path, capsys):
    trained = []

    def train(execution: Execution) -> None:
        trained.append(sorted(key.label() for key in execution.graph))
        train_in_process(execution)

    EXECUTORS.register("toy", Executor("toy", "toy", applies=lambda execution: True, train=train))
    try:
        toy = find_tickets(_config(), root=tmp_path / "toy", data=_data(), executor="toy", progress=False,
                           report=False)
    finally:
        EXECUTORS.unregister("toy")
    assert len(trained) == 1 and len(trained[0]) == 3  # dense, the ticket and the control of level 1
    local = find_tickets(_config(), root=tmp_path / "local", data=_data(), progress=False, report=False)
    assert toy.results_csv.read_bytes() == local.results_csv.read_bytes()
    with pytest.raises(ConfigError, match="unknown executor 'toy'; allowed: local, ray"):
        check_choice(ExecutorChoice("toy"))


def test_the_task_says_how_many_examples_a_batch_must_fit_in(tmp_path):
    config = _config().replace(**{"train.batch_size": 76})  # 90 examples, 15 held out for validation
    with pytest.raises(ConfigError, match="train.batch_size 76 is larger than the 75 training examples"):
        find_tickets(config, root=tmp_path, data=_data(), progress=False, report=False)
    assert not any(tmp_path.iterdir())  # refused before anything but the (removed) lock was written


def test_the_task_says_why_a_model_does_not_stack(tmp_path, capsys):
    from torch import nn

    from ticketlab.lottery.planner import notify_unstacked

    execution = _execution(tmp_path)
    unstackable = nn.Sequential(nn.Linear(6, 8), nn.LayerNorm(8), nn.Linear(8, 3))
    notify_unstacked(execution.ctx, unstackable, None)
    assert capsys.readouterr().err == (f"ticketlab: Sequential cannot be stacked ({execution.ctx.task.stack_refusal}); "
                                       "training its jobs one at a time\n")
    assert "Flatten/Linear/ReLU" in execution.ctx.task.stack_refusal
