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
