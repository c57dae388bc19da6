"""What a user sees around the training itself: a refused run leaves no empty run directory behind (and never
removes one that holds results), and the progress bar always says what is happening."""

import pytest

from ticketlab.config import ExperimentConfig, ModelConfig, PruneConfig, TrainConfig
from ticketlab.errors import ConfigError, DataError
from ticketlab.api import find_tickets
from ticketlab.lottery import experiment
from ticketlab.lottery.progress import LabelledBar


def _config(**changes):
    config = ExperimentConfig(
        model=ModelConfig(name="mlp", hidden=(16,)),
        train=TrainConfig(optimizer="adam", lr=5e-3, batch_size=50, steps="20it", eval_every="10it"),
        prune=PruneConfig(rate=0.5, levels=1), trials=1, variants=("iterative_reset",),
    )
    return config.replace(**changes) if changes else config


def _refuse_data(monkeypatch):
    def missing(task, config):
        raise DataError("the data are not where they were said to be")

    monkeypatch.setattr(experiment, "load_task_data", missing)


def test_a_refusal_after_the_lock_leaves_no_run_directory(tmp_path, monkeypatch):
    _refuse_data(monkeypatch)
    with pytest.raises(DataError, match="not where they were said to be"):
        find_tickets(_config(), root=tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_a_refusal_never_removes_a_run_directory_with_results(tmp_path, tiny_data, monkeypatch):
    result = find_tickets(_config(), root=tmp_path, data=tiny_data, progress=False, report=False)
    files = sorted(path.relative_to(tmp_path) for path in tmp_path.rglob("*"))
    monkeypatch.setattr(experiment, "check_against_data", _raise_config_error)
    with pytest.raises(ConfigError, match="refused for the test"):
        find_tickets(_config(), root=tmp_path, data=tiny_data, progress=False, report=False)
    assert sorted(path.relative_to(tmp_path) for path in tmp_path.rglob("*")) == files
    assert result.results_csv.is_file()


def test_a_run_directory_made_by_another_call_is_kept(tmp_path, monkeypatch):
    """Only the call that made the directory removes it: one that found it (e.g. holding just a lock) keeps it."""
    run_dir = experiment.run_directory(_config(), tmp_path)
    run_dir.mkdir()
    _refuse_data(monkeypatch)
    with pytest.raises(DataError):
        find_tickets(_config(), root=tmp_path, progress=False)
    assert run_dir.is_dir()


def _raise_config_error(*args, **kwargs):
    raise ConfigError("refused for the test")


class _RecordingBar:
    def __init__(self):
        self.descriptions, self.count = [], 0

    def set_description(self, text):
        self.descriptions.append(text)

    def update(self, count=1):
        self.count += count

    def close(self):
        pass


def test_the_bar_says_what_it_waits_for_until_the_first_step():
    recorded = _RecordingBar()
    bar = LabelledBar(recorded)
    assert recorded.descriptions == ["preparing the first job"]
    bar.set_waiting("starting 2 worker processes, each loads the data")
    bar.set_description("trial 0 level 0 dense")
    assert recorded.descriptions[-1] == "trial 0 level 0 dense (starting 2 worker processes, each loads the data)"
    bar.update(10)
    assert recorded.descriptions[-1] == "trial 0 level 0 dense" and recorded.count == 10
    in_process = _RecordingBar()
    bar = LabelledBar(in_process)
    bar.set_description("trial 0 level 1 iterative_reset")  # in this process a job starts when it is labelled
    assert in_process.descriptions[-1] == "trial 0 level 1 iterative_reset"


def test_find_shows_no_unlabelled_bar(tmp_path, tiny_data, capsys):
    find_tickets(_config(), root=tmp_path, data=tiny_data, progress=True, report=False)
    frames = [frame for frame in capsys.readouterr().err.replace("\n", "\r").split("\r") if "%|" in frame]
    assert frames and all(not frame.startswith(" ") and ": " in frame.split("%|")[0] for frame in frames), frames
    assert any(frame.startswith("trial 0 level 1 iterative_reset") for frame in frames)
