"""Configs: step parsing, strict loading, serialization round trips and the run-directory hash."""

import json

import pytest

from ticketlab.config import ExperimentConfig, config_from_dict, load_config, parse_step
from ticketlab.errors import ConfigError
from ticketlab.presets import PRESETS, preset


def test_parse_step():
    assert parse_step("500it") == 500
    assert parse_step("40ep", iterations_per_epoch=916) == 36640
    assert parse_step("12") == 12
    with pytest.raises(ConfigError, match="invalid step '5 epochs'"):
        parse_step("5 epochs")
    with pytest.raises(ConfigError, match="in epochs"):
        parse_step("2ep")


def test_json_and_toml_round_trip(tmp_path):
    config = preset("lenet_fashion_mnist").replace(
        **{"prune.rewind": "500it", "train.schedule": "step", "train.milestones": ["1000it"]})
    path = tmp_path / "c.json"
    path.write_text(config.to_json())
    assert load_config(path) == config
    toml = tmp_path / "c.toml"
    toml.write_text('seed = 3\n[train]\nlr = 0.5\noptimizer = "sgd"\nmomentum = 0.9\n[model]\nhidden = [64, 32]\n')
    loaded = load_config(toml)
    assert loaded.seed == 3 and loaded.train.lr == 0.5 and loaded.model.hidden == (64, 32)


def test_hash_ignores_defaults_trials_variants_and_paths():
    base = ExperimentConfig()
    assert base.hash() == config_from_dict({}).hash()
    assert base.replace(trials=5, variants=["iterative_reset"]).hash() == base.hash()
    assert base.replace(**{"data.data_dir": "/somewhere", "data.download": False}).hash() == base.hash()
    assert base.replace(**{"train.lr": 0.5}).hash() != base.hash()
    assert base.replace(seed=1).hash() != base.hash()
    # an explicitly written default hashes like an omitted one
    assert config_from_dict({"train": {"lr": base.train.lr}}).hash() == base.hash()


@pytest.mark.parametrize(
    "values, message",
    [
        ({"trian": {}}, "unknown config key 'trian'"),
        ({"prune": {"rate": 1.5}}, "prune.rate 1.5 must be a fraction in (0, 1)"),
        ({"prune": {"target_remaining_percent": 0}}, "must be in (0, 100]"),
        ({"train": {"batch_size": "sixty"}}, "train.batch_size value 'sixty' must be an integer"),
        ({"train": {"optimizer": "lion"}}, "unknown train.optimizer 'lion'; allowed: sgd, adam, adamw"),
        ({"train": {"nesterov": True}}, "train.nesterov needs"),
        ({"trials": 0}, "trials 0 must be >= 1"),
    ],
)
def test_bad_values_are_named(values, message):
    with pytest.raises(ConfigError) as error:
        config_from_dict(values)
    assert message in str(error.value)


def test_presets_are_valid_and_paper_protocol_matches():
    for name in PRESETS:
        preset(name).validate()
    paper = preset("lenet_fashion_mnist")
    assert (paper.train.optimizer, paper.train.lr, paper.train.batch_size) == ("adam", 1.2e-3, 60)
    assert (paper.train.steps, paper.train.eval_every, paper.data.validation_size) == ("50000it", "100it", 5000)
    assert (paper.prune.rate, paper.prune.output_rate, paper.model.name) == (0.2, 0.1, "lenet300_100")
    assert json.loads(paper.to_json())["model"]["name"] == "lenet300_100"


