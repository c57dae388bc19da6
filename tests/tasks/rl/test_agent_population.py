"""Stacked PPO populations: a member is the agent trained alone, bit for bit on one CPU thread (the conftest sets
one thread), through kills and resumes, and through the planner's run directory.

Why bitwise and not a tolerance: the population runs, per member, the kernels the agent alone runs with the same
shapes (baddbmm rounds as nn.Linear's addmm for these sizes; the one-output value head runs addmv per member; the
weight gradient is grad^T x as addmm's backward computes it; clipping uses the same norm kernels; Adam is torch's
fused kernel on per-member views with per-member step counts). With several threads or other BLAS builds the
batched and single matmuls may sum in other orders (differences of ~1e-8 per update, which PPO can amplify
through a flipped sampled action); these tests pin the one-thread CPU case.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch

pytest.importorskip("gymnasium")

import ticketlab
from ticketlab.cli import main
from ticketlab.pruning import full_masks, keep_top, prunable_weights, random_scores
from ticketlab.store import load_tensors_and_metadata
from ticketlab.tasks import load_task
from ticketlab.tasks.base import load_task_data
from ticketlab.tasks.rl.population import train_agent_population
from ticketlab.tasks.rl.ppo import TrainingInterrupted, train_agent
from ticketlab.training.optim import build_optimizer, optimizer_tensors
from ticketlab.training.population import PopulationMember

TASK = load_task("rl")


def _setup(**changes):
    config = ticketlab.preset("ppo_tiny").replace(**{"train.steps": "5it", "train.eval_every": "2it", **changes})
    return config, load_task_data(TASK, config)


def _agent(config, data, seed):
    return TASK.initialize(TASK.build_model(config, data), config, seed)


def _masks(model, keep, seed):
    weights = prunable_weights(model)
    if keep == 1.0:
        return full_masks(weights)
    return keep_top(random_scores(weights, seed), {name: int(keep * w.numel()) for name, w in weights.items()})


def _members(config, data):
    """Three different jobs: dense from 0; pruned from 0; pruned, rewound to iteration 2 (weights and Adam state of
    an agent trained 2 iterations) and trained to 4 — another start, total, schedule position and step count."""
    rewound = _agent(config, data, 2)
    optimizer = build_optimizer(list(rewound.parameters()), config.train)
    train_agent(rewound, data, config.train, masks=full_masks(prunable_weights(rewound)), data_seed=9,
                total_steps=2, on_snapshot=lambda step, model, opt: optimizer.load_state_dict(opt.state_dict()),
                snapshot_steps=(2,))
    specs = [(_agent(config, data, 0), 1.0, 11, 0, None, None),
             (_agent(config, data, 1), 0.3, 12, 0, None, None),
             (rewound, 0.5, 13, 2, 4, optimizer_tensors(optimizer))]
    return [dict(model=model, masks=_masks(model, keep, seed), data_seed=seed, start_step=start, total_steps=total,
                 optimizer_state=state) for model, keep, seed, start, total, state in specs]


def _alone(config, data, spec, **kwargs):
    model = copy.deepcopy(spec["model"])
    result = train_agent(model, data, config.train, **{key: value for key, value in spec.items() if key != "model"},
                         **kwargs)
    return model, result


def _population(config, data, specs, job_dirs=None, **kwargs):
    members = [PopulationMember(**dict(spec, model=copy.deepcopy(spec["model"]),
                                       job_dir=job_dirs[index] if job_dirs else None))
               for index, spec in enumerate(specs)]
    return members, train_agent_population(members, data, config.train, rl=data.rl, **kwargs)


def _assert_same_weights(a, b):
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name


def test_a_member_equals_the_agent_trained_alone():
    config, data = _setup()
    specs = _members(config, data)
    members, results = _population(config, data, specs)
    for spec, member, result in zip(specs, members, results):
        model, expected = _alone(config, data, spec)
        _assert_same_weights(model, member.model)
        assert result == expected
    assert [result.final_iteration for result in results] == [5, 5, 4]
    pruned = prunable_weights(members[1].model)
    assert all(torch.all(w[specs[1]["masks"][name] == 0] == 0) for name, w in pruned.items())


@pytest.mark.parametrize("changes", [{"rl.shared_trunk": True}, {"rl.deterministic_eval": False}])
def test_a_shared_trunk_or_sampled_evaluation_member_equals_the_agent_alone(changes):
    config, data = _setup(**changes, **{"train.steps": "2it", "train.eval_every": "1it"})
    specs = [dict(model=_agent(config, data, seed), masks=_masks(_agent(config, data, seed), 0.5, seed),
                  data_seed=seed) for seed in (0, 1)]
    members, results = _population(config, data, specs)
    for spec, member, result in zip(specs, members, results):
        model, expected = _alone(config, data, spec)
        _assert_same_weights(model, member.model)
        assert result == expected


def test_a_killed_population_resumes_exactly_in_a_population_or_alone(tmp_path):
    config, data = _setup()
    specs = _members(config, data)
    whole, expected = _population(config, data, specs)
    dirs = [tmp_path / f"job{index}" for index in range(len(specs))]
    with pytest.raises(TrainingInterrupted):
        _population(config, data, specs, dirs, checkpoint_interval_s=0.0, stop_after_step=3)
    assert all((job_dir / "checkpoint.safetensors").exists() for job_dir in dirs)
    alone_dir = tmp_path / "alone"  # the same checkpoint, resumed by train_agent
    alone_dir.mkdir()
    for name in ("checkpoint.safetensors", "metrics.jsonl"):
        (alone_dir / name).write_bytes((dirs[1] / name).read_bytes())
    resumed, results = _population(config, data, specs, dirs)
    assert results == expected
    for a, b in zip(whole, resumed):
        _assert_same_weights(a.model, b.model)
    model, alone_result = _alone(config, data, specs[1], job_dir=alone_dir)
    _assert_same_weights(model, whole[1].model)
    assert alone_result == expected[1]
    assert (alone_dir / "metrics.jsonl").read_text() == (dirs[1] / "metrics.jsonl").read_text()
    steps = [[json.loads(line)["step"] for line in (d / "metrics.jsonl").read_text().splitlines()] for d in dirs]
    assert steps == [[2, 4, 5], [2, 4, 5], [4]]
    assert not any((job_dir / "checkpoint.safetensors").exists() for job_dir in dirs)


def test_the_planner_stacks_agents_and_writes_the_files_of_the_plain_path(tmp_path, capsys):
    args = ["find", "--preset", "ppo_tiny", "--prune.levels", "1", "--quiet", "--no-report"]
    assert main(args + ["--root", str(tmp_path / "stacked"), "--population", "3"]) == 0
    assert main(args + ["--root", str(tmp_path / "alone"), "--population", "1"]) == 0
    (stacked,), (alone,) = (tmp_path / "stacked").iterdir(), (tmp_path / "alone").iterdir()
    assert json.loads((stacked / "population.json").read_text())["population"] == 3
    files = sorted(path.relative_to(alone) for path in alone.rglob("*")
                   if path.suffix == ".safetensors" or path.name == "metrics.jsonl")
    assert len(files) > 10
    assert files == sorted(path.relative_to(stacked) for path in stacked.rglob("*")
                           if path.suffix == ".safetensors" or path.name == "metrics.jsonl")
    for path in files:  # the same tensors and metadata (safetensors' header may list metadata in any order)
        if path.suffix == ".safetensors":
            (a, a_meta), (b, b_meta) = (load_tensors_and_metadata(root / path) for root in (stacked, alone))
            assert a_meta == b_meta and a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), path
        else:
            assert (stacked / path).read_text() == (alone / path).read_text(), path
    results = [json.loads(path.read_text()) for path in stacked.rglob("result.json")]
    assert {result["population_size"] for result in results if result["level"] == 1} == {3}
    capsys.readouterr()
    # a run directory keeps its population size: another one is one line, status 2
    assert main(args + ["--root", str(tmp_path / "stacked"), "--population", "2"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "--population 3" in error


def test_an_optimizer_populations_cannot_stack_is_one_line(tmp_path, capsys):
    code = main(["find", "--preset", "ppo_tiny", "--train.optimizer", "sgd", "--population", "2", "--root",
                 str(tmp_path), "--quiet", "--no-report"])
    error = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(error) == 1 and "train.optimizer 'sgd'" in error[0] and "--population 1" in error[0]
