"""Population training: every member ends as the same job trained alone by train_model (the reference).

Tolerance, stated honestly:
- One thread, every tensor size a multiple of the SIMD width (16 floats): with MKL on AVX2 the population is
  bitwise identical to train_model in weights, TrainResult and every metric except the per-step training loss,
  whose mean over a batch is summed in another order (relative 1e-6). The test asserts weights to atol 1e-6
  (bitwise here; leaves room for another BLAS that rounds a batched matmul differently).
- Default threads and odd sizes (the output bias has 10 entries): batched matmuls and the optimizer's vector
  tails round differently, about 1e-8 per step. Over 200 steps that stays near 1e-7 until a discrete event — a
  ReLU input crossing zero, or an Adam coordinate whose gradient is pure rounding noise — turns it into a
  fraction of one update; the worst we saw was 1.4e-4 with lr 3e-3. That test asserts weights to atol 1e-3
  and losses to relative 1e-3.
- The `device` fixture repeats that test and the kill/resume test on CUDA where a GPU exists (TF32 off), with
  the same bounds; kill/resume is bitwise there too. No GPU has run them yet.
"""

import pytest
import torch

from ticketlab.config import TrainConfig
from ticketlab.data.splits import make_splits
from ticketlab.models import build_model, initialize
from ticketlab.models.conv import ConvNet
from ticketlab.pruning import keep_top, prunable_weights, random_scores
from ticketlab.store import read_jsonl
from ticketlab.training.loop import TrainingInterrupted, train_model
from ticketlab.training.optim import optimizer_tensors
from ticketlab.training.population import PopulationMember, can_vectorize, mlp_linears, train_population

STEPS = 300  # the rewound members train 200 steps
CONFIGS = [
    TrainConfig(optimizer="sgd", lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4, batch_size=32,
                steps=f"{STEPS}it", eval_every="20it"),
    TrainConfig(optimizer="adam", lr=3e-3, weight_decay=1e-3, batch_size=32, steps=f"{STEPS}it", eval_every="20it"),
    TrainConfig(optimizer="adamw", lr=3e-3, weight_decay=0.1, batch_size=32, steps=f"{STEPS}it", eval_every="20it",
                schedule="cosine", warmup="10it"),
]
REWIND = 100


def _data(classes: int):
    generator = torch.Generator().manual_seed(0)
    templates = torch.randn(classes, 24, generator=generator)
    labels = torch.randint(0, classes, (700,), generator=generator)
    inputs = templates[labels] + 0.8 * torch.randn(700, 24, generator=generator)
    return make_splits(inputs[:600], labels[:600], inputs[600:], labels[600:], validation_size=100,
                       num_classes=classes)


def _model(seed: int, classes: int):
    return initialize(build_model("mlp", (24,), classes, hidden=(32, 16)), "glorot_normal", seed)


def _masks(model, keep_fraction: float, seed: int):
    weights = prunable_weights(model)
    return keep_top(random_scores(weights, seed=seed),
                    {name: int(weight.numel() * keep_fraction) for name, weight in weights.items()})


def _rewind_state(data, config, classes):
    """Weights and optimizer state of a dense run at step REWIND (the rewind point of a lottery experiment)."""
    saved = {}

    def keep(step, model, optimizer):
        saved.update(weights={k: v.clone() for k, v in model.state_dict().items()},
                     optimizer={k: v.clone() for k, v in optimizer_tensors(optimizer).items()})

    train_model(_model(9, classes), data, config, masks={}, data_seed=9, total_steps=REWIND,
                snapshot_steps=(REWIND,), on_snapshot=keep)
    return saved


