"""Named starting configs, including the lottery-ticket paper's LeNet-300-100 protocol. Torch-free."""

from __future__ import annotations

from ticketlab.config import DataConfig, ExperimentConfig, ModelConfig, PruneConfig, TrainConfig
from ticketlab.errors import ConfigError


def _mnist1d_default() -> ExperimentConfig:
    """The embedded default: a 40-100-100-10 MLP on MNIST-1D, small enough for minutes on a laptop CPU."""
    return ExperimentConfig(
        model=ModelConfig(name="mlp", hidden=(100, 100), init="glorot_normal"),
        data=DataConfig(name="mnist1d", validation_size=500),
        train=TrainConfig(optimizer="adam", lr=2e-3, batch_size=100, steps="2500it", eval_every="50it"),
        prune=PruneConfig(scope="layerwise", rate=0.2, output_rate=0.1, levels=10),
        trials=2,
    )


def _lenet_paper(dataset: str, steps: str = "50000it") -> ExperimentConfig:
    """Frankle & Carbin (2019) LeNet-300-100 protocol: Adam 1.2e-3, batch 60, prune 20% (output 10%) a round."""
    return ExperimentConfig(
        model=ModelConfig(name="lenet300_100", init="glorot_normal"),
        data=DataConfig(name=dataset, validation_size=5000),
        train=TrainConfig(optimizer="adam", lr=1.2e-3, batch_size=60, steps=steps, eval_every="100it"),
        prune=PruneConfig(scope="layerwise", rate=0.2, output_rate=0.1, levels=15),
        trials=5,
    )


PRESETS = {
    "mnist1d": _mnist1d_default,
    "lenet_mnist": lambda: _lenet_paper("mnist"),
    "lenet_fashion_mnist": lambda: _lenet_paper("fashion_mnist"),
    "lenet_fashion_mnist_short": lambda: _lenet_paper("fashion_mnist", steps="4000it"),
}
PRESET_HELP = {
    "mnist1d": "MLP 100-100 on MNIST-1D, 10 rounds, 2 trials (the default; no download)",
    "lenet_mnist": "paper protocol: LeNet-300-100 on MNIST, 50K iterations, 15 rounds, 5 trials",
    "lenet_fashion_mnist": "paper protocol on Fashion-MNIST (Debian's dataset-fashion-mnist)",
    "lenet_fashion_mnist_short": "paper protocol on Fashion-MNIST with 4,000 iterations per level",
}


def preset(name: str) -> ExperimentConfig:
    """The named preset config; raises ConfigError listing the allowed names."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; allowed: {', '.join(PRESETS)}")
    return PRESETS[name]()
