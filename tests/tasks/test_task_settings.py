"""Settings that only other tasks read are refused in one line, never ignored (`train.beam_size` on a language
model, `data.classes` on an agent, `data.sequence_length` on a classifier), and no preset sets one its task
ignores."""

from __future__ import annotations

import dataclasses

import pytest

from ticketlab.cli import main
from ticketlab.config import ExperimentConfig
from ticketlab.errors import ConfigError
from ticketlab.presets import PRESETS, preset
from ticketlab.tasks.data_settings import TASK_SETTINGS, refuse_other_task_settings

TINY_MNIST1D = ["--preset", "mnist1d", "--model.hidden", "8", "--steps", "4it", "--levels", "1",
                "--data.train_size", "200", "--train.eval_every", "2it", "--variants", "iterative_reset", "--quiet",
                "--no-report", "--workers", "1"]


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ticketlab: error: "), err
    return err[0]


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_sets_only_what_its_task_reads(name, capsys):
    refuse_other_task_settings(preset(name))  # raises for a setting its task would ignore
    assert main(["config", "--preset", name]) == 0
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("extra, message", [
    (["--train.beam_size", "4"], "train.beam_size 4 applies to translation only, not to classification (mnist1d): "
                                 "the classification task does not use it; leave it at its default 1"),
    (["--train.label_smoothing", "0.1"], "train.label_smoothing 0.1 applies to translation only"),
    (["--data.sequence_length", "50"], "data.sequence_length 50 applies to language only, not to classification "
                                       "(mnist1d): the classification task does not use it"),
    (["--data.vocab_size", "100"], "data.vocab_size 100 applies to translation only"),
    (["--rl.num_envs", "8"], "rl.num_envs 8 applies to reinforcement learning only, not to classification"),
    (["--model.heads", "4"], "model.heads 4 applies to translation only"),
    (["--model.embedding_dim", "8"], "model.embedding_dim 8 applies to language only"),
])
def test_a_classifier_refuses_other_tasks_settings(tmp_path, capsys, extra, message):
    assert main(["find", *TINY_MNIST1D, "--root", str(tmp_path / "runs"), *extra]) == 2
    assert message in _one_error_line(capsys)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_language_model_refuses_a_beam_width(tmp_path, capsys):
    (tmp_path / "shk").mkdir()
    (tmp_path / "shk" / "input.txt").write_text("To be, or not to be: that is the question.\n" * 40)
    args = ["find", "--preset", "lstm_tiny", "--data-dir", str(tmp_path / "shk"), "--levels", "1", "--variants",
            "iterative_reset", "--quiet", "--no-report", "--workers", "1", "--root", str(tmp_path / "runs")]
    for extra, message in ((["--train.beam_size", "4"], "train.beam_size 4 applies to translation only, not to a "
                                                         "language model (tiny_shakespeare): the language task does "
                                                         "not use it"),
                           (["--data.validation_size", "100"], "data.validation_size 100 applies to classification "
                                                               "only"),
                           (["--data.image_size", "32"], "data.image_size 32 applies to image data only")):
        assert main([*args, *extra]) == 2
        assert message in _one_error_line(capsys)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_an_agent_refuses_classes(tmp_path, capsys):
    pytest.importorskip("gymnasium")
    args = ["find", "--preset", "ppo_tiny", "--levels", "1", "--variants", "iterative_reset", "--quiet",
            "--no-report", "--workers", "1", "--root", str(tmp_path / "runs")]
    for extra, message in ((["--data.classes", "0-1"], "data.classes '0-1' applies to classification only, not to "
                                                       "reinforcement learning (CartPole-v1): the rl task does not "
                                                       "use it; leave it unset"),
                           (["--data.train_size", "100"], "data.train_size 100 applies to classification, language "
                                                          "and translation only")):
        assert main([*args, *extra]) == 2
        assert message in _one_error_line(capsys)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_each_task_accepts_the_settings_it_reads():
    """The table's readers are accepted: a changed value of a setting a task reads is never refused for it."""
    changed = {"data.classes": "0-1", "data.image_size": 32, "data.channels": 3, "data.augment": True,
               "data.validation_size": 10, "data.train_size": 10, "data.sequence_length": 9, "data.source": "en",
               "data.target": "de", "data.vocab_size": 100, "data.eval_size": 5, "train.label_smoothing": 0.1,
               "train.beam_size": 4, "model.embedding_dim": 8, "model.tie_weights": True, "model.heads": 2,
               "model.ffn_dim": 8, "model.weights": "pretrained.safetensors", "model.pretrained_dir": "vit",
               "rl.num_envs": 8}
    defaults = ExperimentConfig()
    for dotted, (_, readers) in TASK_SETTINGS.items():
        if dotted not in changed:  # the other rl.* fields: only rl reads them (glue.*, mlm.*: those tasks)
            assert readers == {dotted.split(".")[0]}, dotted
            continue
        section, name = dotted.split(".")
        values = dataclasses.replace(getattr(defaults, section), **{name: changed[dotted]})
        for task in ("classification", "language", "translation", "rl"):
            config = dataclasses.replace(defaults, task=task, **{section: values})
            if task in readers:
                refuse_other_task_settings(config)
            else:
                with pytest.raises(ConfigError, match=f"{dotted} .* applies to .* the {task} task does not use it"):
                    refuse_other_task_settings(config)
