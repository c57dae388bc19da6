"""Actor-critic networks of the PPO agent, with seeded orthogonal init (CleanRL's `layer_init`).

- `mlp` (classic control): a policy network and a value network, each Linear-tanh layers of `model.hidden`
  (default 64, 64) then a head; or, with `rl.shared_trunk`, one trunk under both heads.
- `nature_cnn` (Atari): Mnih et al. (2015)'s CNN (32 8x8/4, 64 4x4/2, 64 3x3/1, Linear 512, ReLU) shared by
  the policy and value heads; frames are scaled to [0, 1].

Init: orthogonal weights with gain sqrt(2) (hidden layers), 0.01 (policy head) and 1 (value head), biases 0.
Every Linear and Conv weight is pruned, the heads included.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ticketlab.config import ExperimentConfig
from ticketlab.errors import ConfigError


class MLPActorCritic(nn.Module):
    """(policy logits [batch, actions], value [batch]) of observations [batch, features]."""

    def __init__(self, observation_size: int, actions: int, hidden: tuple[int, ...] = (64, 64),
                 shared_trunk: bool = False):
        super().__init__()

        def trunk():
            layers, width = [], observation_size
            for size in hidden:
                layers += [nn.Linear(width, size), nn.Tanh()]
                width = size
            return nn.Sequential(*layers), width

        self.policy_trunk, width = trunk()
        self.value_trunk = self.policy_trunk if shared_trunk else trunk()[0]
        self.shared_trunk = shared_trunk
        self.policy_head, self.value_head = nn.Linear(width, actions), nn.Linear(width, 1)

    def output_weights(self) -> tuple[nn.Parameter, ...]:
        """Both heads' weights, policy then value: each is an output layer (`prune.output_rate` applies to both)."""
        return (self.policy_head.weight, self.value_head.weight)

    def forward(self, observations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.policy_trunk(observations)
        value_features = features if self.shared_trunk else self.value_trunk(observations)
        return self.policy_head(features), self.value_head(value_features).squeeze(-1)


class NatureCNNActorCritic(nn.Module):
    def __init__(self, frames: int, actions: int):
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Conv2d(frames, 32, 8, stride=4), nn.ReLU(), nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(), nn.Flatten(), nn.Linear(64 * 7 * 7, 512), nn.ReLU())
        self.policy_head, self.value_head = nn.Linear(512, actions), nn.Linear(512, 1)

    def output_weights(self) -> tuple[nn.Parameter, ...]:
        """Both heads' weights, policy then value: each is an output layer (`prune.output_rate` applies to both)."""
        return (self.policy_head.weight, self.value_head.weight)

    def forward(self, observations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.trunk(observations.float() / 255.0)
        return self.policy_head(features), self.value_head(features).squeeze(-1)


def build_agent(config: ExperimentConfig, data) -> nn.Module:
    """The actor-critic of `config.model` for the environment `data`; ConfigError (before any training) for a CNN
    on observations that are not stacked 84x84 frames."""
    if config.model.name == "nature_cnn":
        if len(data.observation_shape) != 3 or tuple(data.observation_shape[1:]) != (84, 84):
            raise ConfigError(f"model.name 'nature_cnn' needs image observations (stacked 84x84 frames, an Atari "
                              f"environment); {data.name} gives observations of shape "
                              f"{list(data.observation_shape)}: use model.name mlp")
        return NatureCNNActorCritic(data.observation_shape[0], data.actions)
    return MLPActorCritic(math.prod(data.observation_shape), data.actions, tuple(config.model.hidden),
                          shared_trunk=config.rl.shared_trunk)


def initialize_agent(model: nn.Module, seed: int) -> nn.Module:
    """Orthogonal init from `seed` (no global RNG): gain sqrt(2) for hidden layers, 0.01 for the policy head,
    1 for the value head; biases 0."""
    generator = torch.Generator().manual_seed(seed)
    heads = {id(getattr(model, "policy_head")): 0.01, id(getattr(model, "value_head")): 1.0}
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                nn.init.orthogonal_(module.weight, gain=heads.get(id(module), math.sqrt(2)), generator=generator)
                module.bias.zero_()
    return model
