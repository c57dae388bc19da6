"""Mask overlaps against set arithmetic, and the mask analysis of a run directory."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from ticketlab.analysis.masks import chance_jaccard, find_masks, jaccard, mask_analysis
from ticketlab.errors import TicketlabError
from ticketlab.store import load_tensors


def test_jaccard_matches_set_arithmetic():
    rng = np.random.default_rng(0)
    a = {"x": rng.random((5, 7)) > 0.5, "y": rng.random(11) > 0.3}
    b = {"x": rng.random((5, 7)) > 0.6, "y": rng.random(11) > 0.2}
    sets_a = {(name, i) for name in a for i in np.flatnonzero(a[name])}
    sets_b = {(name, i) for name in b for i in np.flatnonzero(b[name])}
    torch_a = {name: torch.tensor(value).float() for name, value in a.items()}
    torch_b = {name: torch.tensor(value).float() for name, value in b.items()}
    assert jaccard(torch_a, torch_b) == len(sets_a & sets_b) / len(sets_a | sets_b)
    x_a, x_b = set(np.flatnonzero(a["x"])), set(np.flatnonzero(b["x"]))
    assert jaccard(torch_a["x"], torch_b["x"]) == len(x_a & x_b) / len(x_a | x_b)
    assert jaccard(torch_a, torch_a) == 1.0
    assert jaccard(torch.zeros(3), torch.zeros(3)) == 1.0


def test_chance_jaccard_is_the_random_mask_expectation():
    ten = torch.zeros(10)
    a, b = ten.clone(), ten.clone()
    a[:5], b[5:9] = 1, 1  # keep 5 and 4 of 10: E|a and b| = 5 * 4 / 10 = 2, E|a or b| = 9 - 2
    assert chance_jaccard(a, b) == pytest.approx(2 / 7)
    # Monte Carlo: random masks with fixed counts overlap as predicted
    rng = np.random.default_rng(1)
    size, keep_a, keep_b = 2000, 600, 1000
    draws = []
    for _ in range(200):
        mask_a, mask_b = np.zeros(size, bool), np.zeros(size, bool)
        mask_a[rng.choice(size, keep_a, replace=False)] = True
        mask_b[rng.choice(size, keep_b, replace=False)] = True
        draws.append((mask_a & mask_b).sum() / (mask_a | mask_b).sum())
    predicted = chance_jaccard(torch.tensor(mask_a), torch.tensor(mask_b))
    assert predicted == pytest.approx(np.mean(draws), abs=0.002)


def test_run_directory_masks(tiny_run):
    result = mask_analysis(tiny_run.run_dir)
    out = tiny_run.run_dir / "analysis" / "masks"
    assert {path.name for path in result.files.values()} == {
        "mask_overlap.csv", "layer_remaining.csv", "mask_overlap.png", "layer_remaining.png"}
    with open(out / "mask_overlap.csv") as handle:
        rows = list(csv.DictReader(handle))
    pooled = [row for row in rows if row["layer"] == "all"]
    masks = {key: load_tensors(path) for key, path in find_masks(tiny_run.run_dir).items()}

    # level 1: iterative and one-shot both prune the dense run's final weights once, so they agree exactly
    same = [r for r in pooled if r["kind"] == "iterative_vs_oneshot" and r["level_a"] == "1"]
    assert len(same) == 2 and all(float(r["jaccard"]) == 1.0 for r in same)
    # consecutive IMP levels are nested: the overlap is the later level's share of the earlier one
    for row in (r for r in pooled if r["kind"] == "between_levels" and r["variant_a"] == "iterative_reset"):
        earlier = masks[(int(row["trial_a"]), int(row["level_a"]), "iterative_reset")]
        later = masks[(int(row["trial_b"]), int(row["level_b"]), "iterative_reset")]
        kept = lambda mask: sum(int(t.sum()) for t in mask.values())  # noqa: E731
        assert float(row["jaccard"]) == pytest.approx(kept(later) / kept(earlier), abs=1e-12)
    trials = [r for r in pooled if r["kind"] == "between_trials"]
    assert {(r["variant_a"], r["level_a"]) for r in trials} == {
        (v, level) for v in ("iterative_reset", "oneshot_reset") for level in ("1", "2")}
    for row in trials:
        a = masks[(int(row["trial_a"]), int(row["level_a"]), row["variant_a"])]
        b = masks[(int(row["trial_b"]), int(row["level_b"]), row["variant_b"])]
        both = sum(int((a[n] & b[n]).sum()) for n in a)
        either = sum(int((a[n] | b[n]).sum()) for n in a)
        assert float(row["jaccard"]) == pytest.approx(both / either, abs=1e-12)

    with open(out / "layer_remaining.csv") as handle:
        layers = list(csv.DictReader(handle))
    for row in layers:
        mask = masks[(int(row["trial"]), int(row["level"]), row["variant"])][row["layer"]]
        assert int(row["remaining"]) == int(mask.sum()) and int(row["total"]) == mask.numel()
    assert {row["variant"] for row in layers} == {"dense", "iterative_reset", "oneshot_reset"}


def test_empty_directory_is_a_user_error(tmp_path):
    with pytest.raises(TicketlabError, match="no masks"):
        mask_analysis(tmp_path)
