"""Measured speed of tickets as models, on this machine's CPU: masked dense vs sparse kernels vs compact.

    python benchmarks/export_speed.py RUN_DIR [RUN_DIR ...] [--threads 1] [--out DIR] [--budget 0.3]

For every finished level of each run's iterative_reset chain (level 0 is the dense network, the baseline measured
in the same process), three inference forms of the same ticket:
- dense: the masked network as it trains (nn.Linear / nn.Conv2d, zeros included);
- sparse: `ticketlab.export.sparse_model` (torch.sparse CSR weights; convolutions through im2col);
- compact: `ticketlab.export.compact_model` (removable channels dropped; smaller only for prune.unit channel).
It reports batch-1 latency (ms per call), batch-256 throughput (examples/s), the on-disk size of
each export (checked against the masked model as every export is), and one training step at the run's batch size:
a masked dense step (forward, backward, zero pruned gradients, Adam, re-mask) against a sparse-kernel step
(weights as CSR values: forward torch.sparse.mm, input gradient through the transposed pattern, weight gradient
by torch.sparse.sampled_addmm on the pattern, Adam on the values only). Timings are the fastest of repeated calls
lasting about --budget seconds each (the batch-1 median is kept in the CSV too): on a shared machine the other calls
mostly measure the neighbours. The crossover is
the highest weights-remaining level at and below which the sparse form beats dense at every measured level.

Writes DIR/speed.csv, DIR/speed.md and DIR/speed.png (latency and throughput vs weights remaining).
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from ticketlab.export import compact_model, export_ticket, load_ticket, model_cost, sparse_model
from ticketlab.store import read_json
from ticketlab.training.loop import masked_optimizer_step

warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")


def timed(function, budget: float, minimum: int = 5) -> tuple[float, float]:
    """(fastest, median) seconds of `function()` over calls filling `budget` seconds. The fastest call is the
    estimate (as timeit advises): on a shared machine the others mostly measure the neighbours."""
    function()  # warm-up
    times, started = [], time.perf_counter()
    while len(times) < minimum or time.perf_counter() - started < budget:
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
        if len(times) >= 2000:
            break
    return min(times), statistics.median(times)


# --- a sparse-kernel training step -----------------------------------------------------------------


class _SparseMatmul(torch.autograd.Function):
    """values of a fixed CSR pattern [out, in] @ dense [in, B], differentiable in both."""

    @staticmethod
    def forward(ctx, values, layer, dense):
        matrix = torch.sparse_csr_tensor(layer.crow, layer.col, values, layer.shape, check_invariants=False)
        ctx.layer = layer
        ctx.save_for_backward(values, dense)
        return torch.sparse.mm(matrix, dense)

    @staticmethod
    def backward(ctx, grad_output):
        values, dense = ctx.saved_tensors
        layer = ctx.layer
        transposed = torch.sparse_csr_tensor(layer.crow_t, layer.col_t, values[layer.order_t],
                                             (layer.shape[1], layer.shape[0]), check_invariants=False)
        grad_dense = torch.sparse.mm(transposed, grad_output)
        pattern = torch.sparse_csr_tensor(layer.crow, layer.col, torch.zeros_like(values), layer.shape,
                                          check_invariants=False)
        grad_values = torch.sparse.sampled_addmm(pattern, grad_output, dense.t(), beta=0.0).values()
        return grad_values, None, grad_dense


class SparseTrainable(nn.Module):
    """A Linear or Conv2d (groups 1) trained as the nonzero values of its weight's CSR pattern."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.conv = isinstance(module, nn.Conv2d)
        if self.conv:
            self.kernel_size, self.stride = module.kernel_size, module.stride
            self.padding, self.dilation = module.padding, module.dilation
        matrix = module.weight.detach().reshape(module.weight.shape[0], -1)
        sparse = matrix.to_sparse_csr()
        self.shape = tuple(matrix.shape)
        self.crow, self.col = sparse.crow_indices(), sparse.col_indices()
        rows = torch.repeat_interleave(torch.arange(self.shape[0]), self.crow.diff())
        self.order_t = torch.argsort(self.col * self.shape[0] + rows)  # the values in the transpose's CSR order
        transposed = torch.sparse_coo_tensor(torch.stack([self.col, rows]), torch.ones(len(rows)),
                                             (self.shape[1], self.shape[0])).coalesce().to_sparse_csr()
        self.crow_t, self.col_t = transposed.crow_indices(), transposed.col_indices()
        self.values = nn.Parameter(sparse.values().clone())
        self.bias = None if module.bias is None else nn.Parameter(module.bias.detach().clone())

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if not self.conv:
            output = _SparseMatmul.apply(self.values, self, inputs.reshape(-1, self.shape[1]).t()).t()
            return output if self.bias is None else output + self.bias
        batch, _, height, width = inputs.shape
        columns = F.unfold(inputs, self.kernel_size, dilation=self.dilation, padding=self.padding, stride=self.stride)
        out_h = (height + 2 * self.padding[0] - self.dilation[0] * (self.kernel_size[0] - 1) - 1) // self.stride[0] + 1
        out_w = (width + 2 * self.padding[1] - self.dilation[1] * (self.kernel_size[1] - 1) - 1) // self.stride[1] + 1
        stacked = columns.transpose(0, 1).reshape(columns.shape[1], -1)
        output = _SparseMatmul.apply(self.values, self, stacked)
        output = output.reshape(self.shape[0], batch, out_h * out_w).transpose(0, 1)
        if self.bias is not None:
            output = output + self.bias[None, :, None]
        return output.reshape(batch, self.shape[0], out_h, out_w)


