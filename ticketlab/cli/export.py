"""`ticketlab export`: one job's ticket as a usable model file, a thin command over ticketlab.export. Torch-free
until it runs."""

from __future__ import annotations

import argparse

from ticketlab.cli.vocabulary import add_level_selection, add_trial_selection
from ticketlab.lottery.variants import winning_ticket

NAME = "export"
FORMAT_NAMES = ("prune", "dense", "compact", "sparse", "onnx-dense", "onnx-compact")  # = api.FORMATS (torch-free)
TICKET_FORMAT = "ticket"  # a directory to reuse without ticketlab (ticketlab.export.reusable), any task


def add_command(subparsers) -> argparse.ArgumentParser:
    export = subparsers.add_parser(
        NAME, help="export a ticket as a usable model (prune convention, dense, compact, sparse, ONNX)",
        description="Write the trained ticket of one job of a run as a model file, after checking that the file, "
        "read back, reproduces the masked model's outputs on test examples. prune: torch.nn.utils.prune's "
        "weight_orig + weight_mask; dense: masked weights as a plain state dict; compact: a physically smaller "
        "network (structured tickets, prune.unit channel); sparse: torch.sparse CSR/BSR weights; onnx-dense / "
        "onnx-compact: ONNX graphs, checked with onnxruntime (pip install 'ticketlab[export]'); ticket: a directory "
        "(--output) of mask.safetensors, init.safetensors and final.safetensors keyed by the model's own parameter "
        "names and ticket.json (model, sparsity, provenance), to reuse without ticketlab (any task).",
    )
    export.add_argument("run_dir", help="a run directory (holding config.json)")
    add_level_selection(export, dest="level", type=int, required=True, old=(), metavar="LEVEL",
                        help="required: the pruning level (0: the dense network)")
    add_trial_selection(export, dest="trial", type=int, default=0, old=(), metavar="TRIAL",
                        help="the trial (default: 0)")
    export.add_argument("--variant", default=winning_ticket(), help=f"variant (default: {winning_ticket()})")
    export.add_argument("--format", required=True, choices=(*FORMAT_NAMES, TICKET_FORMAT),
                        help="export format")
    export.add_argument("--output", required=True, help="the file to write (ticket: a new or empty directory)")
    export.add_argument("--sparse-layout", default="csr", choices=("csr", "bsr"),
                        help="sparse format's layout (default: csr; bsr needs --blocksize dividing each matrix)")
    export.add_argument("--blocksize", type=int, default=4, help="bsr block size (default: 4)")
    return export


def run(args: argparse.Namespace) -> int:
    from ticketlab.errors import ConfigError
    from ticketlab.lottery.integrity import refuse_run_artifact

    if args.blocksize < 1:
        raise ConfigError(f"--blocksize {args.blocksize} must be at least 1")
    refuse_run_artifact(args.output, args.run_dir)  # before any work
    if args.format == TICKET_FORMAT:
        from ticketlab.export.reusable import export_reusable_ticket

        written = export_reusable_ticket(args.run_dir, args.level, args.trial, args.variant, output=args.output)
        sparsity = written.description["sparsity"]
        print(f"ticket: {written.directory} (mask, init and final weights as safetensors, ticket.json); "
              f"{written.description['job']}; {sparsity['remaining']:,} of {sparsity['total']:,} prunable weights "
              f"kept ({sparsity['remaining_percent']:.1f}%); starts at step {written.description['rewind_step']}")
        return 0
    from ticketlab.export import export_ticket, load_ticket

    ticket = load_ticket(args.run_dir, args.level, args.trial, args.variant)
    result = export_ticket(ticket, args.format, args.output, sparse_layout=args.sparse_layout,
                           blocksize=args.blocksize)
    print(export_summary(result, ticket.job))
    return 0


def export_summary(result, job: str) -> str:
    """One line: the file, its size, the check, and the export's nonzero parameters and FLOPs per example counted
    against the network it was exported from (a compact export's against the original, not its own size)."""
    cost, original = result.cost, result.original_cost or result.cost
    percent = 100.0 * cost["effective_flops"] / original["dense_flops"] if original["dense_flops"] else 100.0
    return (f"{result.format}: {result.path} ({result.bytes:,} bytes); {job}; outputs match the masked model "
            f"within {result.max_abs_diff:.2g}; {cost['nonzero_parameters']:,} of {original['parameters']:,} "
            f"parameters nonzero; {cost['effective_flops']:,} of {original['dense_flops']:,} FLOPs per example "
            f"({percent:.1f}%)")