def _jobs(data, config, classes):
    """Five different jobs: dense, two masks, a late rewind without optimizer state, one with it, a short one."""
    rewind = _rewind_state(data, config, classes)
    specs = [
        dict(seed=1, keep=1.0, data_seed=5),
        dict(seed=2, keep=0.5, data_seed=6),
        dict(seed=3, keep=0.2, data_seed=7, start_step=REWIND),  # reinit-style: late start, fresh optimizer
        dict(seed=9, keep=0.3, data_seed=9, start_step=REWIND, weights=rewind["weights"],
             optimizer_state=rewind["optimizer"]),  # reset-style rewind with optimizer state
        dict(seed=4, keep=0.5, data_seed=8, total_steps=150),
    ]

    def build():
        jobs = []
        for spec in specs:
            model = _model(spec["seed"], classes)
            if "weights" in spec:
                model.load_state_dict(spec["weights"])
            # a copy each time: train_model's optimizer adopts the tensors it is given and updates them in place
            optimizer_state = None
            if "optimizer_state" in spec:
                optimizer_state = {name: value.clone() for name, value in spec["optimizer_state"].items()}
            jobs.append(dict(model=model, masks=_masks(model, spec["keep"], spec["seed"]), data_seed=spec["data_seed"],
                             start_step=spec.get("start_step", 0), total_steps=spec.get("total_steps"),
                             optimizer_state=optimizer_state))
        return jobs

    return build


def _train_alone(jobs, data, config, root):
    results = [train_model(job["model"], data, config, masks=job["masks"], data_seed=job["data_seed"],
                           start_step=job["start_step"], total_steps=job["total_steps"],
                           optimizer_state=job["optimizer_state"], job_dir=root / f"alone{i}")
               for i, job in enumerate(jobs)]
    return results


def _members(jobs, root, **extra):
    return [PopulationMember(job["model"], job["masks"], job["data_seed"], job["start_step"], job["total_steps"],
                             job["optimizer_state"], job_dir=root / f"member{i}", **extra)
            for i, job in enumerate(jobs)]


def _assert_metrics_match(path_a, path_b, rtol, test_logged=True):
    rows_a, rows_b = read_jsonl(path_a), read_jsonl(path_b)
    assert [row["step"] for row in rows_a] == [row["step"] for row in rows_b]
    for row_a, row_b in zip(rows_a, rows_b):
        if not test_logged:  # the population evaluated the test set only for the reported minimum
            row_a.pop("test_accuracy", None)
        assert row_a.keys() == row_b.keys()
        for key in row_a:
            assert row_b[key] == pytest.approx(row_a[key], rel=rtol, abs=1e-7), (key, row_a["step"])


@pytest.mark.parametrize("test_at_every_minimum", [True, False], ids=["test-every-minimum", "test-deferred"])
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.optimizer)
def test_population_equals_alone_one_thread(one_thread, tmp_path, config, test_at_every_minimum):
    classes = 16  # every tensor size a multiple of 16 floats
    data = _data(classes)
    build = _jobs(data, config, classes)
    alone_jobs, population_jobs = build(), build()
    expected = _train_alone(alone_jobs, data, config, tmp_path)
    members = _members(population_jobs, tmp_path)
    results = train_population(members, data, config, test_at_every_minimum=test_at_every_minimum)

    for i, (alone, member) in enumerate(zip(alone_jobs, members)):
        for name, value in alone["model"].state_dict().items():
            torch.testing.assert_close(member.model.state_dict()[name], value, atol=1e-6, rtol=0, msg=name)
        for name, mask in member.masks.items():
            assert torch.all(member.model.state_dict()[name][mask == 0] == 0), name
        assert results[i] == expected[i]
        _assert_metrics_match(tmp_path / f"alone{i}" / "metrics.jsonl", tmp_path / f"member{i}" / "metrics.jsonl",
                              rtol=1e-6, test_logged=test_at_every_minimum)
    assert [result.final_iteration for result in results] == [STEPS, STEPS, STEPS, STEPS, 150]