def sparse_trainable(model: nn.Module) -> nn.Module:
    import copy

    result = copy.deepcopy(model).train()
    for name, module in [(n, m) for n, m in result.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]:
        parent, _, child = name.rpartition(".")
        setattr(result.get_submodule(parent) if parent else result, child, SparseTrainable(module))
    return result


def step_times(ticket, batch: torch.Tensor, labels: torch.Tensor, budget: float, lr: float) -> dict:
    """Median seconds of one masked dense training step and one sparse-kernel step (Adam, cross-entropy)."""
    import copy

    dense = copy.deepcopy(ticket.model).train()
    parameters = dict(dense.named_parameters())
    pairs = [(parameters[name], mask) for name, mask in ticket.masks.items()]
    optimizer = torch.optim.Adam(dense.parameters(), lr=lr)

    def dense_step():
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(dense(batch), labels).backward()
        masked_optimizer_step(optimizer, pairs, list(dense.parameters()))

    sparse = sparse_trainable(ticket.model)
    sparse_optimizer = torch.optim.Adam(sparse.parameters(), lr=lr)

    def sparse_step():
        sparse_optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(sparse(batch), labels).backward()
        sparse_optimizer.step()

    return {"train_step_dense_ms": 1e3 * timed(dense_step, budget)[0],
            "train_step_sparse_ms": 1e3 * timed(sparse_step, budget)[0]}


# --- inference -------------------------------------------------------------------------------------


