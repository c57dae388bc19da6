"""One-shot pruning under each scope, against a numpy recomputation from the trained dense weights:
layerwise keeps the iterative ticket's per-layer counts; global keeps the same total, ranked across layers."""

import numpy as np
import pytest

from ticketlab.config import ExperimentConfig, ModelConfig, PruneConfig, TrainConfig
from ticketlab.api import find_tickets
from ticketlab.store import load_tensors


@pytest.mark.parametrize("scope", ["layerwise", "global"])
def test_oneshot_prunes_the_dense_network_to_the_levels_sparsity(tmp_path, tiny_data, scope):
    config = ExperimentConfig(
        model=ModelConfig(name="mlp", hidden=(24, 12)),
        train=TrainConfig(optimizer="adam", lr=5e-3, batch_size=50, steps="30it", eval_every="10it"),
        prune=PruneConfig(scope=scope, rate=0.4, output_rate=0.2 if scope == "layerwise" else None, levels=2),
        variants=("iterative_reset", "oneshot_reset"), trials=1,
    )
    run_dir = find_tickets(config, root=tmp_path, data=tiny_data, progress=False, report=False).run_dir
    dense = load_tensors(run_dir / "trial_0" / "level_00" / "dense" / "weights_final.safetensors")
    names = ["layers.1.weight", "layers.3.weight", "layers.5.weight"]
    for level in (1, 2):
        ticket = load_tensors(run_dir / "trial_0" / f"level_{level:02d}" / "iterative_reset" / "mask.safetensors")
        oneshot = load_tensors(run_dir / "trial_0" / f"level_{level:02d}" / "oneshot_reset" / "mask.safetensors")
        assert sorted(oneshot) == names
        magnitudes = {name: np.abs(dense[name].numpy()).ravel() for name in names}
        if scope == "layerwise":
            for name in names:  # the ticket's count in each layer, the largest dense magnitudes of that layer
                count = int(ticket[name].sum())
                expected = np.zeros(magnitudes[name].size, dtype=bool)
                expected[np.argsort(-magnitudes[name], kind="stable")[:count]] = True
                assert int(oneshot[name].sum()) == count
                assert np.array_equal(oneshot[name].numpy().ravel(), expected)
        else:  # the ticket's total, the largest dense magnitudes over all layers together
            total = sum(int(ticket[name].sum()) for name in names)
            joined = np.concatenate([magnitudes[name] for name in names])
            threshold = np.sort(joined)[::-1][total - 1]
            kept = np.concatenate([oneshot[name].numpy().ravel() for name in names])
            assert kept.sum() == total
            assert joined[kept].min() >= threshold and (joined[~kept] <= threshold).all()