def test_population_matches_alone_default_threads_odd_sizes(tmp_path, device):
    config = CONFIGS[1]
    classes = 10  # the output bias (10 floats) leaves a vector tail: rounding differs from the reference
    data = _data(classes).to(device)
    build = _jobs(data, config, classes)
    alone_jobs, population_jobs = [build()[i] for i in (0, 3)], [build()[i] for i in (0, 3)]  # dense; rewound
    expected = _train_alone(alone_jobs, data, config, tmp_path)
    members = _members(population_jobs, tmp_path)
    results = train_population(members, data, config)
    for i, (alone, member) in enumerate(zip(alone_jobs, members)):
        for name, value in alone["model"].state_dict().items():
            assert value.device.type == device.type
            torch.testing.assert_close(member.model.state_dict()[name], value, atol=1e-3, rtol=0, msg=name)
        for name, mask in member.masks.items():
            assert torch.all(member.model.state_dict()[name][mask.to(device) == 0] == 0), name
        assert results[i].final_iteration == expected[i].final_iteration
        assert results[i].final_val_loss == pytest.approx(expected[i].final_val_loss, rel=1e-3)
        assert results[i].final_train_loss == pytest.approx(expected[i].final_train_loss, rel=1e-3)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.optimizer)
def test_member_rounding_does_not_depend_on_its_neighbours(one_thread, tmp_path, config):
    """Odd sizes (10 classes) and members at different step counts side by side: each member of the population
    ends bitwise equal to a population of that member alone, so grouping never changes a number."""
    classes = 10
    data = _data(classes)
    build = _jobs(data, config, classes)
    together_jobs = build()
    together = train_population(_members(together_jobs, tmp_path / "together"), data, config)
    for i in range(len(together_jobs)):
        alone_job = build()[i]
        alone = train_population(_members([alone_job], tmp_path / f"alone{i}"), data, config)[0]
        assert alone == together[i], i
        for name, value in alone_job["model"].state_dict().items():
            assert torch.equal(together_jobs[i]["model"].state_dict()[name], value), (i, name)


def test_population_resumes_exactly_after_a_kill(one_thread, tmp_path, device):
    config = CONFIGS[1]
    classes = 16
    data = _data(classes).to(device)
    build = _jobs(data, config, classes)
    reference_jobs = build()
    reference = train_population(_members(reference_jobs, tmp_path / "a"), data, config)

    # Killed after 165 batched steps: the 150-step member has finished (and is simply retrained), the others
    # checkpointed at steps 160 and 260 (the rewound ones) and lose the 5 steps since.
    with pytest.raises(TrainingInterrupted):
        train_population(_members(build(), tmp_path / "b"), data, config, checkpoint_interval_s=0,
                         stop_after_iterations=165)
    assert (tmp_path / "b" / "member0" / "checkpoint.safetensors").exists()
    assert (tmp_path / "b" / "member3" / "checkpoint.safetensors").exists()
    resumed_jobs = build()
    resumed = train_population(_members(resumed_jobs, tmp_path / "b"), data, config, checkpoint_interval_s=0)

    assert resumed == reference
    for i, (a, b) in enumerate(zip(reference_jobs, resumed_jobs)):
        for name, value in a["model"].state_dict().items():
            assert torch.equal(b["model"].state_dict()[name], value), (i, name)
        assert read_jsonl(tmp_path / "a" / f"member{i}" / "metrics.jsonl") == read_jsonl(
            tmp_path / "b" / f"member{i}" / "metrics.jsonl")
        assert not (tmp_path / "b" / f"member{i}" / "checkpoint.safetensors").exists()


def test_train_model_resumes_a_population_checkpoint(one_thread, tmp_path):
    config = CONFIGS[0]
    classes = 16
    data = _data(classes)
    build = _jobs(data, config, classes)
    [alone] = build()[1:2]
    expected = train_model(alone["model"], data, config, masks=alone["masks"], data_seed=alone["data_seed"])
    with pytest.raises(TrainingInterrupted):
        train_population(_members(build(), tmp_path), data, config, checkpoint_interval_s=0,
                         stop_after_iterations=130)
    [job] = build()[1:2]
    resumed = train_model(job["model"], data, config, masks=job["masks"], data_seed=job["data_seed"],
                          job_dir=tmp_path / "member1", checkpoint_interval_s=0)
    assert resumed == expected
    for name, value in alone["model"].state_dict().items():
        assert torch.equal(job["model"].state_dict()[name], value), name