def measure_run(run_dir: Path, budget: float, out_dir: Path) -> list[dict]:
    config = read_json(run_dir / "config.json")["config"]
    levels = sorted(int(path.parent.parent.name.split("_")[1])
                    for path in run_dir.glob("trial_0/level_*/iterative_reset/result.json"))
    rows = []
    base = load_ticket(run_dir, 0)
    examples = base.examples
    big = examples.repeat((256 + len(examples) - 1) // len(examples), *([1] * (examples.ndim - 1)))[:256]
    labels = torch.randint(0, base.num_classes, (config["train"]["batch_size"],), generator=torch.Generator().manual_seed(0))
    train_batch = big[: len(labels)]
    for level in [0, *levels]:
        ticket = base if level == 0 else load_ticket(run_dir, level)
        cost = model_cost(ticket.model, examples[:1])
        result = read_json((run_dir / "trial_0" / f"level_{level:02d}" / ("dense" if level == 0 else "iterative_reset")
                            / "result.json"))
        forms = {"dense": ticket.model, "sparse": sparse_model(ticket.model), "compact": compact_model(ticket.model)}
        sizes = {}
        with tempfile.TemporaryDirectory() as scratch:
            for form in forms:
                sizes[form] = export_ticket(ticket, form, Path(scratch) / form).bytes
        steps = step_times(ticket, train_batch, labels, budget, config["train"]["lr"])
        for form, network in forms.items():
            network.eval()
            with torch.no_grad():
                latency, latency_median = timed(lambda: network(examples[:1]), budget)
                batch_time, _ = timed(lambda: network(big), budget, minimum=3)
            row = {"model": config["model"]["name"], "unit": config["prune"].get("unit", "weight"),
                   "run": run_dir.name, "level": level,
                   "weights_remaining_percent": round(result["weights_remaining_percent"], 2),
                   "flops_remaining_percent": round(cost.remaining_flops_percent, 2),
                   "early_stop_test_accuracy": result.get("early_stop_test_accuracy"),
                   "form": form, "latency_b1_ms": round(1e3 * latency, 4),
                   "latency_b1_median_ms": round(1e3 * latency_median, 4),
                   "throughput_b256": round(256 / batch_time, 1), "bytes": sizes[form]}
            if form in ("dense", "sparse"):
                row["train_step_ms"] = round(steps[f"train_step_{form}_ms"], 3)
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def crossover(rows: list[dict], metric: str, better) -> float | None:
    """Highest weights-remaining percent at and below which sparse beats dense at every level (None: never)."""
    by_level = {}
    for row in rows:
        if row.get(metric) is not None:
            by_level.setdefault(row["weights_remaining_percent"], {})[row["form"]] = row[metric]
    wins = sorted((percent, better(forms["sparse"], forms["dense"])) for percent, forms in by_level.items()
                  if "sparse" in forms and "dense" in forms)
    threshold = None
    for percent, win in wins:  # ascending weights remaining
        if not win:
            break
        threshold = percent
    return threshold


def write_outputs(rows: list[dict], out_dir: Path, command: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with open(out_dir / "speed.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    lines = [f"Reproduce: `{command}`", ""]
    for run in dict.fromkeys(row["run"] for row in rows):
        run_rows = [row for row in rows if row["run"] == run]
        first = run_rows[0]
        lines += [f"### {first['model']} (prune.unit {first['unit']}; {run})", "",
                  "| level | weights | FLOPs | dense b1 ms | sparse b1 ms | compact b1 ms | dense b256/s | sparse b256/s "
                  "| compact b256/s | train dense ms | train sparse ms | dense / sparse / compact bytes |",
                  "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
        for level in dict.fromkeys(row["level"] for row in run_rows):
            forms = {row["form"]: row for row in run_rows if row["level"] == level}
            d, s, c = forms["dense"], forms["sparse"], forms["compact"]
            lines.append(f"| {level} | {d['weights_remaining_percent']:.1f}% | {d['flops_remaining_percent']:.1f}% | "
                         f"{d['latency_b1_ms']:.3f} | {s['latency_b1_ms']:.3f} | {c['latency_b1_ms']:.3f} | "
                         f"{d['throughput_b256']:,.0f} | {s['throughput_b256']:,.0f} | {c['throughput_b256']:,.0f} | "
                         f"{d['train_step_ms']:.2f} | {s['train_step_ms']:.2f} | "
                         f"{d['bytes']:,} / {s['bytes']:,} / {c['bytes']:,} |")
        b1 = crossover(run_rows, "latency_b1_ms", lambda s, d: s < d)
        b256 = crossover(run_rows, "throughput_b256", lambda s, d: s > d)
        train = crossover(run_rows, "train_step_ms", lambda s, d: s < d)
        lines += ["", f"Crossover (sparse beats dense at this weights-remaining level and every sparser one): "
                  f"batch 1 {_percent(b1)}, batch 256 {_percent(b256)}, training step {_percent(train)}.", ""]
    (out_dir / "speed.md").write_text("\n".join(lines) + "\n")
    _figure(rows, out_dir / "speed.png")


def _percent(value) -> str:
    return "never (dense wins at the sparsest level measured)" if value is None else f"at {value:.1f}% remaining"


def _figure(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    models = list(dict.fromkeys(row["model"] for row in rows))
    figure, axes = plt.subplots(3, len(models), figsize=(max(6.0, 4.4 * len(models)), 10), squeeze=False)
    styles = {"dense": ("tab:blue", "o"), "sparse": ("tab:red", "s"), "compact": ("tab:green", "^")}
    for column, model in enumerate(models):
        for run in dict.fromkeys(row["run"] for row in rows if row["model"] == model):
            run_rows = [row for row in rows if row["run"] == run]
            unit = run_rows[0]["unit"]
            for form, (color, marker) in styles.items():
                if unit == "channel" and form != "compact" or unit != "channel" and form == "compact":
                    continue  # dense/sparse from the unstructured run, compact from the channel run
                points = sorted((row["weights_remaining_percent"], row) for row in run_rows if row["form"] == form)
                x = [p for p, _ in points]
                label = f"{form} ({'channel' if unit == 'channel' else 'unstructured'} IMP)"
                axes[0][column].plot(x, [r["latency_b1_ms"] for _, r in points], marker=marker, color=color, label=label)
                axes[1][column].plot(x, [r["throughput_b256"] for _, r in points], marker=marker, color=color,
                                     label=label)
                if form in ("dense", "sparse"):
                    axes[2][column].plot(x, [r["train_step_ms"] for _, r in points], marker=marker, color=color,
                                         label=f"{form} training step")
        axes[0][column].set_title(model)
        for row_index, label in enumerate(("batch-1 latency (ms)", "batch-256 throughput (examples/s)",
                                           "training step (ms)")):
            axis = axes[row_index][column]
            axis.set_xscale("log")
            axis.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}"))
            axis.xaxis.set_minor_formatter(matplotlib.ticker.FuncFormatter(
                lambda value, _: f"{value:g}" if f"{value:g}"[0] in "25" else ""))
            axis.set_yscale("log")
            axis.set_xlim(105, min(row["weights_remaining_percent"] for row in rows if row["model"] == model) * 0.8)
            axis.set_ylabel(label)
            axis.set_xlabel("weights remaining (%)")
            axis.grid(alpha=0.3)
            axis.legend(fontsize=7)
    figure.suptitle(f"tickets on CPU, {torch.get_num_threads()} thread: fastest of repeated calls")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def _typed(row: dict) -> dict:
    """A speed.csv row with its numbers back as numbers (empty cells dropped)."""
    typed = {}
    for key, value in row.items():
        if value in ("", None):
            continue
        try:
            typed[key] = int(value) if key in ("level", "bytes") else float(value)
        except ValueError:
            typed[key] = value
    return typed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", type=Path)
    parser.add_argument("--merge", nargs="+", type=Path, default=[],
                        help="speed.csv files of earlier invocations: redraw their rows together (no measuring)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--budget", type=float, default=0.3, help="seconds of repeated calls per timing")
    parser.add_argument("--out", type=Path, default=Path("benchmark_export_speed"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    command = "python benchmarks/export_speed.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    print(command, flush=True)
    rows = [_typed(row) for path in args.merge for row in csv.DictReader(open(path))]
    if rows:
        write_outputs(rows, args.out, command)
    for run_dir in args.runs:
        rows += measure_run(run_dir, args.budget, args.out)
        write_outputs(rows, args.out, command)
    print((args.out / "speed.md").read_text())
    print(f"figure: {args.out / 'speed.png'}\nreproduce: {command}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
