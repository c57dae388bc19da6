"""Cost accounting of a whole run: parameters, nonzero parameters and FLOPs per inference of every finished job,
in total (RUN_DIR/cost.csv) and per layer (RUN_DIR/cost_layers.csv), with a Markdown table (report/cost.md)."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from ticketlab.export.api import run_model_factory, task_with_example_inputs
from ticketlab.export.cost import model_cost
from ticketlab.lottery.integrity import read_finished_jobs, read_run_config
from ticketlab.store import atomic_write_bytes, load_tensors, write_csv

TOTAL_COLUMNS = ("variant", "trial", "level", "weights_remaining_percent", "parameters", "nonzero_parameters",
                 "dense_flops", "effective_flops", "remaining_flops_percent")
LAYER_COLUMNS = ("variant", "trial", "level", "layer", "kind", "weights", "nonzero", "positions", "dense_flops",
                 "effective_flops")


def run_cost(run_dir: str | Path, *, model: nn.Module | None = None, data=None) -> dict[str, Path]:
    """Write cost.csv, cost_layers.csv and report/cost.md for every finished job of `run_dir`; returns the paths.

    Level 0 (the dense job) appears once, as variant 'dense'. The run's config and every finished job's files are
    checked first (`ticketlab.lottery.integrity`): IntegrityError naming the damaged files, and nothing written."""
    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    task_with_example_inputs(config, run_dir, "cost")  # refused before any job is read
    jobs = read_finished_jobs(run_dir)  # every finished job's result and files checked before any is used
    config, data, make_model, example_inputs = run_model_factory(run_dir, config, model, data, "cost")
    example = example_inputs(data, "test", 1).cpu()
    network = make_model(0)
    totals, layers = [], []
    for job_dir, result in jobs.items():
        network.load_state_dict(load_tensors(job_dir / "weights_final.safetensors"))
        cost = model_cost(network, example)
        key = {"variant": result["variant"], "trial": result["trial"], "level": result["level"]}
        totals.append(key | {"weights_remaining_percent": result["weights_remaining_percent"]} | cost.totals())
        layers += [key | {"layer": layer.name} | {k: v for k, v in layer.to_dict().items() if k != "name"}
                   for layer in cost.layers]
    totals.sort(key=lambda row: (row["variant"] != "dense", row["variant"], row["trial"], row["level"]))
    files = {"cost": run_dir / "cost.csv", "cost_layers": run_dir / "cost_layers.csv",
             "cost_table": run_dir / "report" / "cost.md"}
    write_csv(files["cost"], TOTAL_COLUMNS, totals)
    write_csv(files["cost_layers"], LAYER_COLUMNS, layers)
    atomic_write_bytes(files["cost_table"], cost_markdown(totals).encode())
    return files


def cost_markdown(rows: list[dict]) -> str:
    lines = ["| variant | trial | level | weights remaining | nonzero params | dense MFLOPs | effective MFLOPs | "
             "FLOPs remaining |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in rows:
        lines.append(f"| {row['variant']} | {row['trial']} | {row['level']} | {row['weights_remaining_percent']:.1f}% | "
                     f"{row['nonzero_parameters']:,} | {row['dense_flops'] / 1e6:.3f} | "
                     f"{row['effective_flops'] / 1e6:.3f} | {row['remaining_flops_percent']:.1f}% |")
    return "\n".join(lines) + "\n"