def test_snapshots_match_train_model(one_thread, tmp_path):
    config = CONFIGS[1]
    classes = 16
    data = _data(classes)
    snapshots = {}

    def saver(label):
        def save(step, model, optimizer):
            snapshots[label, step] = ({k: v.clone() for k, v in model.state_dict().items()},
                                      {k: v.clone() for k, v in optimizer_tensors(optimizer).items()})
        return save

    train_model(_model(1, classes), data, config, masks={}, data_seed=3, snapshot_steps=(0, 40),
                on_snapshot=saver("alone"))
    train_population([PopulationMember(_model(1, classes), {}, 3, snapshot_steps=(0, 40), on_snapshot=saver("pop")),
                      PopulationMember(_model(2, classes), {}, 4)], data, config)
    for step in (0, 40):
        (weights_a, optim_a), (weights_b, optim_b) = snapshots["alone", step], snapshots["pop", step]
        assert weights_a.keys() == weights_b.keys() and optim_a.keys() == optim_b.keys()
        for name in weights_a:
            assert torch.equal(weights_a[name], weights_b[name])
        for name in optim_a:
            assert torch.equal(optim_a[name], optim_b[name]), name
    assert not snapshots["alone", 0][1]  # no optimizer state before the first step


def test_can_vectorize_trusted_stacks_only():
    assert mlp_linears(_model(0, 10)) is not None  # the hand-written MLP path
    assert mlp_linears(torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2)))
    assert not can_vectorize(torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2)))
    ends_in_relu = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU())
    assert mlp_linears(ends_in_relu) is None and can_vectorize(ends_in_relu)  # the torch.func path
    assert can_vectorize(ConvNet((1, 8, 8), 10, blocks=1, width=4))
    assert not can_vectorize(ConvNet((1, 8, 8), 10, blocks=1, width=4, dropout=0.5))

    class Custom(torch.nn.Module):  # same modules, but its own forward: not trusted
        def __init__(self):
            super().__init__()
            self.layers = torch.nn.Sequential(torch.nn.Linear(4, 2))

        def forward(self, inputs):
            return self.layers(inputs) * 2

    assert not can_vectorize(Custom())


def test_a_member_with_a_damaged_checkpoint_restarts_and_the_others_resume(one_thread, tmp_path, capsys):
    config = TrainConfig(optimizer="adam", lr=3e-3, batch_size=32, steps="60it", eval_every="20it")
    classes = 16
    data = _data(classes)

    def build():
        jobs = []
        for seed in (1, 2):
            model = _model(seed, classes)
            jobs.append(dict(model=model, masks=_masks(model, 0.5, seed), data_seed=seed, start_step=0,
                             total_steps=None, optimizer_state=None))
        return jobs

    reference = train_population(_members(build(), tmp_path / "a"), data, config)
    with pytest.raises(TrainingInterrupted):
        train_population(_members(build(), tmp_path / "b"), data, config, checkpoint_interval_s=0,
                         stop_after_iterations=45)
    damaged = tmp_path / "b" / "member0" / "checkpoint.safetensors"
    payload = bytearray(damaged.read_bytes())
    payload[-1] ^= 0x10  # still parses; its tensor bytes no longer match the sha256 in its metadata
    damaged.write_bytes(bytes(payload))
    resumed_jobs = build()
    assert train_population(_members(resumed_jobs, tmp_path / "b"), data, config) == reference
    warnings = capsys.readouterr().err.strip().splitlines()
    assert len(warnings) == 1 and "member0/checkpoint.safetensors: tensor bytes differ from their recorded sha256; " \
        "the job restarts from its start (moved to checkpoint.corrupt-" in warnings[0]
    assert read_jsonl(tmp_path / "a" / "member0" / "metrics.jsonl") == read_jsonl(
        tmp_path / "b" / "member0" / "metrics.jsonl")