# --- validation of every value ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "values, message",
    [
        ({"train": {"lr": 1e300}}, "train.lr 1e+300 must be a number in (0, 100]"),
        ({"train": {"lr": float("nan")}}, "train.lr nan"),
        ({"train": {"lr": 0}}, "train.lr 0.0 must be a number in (0, 100]"),
        ({"train": {"gamma": -5}}, "train.gamma -5.0 must be a finite number > 0"),
        ({"train": {"gamma": float("inf")}}, "train.gamma inf"),
        ({"train": {"weight_decay": float("nan")}}, "train.weight_decay nan must be a number in [0, 1]"),
        ({"train": {"optimizer": "sgd", "momentum": 1.0}}, "train.momentum 1.0 must be a number in [0, 1)"),
        ({"train": {"momentum": 0.9}}, "train.momentum 0.9 applies to train.optimizer 'sgd' only"),
        ({"train": {"clip_grad_norm": 0}}, "train.clip_grad_norm 0.0 must be a finite number > 0"),
        ({"train": {"batch_size": 0}}, "train.batch_size 0 must be >= 1"),
        ({"train": {"steps": "0it"}}, "train.steps '0it' must be at least 1 iteration"),
        ({"train": {"steps": "0ep"}}, "train.steps '0ep' must be at least 1 iteration"),
        ({"train": {"eval_every": "0it"}}, "train.eval_every '0it' must be at least 1 iteration"),
        ({"train": {"steps": "1" * 31 + "it"}}, "is too large: at most 30 digits"),
        ({"train": {"milestones": ["10it"]}}, "train.milestones apply to train.schedule 'step' only"),
        ({"train": {"schedule": "step", "milestones": ["4000it"], "steps": "3000it"}},
         "train.milestones '4000it' must be within training (train.steps '3000it')"),
        ({"train": {"warmup": "3001it"}}, "train.warmup '3001it' must be at most the training length"),
        ({"prune": {"rewind": "3000it"}}, "prune.rewind '3000it' must be before the end of training"),
        ({"prune": {"rewind": "2ep"}, "train": {"steps": "2ep"}}, "prune.rewind '2ep' must be before the end"),
        ({"prune": {"finetune_steps": "0it"}}, "prune.finetune_steps '0it' must be at least 1 iteration"),
        ({"prune": {"output_rate": float("nan")}}, "prune.output_rate nan must be a fraction in (0, 1)"),
        ({"prune": {"layer_rates": [["a", 0.3], ["a", 0.2]]}}, "prune.layer_rates names 'a' more than once"),
        ({"prune": {"layer_rates": [["a", 1.0]]}}, "prune.layer_rates[a] 1.0 must be a fraction in (0, 1)"),
        ({"prune": {"target_remaining_percent": float("nan")}}, "prune.target_remaining_percent nan must be in"),
        ({"prune": {"levels": -1}}, "prune.levels -1 must be >= 0"),
        ({"model": {"hidden": [16, 0]}}, "model.hidden [16, 0]: width 0 must be >= 1"),
        ({"model": {"hidden": [10**7]}}, "is too large: at most 1,000,000"),
        ({"model": {"dropout": 1.0}}, "model.dropout 1.0 must be a probability in [0, 1)"),
        ({"model": {"name": "resnet20", "depth": 21}}, "model.depth 21 of resnet20 must be 6n+2"),
        ({"model": {"name": "vgg19", "depth": 12}}, "model.depth 12 of vgg19 must be one of 11, 13, 16, 19"),
        ({"model": {"name": "conv4", "depth": 3}}, "model.depth 3 of conv4 must be even"),
        ({"model": {"width": 8}}, "model.width and model.depth apply to conv nets, not mlp"),
        ({"model": {"embedding_dim": 0}}, "model.embedding_dim 0 must be >= 1 or unset"),
        ({"data": {"sequence_length": 0}}, "data.sequence_length 0 must be >= 1"),
        ({"data": {"validation_size": 0}}, "data.validation_size 0 must be >= 1"),
        ({"variants": ["finetune", "finetune"]}, "variants lists 'finetune' more than once"),
        ({"variants": []}, "variants is empty"),
        ({"seed": 1.5}, "seed value 1.5 must be an integer"),
        ({"task": "vision"}, "unknown task 'vision'"),
    ],
)
def test_every_bad_value_is_named(values, message):
    with pytest.raises(ConfigError) as error:
        config_from_dict(values)
    assert message in str(error.value)


def test_dataclasses_built_in_python_are_type_checked():
    from ticketlab.config import ModelConfig, TrainConfig

    with pytest.raises(ConfigError, match=r"train.lr '0.1' must be a number"):
        ExperimentConfig(train=TrainConfig(lr="0.1")).validate()
    with pytest.raises(ConfigError, match=r"model.hidden \[16\] must be a list of widths"):
        ExperimentConfig(model=ModelConfig(hidden=[16])).validate()
    with pytest.raises(ConfigError, match="train.nesterov 1 must be true or false"):
        ExperimentConfig(train=TrainConfig(optimizer="sgd", momentum=0.9, nesterov=1)).validate()


def test_step_strings():
    from ticketlab.config import step_count

    assert step_count(" 40ep ") == (40, "ep") and step_count("7") == (7, "it")
    with pytest.raises(ConfigError, match="invalid step"):
        step_count("\u0663it")  # an Arabic-Indic digit: only ASCII digits are steps
    with pytest.raises(ConfigError, match="invalid step '-5it'"):
        step_count("-5it")
    assert parse_step("0" * 40 + "5it") == 5  # leading zeros do not count as digits


def test_layer_rates_command_line_form():
    config = ExperimentConfig().replace(**{"prune.layer_rates": "layers.0.weight=0.3, layers.2.weight=0.1"})
    assert config.prune.layer_rates == (("layers.0.weight", 0.3), ("layers.2.weight", 0.1))
    assert ExperimentConfig().replace(**{"prune.layer_rates": ""}).prune.layer_rates == ()
    with pytest.raises(ConfigError, match="must be NAME=VALUE"):
        ExperimentConfig().replace(**{"prune.layer_rates": "layers.0.weight"})
    with pytest.raises(ConfigError, match="prune.layer_rates value 'x' must be a number"):
        ExperimentConfig().replace(**{"prune.layer_rates": "a=x"})


