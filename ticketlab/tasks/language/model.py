"""The standard LSTM language model (Zaremba et al. 2014; PyTorch's examples/word_language_model), seeded init.

Embedding -> dropout -> LSTM layers with dropout between them -> dropout -> linear decoder (optionally tied to
the embedding). The layers are a stack of one-layer `nn.LSTM` modules rather than one multi-layer `nn.LSTM`
because the latter's inter-layer dropout draws from the global RNG (CPU) or a cached cuDNN dropout state
(CUDA), so a resumed run could not repeat it; here every dropout is a `SeededDropout` whose mask the trainer
seeds from (data_seed, step). The weight names stay the standard ones: `lstm.<layer>.weight_ih_l0`.
"""

from __future__ import annotations

import math
import re

import torch
from torch import nn

from ticketlab.errors import ConfigError
from ticketlab.models import SeededDropout

Hidden = list[tuple[torch.Tensor, torch.Tensor]]  # per layer (h, c), each [1, batch, width]

# Zaremba et al. (2014): parameters uniform in [-0.1, 0.1] (small model) or [-0.05, 0.05] (medium, 650 units).
DEFAULT_UNIFORM_RANGE = 0.1
_UNIFORM = re.compile(r"^uniform_(\d+(?:\.\d*)?|\.\d+)$")


class LSTMLanguageModel(nn.Module):
    """Next-token logits for token ids laid out [time, batch]."""

    def __init__(self, vocab_size: int, hidden: tuple[int, ...], embedding_dim: int | None = None,
                 dropout: float = 0.0, tie_weights: bool = False):
        super().__init__()
        if not hidden or any(width < 1 for width in hidden):
            raise ConfigError(f"model.hidden {list(hidden)} must hold one positive width per LSTM layer")
        embedding_dim = embedding_dim or hidden[0]
        if tie_weights and embedding_dim != hidden[-1]:
            raise ConfigError(f"model.tie_weights needs model.embedding_dim ({embedding_dim}) equal to the last "
                              f"LSTM width ({hidden[-1]})")
        self.encoder = nn.Embedding(vocab_size, embedding_dim)
        self.input_dropout = SeededDropout(dropout, 0)
        widths = (embedding_dim, *hidden)
        self.lstm = nn.ModuleList(nn.LSTM(widths[layer], widths[layer + 1]) for layer in range(len(hidden)))
        self.layer_dropouts = nn.ModuleList(SeededDropout(dropout, layer + 1) for layer in range(len(hidden)))
        self.decoder = nn.Linear(hidden[-1], vocab_size)
        if tie_weights:
            self.decoder.weight = self.encoder.weight
        self.tie_weights = tie_weights

    def output_weights(self) -> tuple[nn.Parameter, ...]:
        """The decoder's weight (`prune.output_rate` applies to it). With `tie_weights` it is the embedding's Parameter:
        the one matrix is both the input and the output layer, and gets the output rate."""
        return (self.decoder.weight,)

    def forward(self, tokens: torch.Tensor, hidden: Hidden | None = None) -> tuple[torch.Tensor, Hidden]:
        """Logits [time, batch, vocab] and the final state of each layer (carry it into the next segment)."""
        outputs = self.input_dropout(self.encoder(tokens))
        states = []
        for layer, (lstm, dropout) in enumerate(zip(self.lstm, self.layer_dropouts)):
            outputs, state = lstm(outputs, None if hidden is None else hidden[layer])
            outputs = dropout(outputs)  # between layers, and on the last layer's output
            states.append(state)
        return self.decoder(outputs), states


def build_language_model(config, vocab_size: int) -> LSTMLanguageModel:
    """The model of `config.model` (an ExperimentConfig's) for a vocabulary of `vocab_size`."""
    model = config.model
    if model.name != "lstm":
        raise ConfigError(f"unknown language model.name {model.name!r}; allowed: lstm")
    return LSTMLanguageModel(vocab_size, tuple(model.hidden), model.embedding_dim, model.dropout, model.tie_weights)


def uniform_range(scheme: str) -> float | None:
    """r of an init name 'uniform_<r>' (e.g. 'uniform_0.05'); None for other names."""
    match = _UNIFORM.match(scheme)
    return float(match.group(1)) if match else None


@torch.no_grad()
def initialize_language_model(model: nn.Module, scheme: str, seed: int) -> nn.Module:
    """Re-draw every parameter in place from `seed` with a private torch.Generator (no global RNG); returns it.

    - 'uniform_<r>': every parameter, biases included, uniform in [-r, r], as Zaremba et al.'s reference code.
    - 'torch_default': PyTorch's own distributions (embedding N(0, 1); LSTM U(+-1/sqrt(width)); decoder weight and
      bias U(+-1/sqrt(fan_in))), drawn from the seed.
    - 'glorot_normal' / 'glorot_uniform' / 'kaiming_normal': every weight matrix (each LSTM gate's block on its
      own, the embedding as a [vocab, dim] matrix); biases zero.
    A tied embedding/decoder matrix is drawn once (as the embedding).
    """
    generator = torch.Generator().manual_seed(seed)
    radius = uniform_range(scheme)
    if radius is None and scheme not in ("torch_default", "glorot_normal", "glorot_uniform", "kaiming_normal"):
        raise ConfigError(f"unknown model.init {scheme!r} for the lstm; allowed: uniform_<r> (e.g. uniform_0.1), "
                          f"torch_default, glorot_normal, glorot_uniform, kaiming_normal")
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        for name, parameter in module.named_parameters(recurse=False):
            if id(parameter) in seen:
                continue
            seen.add(id(parameter))
            drawn = _draw(module, name, parameter, scheme, radius, generator)
            parameter.copy_(drawn.to(parameter.device, parameter.dtype))
    return model


def _draw(module: nn.Module, name: str, parameter: torch.Tensor, scheme: str, radius: float | None,
          generator: torch.Generator) -> torch.Tensor:
    value = torch.empty(parameter.shape, dtype=torch.float32)
    if radius is not None:
        return value.uniform_(-radius, radius, generator=generator)
    if scheme == "torch_default":
        if isinstance(module, nn.Embedding):
            return value.normal_(0.0, 1.0, generator=generator)
        if isinstance(module, nn.LSTM):
            bound = 1.0 / math.sqrt(module.hidden_size)
        else:  # nn.Linear: kaiming_uniform(a=sqrt(5)) for the weight equals U(+-1/sqrt(fan_in)), as its bias
            bound = 1.0 / math.sqrt(module.weight.shape[1])
        return value.uniform_(-bound, bound, generator=generator)
    if value.dim() < 2:
        return value.zero_()
    blocks = value.chunk(4, dim=0) if isinstance(module, nn.LSTM) else (value,)
    for block in blocks:
        if scheme == "glorot_normal":
            nn.init.xavier_normal_(block, generator=generator)
        elif scheme == "glorot_uniform":
            nn.init.xavier_uniform_(block, generator=generator)
        else:
            nn.init.kaiming_normal_(block, nonlinearity="relu", generator=generator)
    return value
