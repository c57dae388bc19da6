"""The `stability` and `masks` subcommands: argument handling, torch-free import, one-line user errors."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from ticketlab.cli import masks, stability
from ticketlab.errors import ConfigError


def add_analysis_commands(commands) -> None:
    stability.add_command(commands)
    masks.add_command(commands)


def run_analysis_command(args: argparse.Namespace) -> int | None:
    return {"stability": stability.run, "masks": masks.run}.get(args.command, lambda args: None)(args)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="ticketlab")
    commands = root.add_subparsers(dest="command")
    commands.add_parser("find")
    add_analysis_commands(commands)
    return root


def test_importing_the_cli_does_not_import_torch():
    code = "import sys, ticketlab.analysis, ticketlab.cli.stability, ticketlab.cli.masks; print('torch' in sys.modules)"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "False"


def test_arguments_parse():
    args = parser().parse_args(["stability", "runs/x", "--rewind", "0it,100it,2ep", "--level", "0,3",
                                "--points", "12", "--train-examples", "500", "--fresh-optimizer"])
    assert (args.run_dir, args.rewind, args.levels, args.points) == ("runs/x", "0it,100it,2ep", "0,3", 12)
    assert args.train_examples == 500 and args.fresh_optimizer and not args.all_parameters
    assert run_analysis_command(parser().parse_args(["find"])) is None


def test_masks_command_prints_overlaps(tiny_run, capsys):
    assert run_analysis_command(parser().parse_args(["masks", str(tiny_run.run_dir)])) == 0
    printed = capsys.readouterr().out
    assert "iterative_vs_oneshot" in printed and "mask_overlap_png" in printed


def test_user_errors(tiny_run, tmp_path):
    with pytest.raises(ConfigError, match="custom model"):  # the CLI cannot rebuild a custom model
        run_analysis_command(parser().parse_args(["stability", str(tiny_run.run_dir), "--quiet"]))
    with pytest.raises(ConfigError, match="--levels"):
        run_analysis_command(parser().parse_args(["stability", str(tiny_run.run_dir), "--levels", "a,b"]))
    with pytest.raises(ConfigError, match="does not exist"):
        run_analysis_command(parser().parse_args(["masks", str(tmp_path / "missing")]))
    with pytest.raises(ConfigError, match="invalid step"):
        run_analysis_command(parser().parse_args(["stability", str(tiny_run.run_dir), "--rewind", "soon"]))


def test_stability_command_on_a_built_in_run(tmp_path, capsys):
    from ticketlab.config import DataConfig, ExperimentConfig, ModelConfig, PruneConfig, TrainConfig
    from ticketlab.data.mnist import FASHION_MNIST_SYSTEM_DIR
    from ticketlab.api import find_tickets

    if not (Path(FASHION_MNIST_SYSTEM_DIR) / "train-images-idx3-ubyte.gz").exists():
        pytest.skip("Debian's fashion-mnist files are not installed")
    config = ExperimentConfig(
        model=ModelConfig(name="mlp", hidden=(16,)),
        data=DataConfig(name="fashion_mnist", validation_size=100, train_size=300, download=False),
        train=TrainConfig(batch_size=50, steps="12it", eval_every="6it"),
        prune=PruneConfig(levels=1), variants=("iterative_reset",), trials=1,
    )
    run_dir = find_tickets(config, root=tmp_path, progress=False, report=False).run_dir
    args = parser().parse_args(["stability", str(run_dir), "--rewind", "0it,4it", "--points", "3",
                                "--test-examples", "200", "--device", "cpu", "--quiet"])
    assert run_analysis_command(args) == 0
    printed = capsys.readouterr().out
    assert "copies trained now: 8" in printed and "barrier_png" in printed
    assert (run_dir / "analysis" / "stability" / "stability.csv").read_text().count("\n") == 1 + 4


@pytest.mark.parametrize("flag, value, message", [
    ("--levels", "1,1", "--levels '1,1' lists 1 more than once"),
    ("--levels", "2,02", "--levels '2,02' lists 2 more than once"),
    ("--trials", "0,1,0", "--trials '0,1,0' lists 0 more than once"),
    ("--rewind", "0it,5it,0it", "--rewind '0it,5it,0it' lists 0it more than once"),
])
def test_stability_refuses_repeated_list_entries(tiny_run, capsys, flag, value, message):
    from ticketlab.cli import main

    assert main(["stability", str(tiny_run.run_dir), "--quiet", flag, value]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0] == f"ticketlab: error: {message}; list each at most once", err