def test_steps_in_epochs_are_checked_once_the_epoch_length_is_known():
    from ticketlab.config import check_steps
    from ticketlab.lottery.estimate import check_against_data

    config = ExperimentConfig().replace(**{"train.steps": "100it", "prune.rewind": "3ep"})  # fine without data
    check_steps(config)
    check_against_data(config, 30, train_examples=3000)  # 30 batches an epoch: 90 < 100
    with pytest.raises(ConfigError, match=r"prune.rewind '3ep' must be before the end of training"):
        check_against_data(config, 40, train_examples=4000)  # 40 an epoch: 120 > 100
    with pytest.raises(ConfigError, match="train.batch_size 100 is larger than the 99 training examples"):
        check_against_data(config, 1, train_examples=99)
    epochs = ExperimentConfig().replace(**{"train.steps": "2ep", "train.warmup": "250it"})
    check_against_data(epochs, 125)  # no examples: a task of token streams
    with pytest.raises(ConfigError, match="train.warmup '250it' must be at most the training length"):
        check_against_data(epochs, 124)


def test_load_config_reads_a_run_directorys_record(tmp_path):
    config = preset("mnist1d").replace(trials=3)
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"hash": config.hash(), "fingerprint": "", "config": config.to_dict()}))
    assert load_config(path) == config
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)


