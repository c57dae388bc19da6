"""Channel-pruning IMP against unstructured IMP: test accuracy against the FLOPs that remain per inference.

    python benchmarks/channel_imp_flops.py --pair NAME CHANNEL_RUN WEIGHT_RUN [--pair ...] --out DIR

For each pair of finished runs of the same network and protocol (one with prune.unit channel, one unstructured),
computes every job's cost (`ticketlab.export.run_cost`: nonzero parameters, dense-equivalent and effective FLOPs,
written into each run directory), exports every level of the channel run as a compact network (the export checks
that it reproduces the masked model's outputs on test images; the largest difference is reported) and draws
early-stop test accuracy against FLOPs remaining and against weights remaining. Writes DIR/channel_imp.md, .csv
and .png.
"""

from __future__ import annotations

import argparse
import csv
import shlex
import sys
import tempfile
from pathlib import Path

from ticketlab.export import export_ticket, load_ticket
from ticketlab.export.run_cost import run_cost


def rows_of(run_dir: Path, pair: str, unit: str) -> list[dict]:
    run_cost(run_dir)
    costs = {(row["variant"], row["trial"], row["level"]): row for row in csv.DictReader(open(run_dir / "cost.csv"))}
    rows = []
    for result in csv.DictReader(open(run_dir / "results.csv")):
        if result["variant"] != "iterative_reset":
            continue
        variant = "dense" if result["level"] == "0" else result["variant"]
        cost = costs[(variant, result["trial"], result["level"])]
        row = {"pair": pair, "unit": unit, "level": int(result["level"]), "trial": int(result["trial"]),
               "weights_remaining_percent": float(result["weights_remaining_percent"]),
               "flops_remaining_percent": float(cost["remaining_flops_percent"]),
               "nonzero_parameters": int(cost["nonzero_parameters"]), "effective_flops": int(cost["effective_flops"]),
               "early_stop_test_accuracy": float(result["early_stop_test_accuracy"])}
        if unit == "channel":
            ticket = load_ticket(run_dir, row["level"], row["trial"])
            with tempfile.TemporaryDirectory() as scratch:
                compact = export_ticket(ticket, "compact", Path(scratch) / "compact.safetensors")
            row |= {"compact_parameters": compact.cost["parameters"], "compact_bytes": compact.bytes,
                    "compact_max_abs_diff": compact.max_abs_diff, "compact_dense_flops": compact.cost["dense_flops"]}
        rows.append(row)
    return sorted(rows, key=lambda row: row["level"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pair", nargs=3, action="append", metavar=("NAME", "CHANNEL_RUN", "WEIGHT_RUN"),
                        required=True)
    parser.add_argument("--out", type=Path, default=Path("benchmark_channel_imp"))
    args = parser.parse_args(argv)
    command = "python benchmarks/channel_imp_flops.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    rows = []
    for name, channel_run, weight_run in args.pair:
        rows += rows_of(Path(channel_run), name, "channel") + rows_of(Path(weight_run), name, "weight")
    args.out.mkdir(parents=True, exist_ok=True)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with open(args.out / "channel_imp.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    lines = [f"Reproduce: `{command}`", ""]
    for name, *_ in args.pair:
        lines += [f"### {name}", "", "| IMP | level | weights | FLOPs | nonzero params | test acc. (early stop) | "
                  "compact params | compact bytes | compact max abs diff |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for row in (row for row in rows if row["pair"] == name):
            compact = (f"{row['compact_parameters']:,} | {row['compact_bytes']:,} | {row['compact_max_abs_diff']:.1e}"
                       if "compact_parameters" in row else "- | - | -")
            lines.append(f"| {row['unit']} | {row['level']} | {row['weights_remaining_percent']:.1f}% | "
                         f"{row['flops_remaining_percent']:.1f}% | {row['nonzero_parameters']:,} | "
                         f"{row['early_stop_test_accuracy']:.4f} | {compact} |")
        lines.append("")
    (args.out / "channel_imp.md").write_text("\n".join(lines) + "\n")
    _figure(rows, [name for name, *_ in args.pair], args.out / "channel_imp.png")
    print((args.out / "channel_imp.md").read_text())
    print(f"figure: {args.out / 'channel_imp.png'}\nreproduce: {command}")
    return 0


def _figure(rows: list[dict], names: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    figure, axes = plt.subplots(2, len(names), figsize=(max(6.0, 4.6 * len(names)), 7.5), squeeze=False)
    styles = {"channel": ("tab:green", "^", "channel IMP (L1 of filters)"), "weight": ("tab:blue", "o", "unstructured IMP")}
    for column, name in enumerate(names):
        for unit, (color, marker, label) in styles.items():
            points = [row for row in rows if row["pair"] == name and row["unit"] == unit]
            for row_index, key in enumerate(("flops_remaining_percent", "weights_remaining_percent")):
                axes[row_index][column].plot([row[key] for row in points],
                                             [100 * row["early_stop_test_accuracy"] for row in points],
                                             marker=marker, color=color, label=label)
        for row_index, label in enumerate(("FLOPs remaining per inference (%)", "weights remaining (%)")):
            axis = axes[row_index][column]
            axis.set_xscale("log")
            axis.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}"))
            axis.xaxis.set_minor_formatter(matplotlib.ticker.FuncFormatter(
                lambda value, _: f"{value:g}" if f"{value:g}"[0] in "25" else ""))
            axis.invert_xaxis()
            axis.set_xlabel(label)
            axis.set_ylabel("test accuracy at early stop (%)")
            axis.grid(alpha=0.3)
            axis.legend(fontsize=8)
        axes[0][column].set_title(name)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
