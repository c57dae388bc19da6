"""Exports of finished runs: every format round-trips and reproduces the masked model; the prune-convention file
loads with torch.nn.utils.prune's own functions; `ticketlab export` / `ticketlab cost` through the CLI."""

import csv
import sys

import pytest
import safetensors.torch
import torch
from torch import nn
from torch.nn.utils import prune

from ticketlab.cli import main
from ticketlab.config import ExperimentConfig, ModelConfig, PruneConfig, TrainConfig
from ticketlab.data.splits import make_splits
from ticketlab.export import FORMATS, export_ticket, load_export, load_ticket
from ticketlab.lottery.experiment import find_tickets
from ticketlab.models import build_model
from ticketlab.pruning import prunable_weights
from ticketlab.pruning.channels import alive_channels, channel_groups

TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}
HAS_ONNX = all(__import__("importlib").util.find_spec(name) for name in ("onnx", "onnxruntime"))


def _images():
    generator = torch.Generator().manual_seed(0)
    templates = torch.rand(4, 1, 8, 8, generator=generator)
    labels = torch.randint(0, 4, (300,), generator=generator)
    images = templates[labels] + 0.3 * torch.rand(300, 1, 8, 8, generator=generator)
    return make_splits(images[:200], labels[:200], images[200:], labels[200:], validation_size=40, num_classes=4)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two finished conv2 runs on 8x8 images (channel pruning and unstructured), data loaded through the task
    (as `ticketlab export` loads it)."""
    from ticketlab.tasks import classification

    splits = _images()
    patch = pytest.MonkeyPatch()
    patch.setattr(classification, "load_dataset", lambda data_config: splits)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("runs")
    found = {}
    for unit in ("channel", "weight"):
        config = ExperimentConfig(
            model=ModelConfig(name="conv2", width=4),
            train=TrainConfig(optimizer="adam", lr=5e-3, batch_size=40, steps="30it", eval_every="15it"),
            prune=PruneConfig(rate=0.4, output_rate=0.2, levels=2, unit=unit),
            variants=("iterative_reset", "random_pruning"), trials=1)
        found[unit] = find_tickets(config, root=root, progress=False, report=False).run_dir
    yield found, splits
    torch.set_num_threads(threads)
    patch.undo()


def _masked_outputs(ticket):
    with torch.no_grad():
        return ticket.model(ticket.examples)


@pytest.mark.parametrize("fmt", [name for name in FORMATS if not name.startswith("onnx")])
@pytest.mark.parametrize("unit", ["channel", "weight"])
def test_every_export_round_trips_and_reproduces_the_masked_model(runs, tmp_path, fmt, unit):
    ticket = load_ticket(runs[0][unit], level=2)
    result = export_ticket(ticket, fmt, tmp_path / f"ticket.{fmt}")
    assert result.bytes == (tmp_path / f"ticket.{fmt}").stat().st_size > 0
    model = load_export(tmp_path / f"ticket.{fmt}")  # rebuilt from the file's metadata alone
    with torch.no_grad():
        assert torch.allclose(model(ticket.examples), _masked_outputs(ticket), **TOLERANCE)
    assert not list(tmp_path.glob(".*partial"))


def test_channel_tickets_are_structured_and_compact_exports_are_smaller(runs, tmp_path):
    run_dir = runs[0]["channel"]
    tickets = [load_ticket(run_dir, level) for level in range(3)]
    groups = channel_groups(tickets[0].model)
    previous = None
    for ticket in tickets[1:]:
        for group in groups:
            rows = ticket.masks[f"{group.producer}.weight"].flatten(1)
            alive = alive_channels(ticket.masks, group)
            # whole channels only: every kept row has the same mask (the previous group's kept inputs)
            assert alive.any() and torch.all(rows[alive] == rows[alive][0]) and rows[~alive].sum() == 0
            assert torch.all(ticket.masks[f"{group.producer}.bias"] == alive.float())  # bias masked with it
            if previous is not None:
                assert torch.all(alive <= alive_channels(previous.masks, group))  # IMP nests
        previous = ticket
    random_ticket = load_ticket(run_dir, 2, variant="random_pruning")
    for group in groups:
        assert alive_channels(random_ticket.masks, group).sum() == alive_channels(tickets[2].masks, group).sum()
    dense = export_ticket(tickets[2], "dense", tmp_path / "d")
    compact = export_ticket(tickets[2], "compact", tmp_path / "c")
    assert compact.bytes < dense.bytes
    assert compact.cost["dense_flops"] == dense.cost["effective_flops"] < dense.cost["dense_flops"]


def test_prune_convention_loads_with_torch_nn_utils_prune(runs, tmp_path):
    ticket = load_ticket(runs[0]["weight"], level=2)
    export_ticket(ticket, "prune", tmp_path / "ticket.safetensors")
    tensors = safetensors.torch.load_file(tmp_path / "ticket.safetensors")
    model = build_model("conv2", (1, 8, 8), 4, width=4)
    modules = dict(model.named_modules())
    pruned = [name.rpartition(".")[0] for name in prunable_weights(model)]
    for name in pruned:
        prune.identity(modules[name], "weight")  # torch's own reparametrization: weight_orig + weight_mask
    model.load_state_dict(tensors)
    model.eval()
    assert all(prune.is_pruned(modules[name]) for name in pruned)
    with torch.no_grad():
        assert torch.allclose(model(ticket.examples), _masked_outputs(ticket), **TOLERANCE)
    for name in pruned:
        assert torch.equal(modules[name].weight_mask, ticket.masks[f"{name}.weight"])
        prune.remove(modules[name], "weight")
    final = dict(ticket.model.named_parameters())
    for name, parameter in model.named_parameters():
        assert torch.equal(parameter, final[name])


def test_dense_export_is_a_plain_state_dict(runs, tmp_path):
    ticket = load_ticket(runs[0]["weight"], level=1)
    export_ticket(ticket, "dense", tmp_path / "dense.safetensors")
    model = build_model("conv2", (1, 8, 8), 4, width=4)
    model.load_state_dict(safetensors.torch.load_file(tmp_path / "dense.safetensors"))
    with torch.no_grad():
        assert torch.equal(model.eval()(ticket.examples), _masked_outputs(ticket))


def test_export_and_cost_commands(runs, tmp_path, capsys):
    run_dir = str(runs[0]["channel"])
    out = tmp_path / "compact.safetensors"
    assert main(["export", run_dir, "--level", "2", "--format", "compact", "--output", str(out)]) == 0
    line = capsys.readouterr().out
    assert line.startswith(f"compact: {out} (") and "outputs match the masked model" in line
    assert main(["export", run_dir, "--level", "9", "--format", "dense", "--output", str(out)]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "level 9" in error[0] and "is not finished" in error[0]
    assert main(["export", run_dir, "--level", "1", "--format", "zip", "--output", str(out)]) == 2
    assert "invalid choice: 'zip'" in capsys.readouterr().err
    assert main(["export", str(tmp_path), "--level", "1", "--format", "dense", "--output", str(out)]) == 2
    assert "is not a run directory" in capsys.readouterr().err
    assert main(["cost", run_dir]) == 0
    rows = list(csv.DictReader(open(runs[0]["channel"] / "cost.csv")))
    assert [(row["variant"], row["level"]) for row in rows][:3] == [("dense", "0"), ("iterative_reset", "1"),
                                                                    ("iterative_reset", "2")]
    assert float(rows[0]["remaining_flops_percent"]) == 100.0 > float(rows[2]["remaining_flops_percent"])
    layers = list(csv.DictReader(open(runs[0]["channel"] / "cost_layers.csv")))
    dense_layers = [row for row in layers if row["variant"] == "dense"]
    assert sum(int(row["dense_flops"]) for row in dense_layers) == int(rows[0]["dense_flops"])
    summary = (runs[0]["channel"] / "report" / "summary.md").read_text()
    assert "## Cost per inference" in summary and "remaining" in summary  # the report carries the cost table


@pytest.mark.skipif(not HAS_ONNX, reason="onnx / onnxruntime not installed (pip install 'ticketlab[export]')")
@pytest.mark.parametrize("fmt", ["onnx-dense", "onnx-compact"])
def test_onnx_exports_run_in_onnxruntime(runs, tmp_path, fmt):
    import onnxruntime

    ticket = load_ticket(runs[0]["channel"], level=2)
    export_ticket(ticket, fmt, tmp_path / "model.onnx")
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    outputs = torch.from_numpy(session.run(None, {"inputs": ticket.examples[:5].numpy()})[0])  # another batch size
    assert torch.allclose(outputs, _masked_outputs(ticket)[:5], **TOLERANCE)


def test_onnx_without_its_packages_is_one_line_naming_the_install(runs, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails
    code = main(["export", str(runs[0]["weight"]), "--level", "1", "--format", "onnx-dense",
                 "--output", str(tmp_path / "m.onnx")])
    error = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(error) == 1 and "pip install 'ticketlab[export]'" in error[0]
    assert not (tmp_path / "m.onnx").exists()


def test_installed_executable_exports_and_refuses_in_one_line(tmp_path):
    import subprocess
    from pathlib import Path

    installed = Path(sys.executable).parent / "ticketlab"
    command = [str(installed)] if installed.exists() else [sys.executable, "-m", "ticketlab.cli"]
    done = subprocess.run([*command, "export", str(tmp_path), "--level", "1", "--format", "dense", "--output",
                           str(tmp_path / "x")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "is not a run directory" in done.stderr
    done = subprocess.run([*command, "export", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "--format" in done.stdout