@pytest.mark.parametrize("section, values, message", [
    ("model", {"tie_weights": "yes"}, "model.tie_weights value 'yes' must be true or false (not text in quotes)"),
    ("model", {"tie_weights": "true"}, "model.tie_weights value 'true' must be true or false"),
    ("model", {"tie_weights": 1}, "model.tie_weights value 1 must be true or false"),
    ("data", {"augment": None}, "data.augment value None must be true or false"),
    ("train", {"batch_size": "64"}, "train.batch_size value '64' must be an integer (not text in quotes)"),
    ("train", {"batch_size": True}, "train.batch_size value True must be an integer"),
    ("train", {"lr": "0.01"}, "train.lr value '0.01' must be a number"),
    ("train", {"lr": False}, "train.lr value False must be a number"),
    ("data", {"train_size": "100"}, "data.train_size value '100' must be an integer"),
    ("model", {"embedding_dim": 8.0}, "model.embedding_dim value 8.0 must be an integer"),
    ("train", {"optimizer": 3}, "train.optimizer value 3 must be text"),
    ("train", {"steps": 500}, "train.steps value 500 must be text"),
    ("model", {"hidden": "64,32"}, "model.hidden value '64,32' must be a list"),
    ("model", {"hidden": ["64", 32]}, "model.hidden value '64' must be an integer"),
    ("prune", {"layer_rates": [["layers.0.weight", "0.3"]]}, "prune.layer_rates value '0.3' must be a number"),
])
def test_config_files_refuse_values_of_another_json_type(tmp_path, capsys, section, values, message):
    """A config file holds typed values: text where a boolean or number belongs is a mistake, never converted (the
    command line, whose values are all text, converts them)."""
    from ticketlab import cli

    path = tmp_path / "config.json"
    path.write_text(json.dumps({"task": "language", "data": {"name": "ptb"}, "model": {"name": "lstm"}}
                               | {section: ({"name": "lstm"} if section == "model" else {}) | values}))
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert message in str(error.value)
    with pytest.raises(ConfigError, match="must be"):
        config_from_dict({section: values})
    assert cli.main(["config", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"ticketlab: error: config file {str(path)!r}: ") and message in err[0]


def test_config_files_keep_typed_values_and_the_command_line_converts_text(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('task = "language"\n[data]\nname = "ptb"\ntrain_size = "none"\n[model]\nname = "lstm"\n'
                    'tie_weights = true\nembedding_dim = 200\n[train]\nlr = 20\nclip_grad_norm = 0.25\n')
    config = load_config(toml)
    assert config.model.tie_weights is True and config.train.lr == 20.0 and config.data.train_size is None
    (tmp_path / "bad.toml").write_text(toml.read_text().replace("tie_weights = true", 'tie_weights = "yes"'))
    with pytest.raises(ConfigError, match="model.tie_weights value 'yes' must be true or false"):
        load_config(tmp_path / "bad.toml")
    changed = config.replace(**{"model.tie_weights": "no", "train.batch_size": "8", "train.lr": "1.5"})
    assert (changed.model.tie_weights, changed.train.batch_size, changed.train.lr) == (False, 8, 1.5)


def test_make_splits_refuses_sizes_beyond_the_data():
    import torch

    from ticketlab.data.splits import make_splits

    x, y = torch.zeros(100, 3), torch.zeros(100, dtype=torch.long)
    assert len(make_splits(x, y, x, y, validation_size=20, train_size=80).x_train) == 80
    with pytest.raises(ConfigError, match=r"data.train_size 81 is larger than the 80 training examples left after "
                                          r"data.validation_size 20 \(of 100\); use at most 80"):
        make_splits(x, y, x, y, validation_size=20, train_size=81)
    with pytest.raises(ConfigError, match="data.validation_size 100 must be between 1 and 99"):
        make_splits(x, y, x, y, validation_size=100)


# --- the plan estimate against the job graph ------------------------------------------------------


@pytest.mark.parametrize("changes", [
    {"prune.levels": 3, "prune.rewind": "5it", "prune.finetune_steps": "7it", "trials": 2},
    {"variants": ["iterative_reinit", "random_pruning"], "prune.levels": 3, "prune.rewind": "4it"},
    {"variants": ["oneshot_reset", "finetune"], "prune.levels": 2, "train.steps": "2ep", "prune.rewind": "1ep"},
    {"prune.levels": 0},
    {"variants": ["snip", "synflow_reinit", "early_bird", "early_bird_reset"], "prune.levels": 2, "trials": 2},
    {"prune.scope": "global", "prune.output_rate": None, "prune.target_remaining_percent": 30.0,
     "prune.levels": 10_000, "variants": ["iterative_reset"]},
])
def test_plan_estimate_matches_the_job_graph(changes, tmp_path):
    import torch

    from ticketlab.lottery.estimate import plan_estimate
    from ticketlab.data.splits import make_splits
    from ticketlab.lottery.experiment import model_factory
    from ticketlab.lottery.context import ExperimentContext
    from ticketlab.lottery.jobs import job_graph, job_steps

    config = ExperimentConfig().replace(**{"model.hidden": [12], "train.steps": "20it", "train.batch_size": 10,
                                           "train.eval_every": "5it", **changes})
    x = torch.randn(130, 6)
    data = make_splits(x[:100], torch.arange(100) % 3, x[100:], torch.arange(30) % 3, validation_size=20)
    ctx = ExperimentContext(config=config, run_dir=tmp_path, data=data, make_model=model_factory(config, data, None))
    graph = job_graph(ctx)
    estimate = plan_estimate(config, iterations_per_epoch=8)  # 80 training examples / batch 10
    assert (estimate.jobs, estimate.levels) == (len(graph), ctx.levels)
    assert estimate.iterations == sum(job_steps(ctx, key) for key in graph)


def test_plan_estimate_is_an_upper_bound_with_a_target_and_slower_layers():
    from ticketlab.lottery.estimate import check_plan, plan_estimate

    config = ExperimentConfig().replace(**{"prune.target_remaining_percent": 30.0, "prune.levels": 10_000})
    plan = plan_estimate(config)  # output layer at 10% a round is the slowest: ceil(log 0.3 / log 0.9) = 12
    assert plan.levels == 12 and plan.jobs == 1 + 12 * 6 and plan.iterations == 3000 * plan.jobs
    assert plan_estimate(config.replace(**{"train.steps": "3ep"})).iterations is None  # epochs: data size unknown
    with pytest.raises(ConfigError, match=r"the experiment is 146,000 jobs \(2,000 trials x \(1 \+ 12 levels x 6 "
                                          r"variants\)\) and 438,000,000 training iterations, more than 100,000 jobs"):
        check_plan(config.replace(trials=2000))


def test_run_names_and_config_json_unchanged_by_task_sections():
    """The task sections (`rl`) are registered by the tasks, not declared in the config: run directory names and
    config.json's layout are those of the version that declared them (values recorded before the change)."""
    from ticketlab.presets import preset

    expected = {"mnist1d": "mnist1d_mlp_6dc0f1a35462883e", "ppo_tiny": "cartpole-v1_mlp_c2ae75b8fd04d85a",
                "lstm_tiny": "tiny-shakespeare_lstm_d840d5e21eff3b06",
                "transformer_tiny": "multi30k_transformer_adf194ee2eb03def"}
    assert {name: preset(name).run_name() for name in expected} == expected
    assert ExperimentConfig().hash() == "44136fa355b3678a"
    values = ExperimentConfig().to_dict()
    # each task section follows rl, in registration order (glue and mlm: the Hugging Face tasks)
    assert list(values) == ["task", "model", "data", "train", "prune", "rl", "glue", "mlm", "variants", "trials",
                            "seed"]
    assert values["task"] == "classification" and values["rl"]["num_envs"] == 4
    agent = preset("ppo_tiny")
    assert config_from_dict(json.loads(agent.to_json())) == agent and agent.rl.rollout_steps == 16
