"""How much masks agree: Jaccard overlap between trials, between levels and between iterative and one-shot
pruning, against the overlap two random masks with the same per-layer counts would have; and per-layer
remaining-weight fractions. Reads the ``mask.safetensors`` files of a run directory; trains nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Mapping

import torch

from ticketlab.errors import TicketlabError
from ticketlab.lottery.variants import variants_where, winning_ticket
from ticketlab.store import load_tensors, write_csv

MASKS_DIR = Path("analysis") / "masks"
ALL_LAYERS = "all"
OVERLAP_COLUMNS = (
    "kind", "variant_a", "variant_b", "trial_a", "trial_b", "level_a", "level_b",
    "weights_remaining_percent_a", "weights_remaining_percent_b", "layer", "jaccard", "chance_jaccard",
)
LAYER_COLUMNS = ("variant", "trial", "level", "weights_remaining_percent", "layer", "remaining", "total",
                 "remaining_fraction")

Masks = Mapping[str, torch.Tensor]


def jaccard(mask_a: Masks | torch.Tensor, mask_b: Masks | torch.Tensor) -> float:
    """|a and b| / |a or b| of two masks (tensors, or dicts pooled over all their layers); 1.0 if both are empty."""
    tensors_a, tensors_b = _as_list(mask_a), _as_list(mask_b)
    both = either = 0
    for a, b in zip(tensors_a, tensors_b, strict=True):
        a, b = a.bool(), b.bool()
        both += int((a & b).sum())
        either += int((a | b).sum())
    return 1.0 if either == 0 else both / either


def chance_jaccard(mask_a: Masks | torch.Tensor, mask_b: Masks | torch.Tensor) -> float:
    """The overlap expected of two independent random masks with the same kept counts per layer.

    Per layer of n weights keeping a and b, E|a and b| = a b / n; the value is E|and| / (sum(a + b) - E|and|).
    """
    expected_both = kept = 0.0
    for a, b in zip(_as_list(mask_a), _as_list(mask_b), strict=True):
        count_a, count_b, size = float(a.bool().sum()), float(b.bool().sum()), a.numel()
        expected_both += count_a * count_b / size
        kept += count_a + count_b
    union = kept - expected_both
    return 1.0 if union == 0 else expected_both / union


def find_masks(run_dir: str | Path) -> dict[tuple[int, int, str], Path]:
    """(trial, level, variant) -> mask file, for every job of a run directory that has computed its mask."""
    found = {}
    for path in Path(run_dir).glob("trial_*/level_*/*/mask.safetensors"):
        trial, level = re.fullmatch(r"trial_(\d+)", path.parts[-4]), re.fullmatch(r"level_(\d+)", path.parts[-3])
        if trial and level:
            found[(int(trial.group(1)), int(level.group(1)), path.parts[-2])] = path
    return dict(sorted(found.items()))


def mask_overlaps(masks: Mapping[tuple[int, int, str], Masks]) -> list[dict]:
    """Overlap rows (see OVERLAP_COLUMNS), each for every layer and for all layers pooled (layer 'all').

    kinds: 'between_trials' (same variant and level, each pair of trials), 'between_levels' (same variant and
    trial, consecutive pruned levels), 'iterative_vs_oneshot' (iterative_reset vs oneshot_reset masks of a
    trial and level). The reinit variants share these masks and are skipped; level 0 is the dense mask.
    """
    rows = []
    owners = mask_owners()
    pruned = {key: value for key, value in masks.items() if key[1] > 0 and key[2] in owners}
    by_variant_level: dict[tuple[str, int], list[int]] = {}
    for trial, level, variant in pruned:
        by_variant_level.setdefault((variant, level), []).append(trial)
    for (variant, level), trials in sorted(by_variant_level.items()):
        for trial_a, trial_b in combinations(sorted(trials), 2):
            rows += _pair_rows("between_trials", masks, (trial_a, level, variant), (trial_b, level, variant))
    for trial, level, variant in sorted(pruned):
        if (trial, level + 1, variant) in pruned:
            rows += _pair_rows("between_levels", masks, (trial, level, variant), (trial, level + 1, variant))
    ticket, one_shot = winning_ticket(), variants_where(family="imp", same_mask=False, one_shot=True)
    for trial, level, variant in sorted(pruned):
        for partner in one_shot if variant == ticket else ():  # the ticket against the one-shot mask
            if (trial, level, partner) in pruned:
                rows += _pair_rows("iterative_vs_oneshot", masks, (trial, level, variant), (trial, level, partner))
    return rows


def layer_remaining(masks: Mapping[tuple[int, int, str], Masks]) -> list[dict]:
    """Per job and layer: weights remaining, layer size and their ratio (a fraction in [0, 1])."""
    rows = []
    for (trial, level, variant), mask in sorted(masks.items()):
        percent = _percent(mask)
        for name, tensor in mask.items():
            remaining = int(tensor.bool().sum())
            rows.append({"variant": variant, "trial": trial, "level": level, "weights_remaining_percent": percent,
                         "layer": name, "remaining": remaining, "total": tensor.numel(),
                         "remaining_fraction": remaining / tensor.numel()})
    return rows


@dataclass(frozen=True)
class MaskAnalysisResult:
    run_dir: Path
    overlap_rows: list[dict]
    layer_rows: list[dict]
    files: dict[str, Path]


def mask_analysis(run_dir: str | Path, *, figures: bool = True) -> MaskAnalysisResult:
    """Write ``analysis/masks/mask_overlap.csv`` and ``layer_remaining.csv`` (and their figures) for a run."""
    run_dir = Path(run_dir)
    if (run_dir / "config.json").exists():  # a run of `ticketlab find`: its config and finished jobs checked first
        from ticketlab.lottery.integrity import read_finished_jobs, read_run_config

        read_finished_jobs(run_dir)
        read_run_config(run_dir)
    paths = find_masks(run_dir)
    if not paths:
        raise TicketlabError(f"no masks in {str(run_dir)!r}; is it a run directory of `ticketlab find`?")
    masks = {key: {name: value.bool() for name, value in load_tensors(path).items()} for key, path in paths.items()}
    overlap_rows, layer_rows = mask_overlaps(masks), layer_remaining(masks)
    out_dir = run_dir / MASKS_DIR
    files = {
        "mask_overlap_csv": write_csv(out_dir / "mask_overlap.csv", OVERLAP_COLUMNS, overlap_rows),
        "layer_remaining_csv": write_csv(out_dir / "layer_remaining.csv", LAYER_COLUMNS, layer_rows),
    }
    if figures:
        from ticketlab.analysis.figures import draw_layer_remaining, draw_mask_overlap

        files["mask_overlap_png"] = draw_mask_overlap(overlap_rows, out_dir / "mask_overlap.png", title=run_dir.name)
        files["layer_remaining_png"] = draw_layer_remaining(layer_rows, out_dir / "layer_remaining.png",
                                                            title=run_dir.name)
    return MaskAnalysisResult(run_dir, overlap_rows, layer_rows, files)


# --- internals -----------------------------------------------------------------------------------

def mask_owners() -> tuple[str, ...]:
    """The IMP family's variants with masks of their own (the reinit controls train their ticket's mask)."""
    return variants_where(family="imp", same_mask=False)


def _as_list(mask: Masks | torch.Tensor) -> list[torch.Tensor]:
    return [mask] if isinstance(mask, torch.Tensor) else list(mask.values())


def _percent(mask: Masks) -> float:
    return 100.0 * sum(int(t.bool().sum()) for t in mask.values()) / sum(t.numel() for t in mask.values())


def _pair_rows(kind: str, masks, key_a: tuple[int, int, str], key_b: tuple[int, int, str]) -> list[dict]:
    mask_a, mask_b = masks[key_a], masks[key_b]
    if list(mask_a) != list(mask_b):
        raise TicketlabError(f"masks of {key_a} and {key_b} cover different layers")
    base = {
        "kind": kind, "variant_a": key_a[2], "variant_b": key_b[2], "trial_a": key_a[0], "trial_b": key_b[0],
        "level_a": key_a[1], "level_b": key_b[1],
        "weights_remaining_percent_a": _percent(mask_a), "weights_remaining_percent_b": _percent(mask_b),
    }
    rows = [base | {"layer": ALL_LAYERS, "jaccard": jaccard(mask_a, mask_b),
                    "chance_jaccard": chance_jaccard(mask_a, mask_b)}]
    for name in mask_a:
        rows.append(base | {"layer": name, "jaccard": jaccard(mask_a[name], mask_b[name]),
                            "chance_jaccard": chance_jaccard(mask_a[name], mask_b[name])})
    return rows

