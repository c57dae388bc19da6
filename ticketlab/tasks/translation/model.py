"""An encoder-decoder Transformer (Vaswani et al. 2017) for translation, pre-norm, with seeded init.

Pre-norm (LayerNorm before each sublayer, a final LayerNorm on each stack; Xiong et al. 2020): it trains stably
at the small sizes and short warmups a CPU affords, where post-norm needs careful warmup. Attention uses
separate query/key/value/output `nn.Linear` projections (each pruned and masked on its own, so no fused
in-projection can carry a pruned weight) and `F.scaled_dot_product_attention`. Sinusoidal positions (no
parameters), embeddings scaled by sqrt(width). `tie_weights` shares one matrix between the source embedding,
the target embedding and the output projection (fairseq's share_all_embeddings; the vocabulary is joint).
Dropout (residual and embedding, as fairseq's transformer: no attention dropout) is `SeededDropout`, so a
resumed run repeats its masks. Pruned by module type: every Linear and Embedding weight; LayerNorms and
biases never. Decoding is incremental (`start_decoding`): a key/value cache per layer, one position a step.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ticketlab.config import ExperimentConfig
from ticketlab.errors import ConfigError
from ticketlab.models import SeededDropout
from ticketlab.tasks.translation.tokenizer import PAD_ID

MAX_TARGET_POSITIONS = 1024  # longest target decoded (fairseq's max_target_positions default)


class Attention(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(width, width) for _ in range(4))

    def forward(self, queries, keys, key_padding: torch.Tensor | None = None, causal: bool = False):
        # queries are projected before keys and values, as before the decoding cache: autograd sums the three
        # gradients of a self-attention input in that order, so training keeps its numbers bit for bit
        projected_queries = self._split(self.q_proj(queries))
        return self._attend_projected(projected_queries, *self.keys_values(keys), key_padding, causal)

    def keys_values(self, keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Projected keys and values [batch, heads, length, width / heads]: what a decoding cache keeps."""
        return self._split(self.k_proj(keys)), self._split(self.v_proj(keys))

    def attend(self, queries, keys, values, key_padding: torch.Tensor | None = None, causal: bool = False):
        """Attention of `queries` [batch, length, width] over projected `keys` and `values` (`keys_values`)."""
        return self._attend_projected(self._split(self.q_proj(queries)), keys, values, key_padding, causal)

    def _attend_projected(self, queries, keys, values, key_padding: torch.Tensor | None, causal: bool):
        batch, _, length, _ = queries.shape
        mask = None if key_padding is None else ~key_padding[:, None, None, :]  # True = attend
        attended = F.scaled_dot_product_attention(queries, keys, values, attn_mask=mask, is_causal=causal)
        return self.out_proj(attended.transpose(1, 2).reshape(batch, length, -1))

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        return x.view(batch, length, self.heads, width // self.heads).transpose(1, 2)


class FeedForward(nn.Module):
    def __init__(self, width: int, ffn: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(width, ffn), nn.Linear(ffn, width)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x)))


class EncoderLayer(nn.Module):
    def __init__(self, width, heads, ffn, dropout, index):
        super().__init__()
        self.self_attn, self.ffn = Attention(width, heads), FeedForward(width, ffn)
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.drop1, self.drop2 = SeededDropout(dropout, 2 * index + 1), SeededDropout(dropout, 2 * index + 2)

    def forward(self, x, padding):
        h = self.norm1(x)
        x = x + self.drop1(self.self_attn(h, h, padding))
        return x + self.drop2(self.ffn(self.norm2(x)))


class DecoderLayer(nn.Module):
    def __init__(self, width, heads, ffn, dropout, index):
        super().__init__()
        self.self_attn, self.cross_attn, self.ffn = Attention(width, heads), Attention(width, heads), FeedForward(width, ffn)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(width), nn.LayerNorm(width), nn.LayerNorm(width)
        self.drops = nn.ModuleList(SeededDropout(dropout, 1000 + 3 * index + k) for k in range(3))

    def forward(self, y, memory, memory_padding):
        h = self.norm1(y)
        y = y + self.drops[0](self.self_attn(h, h, causal=True))  # pad targets sit after every real one
        y = y + self.drops[1](self.cross_attn(self.norm2(y), memory, memory_padding))
        return y + self.drops[2](self.ffn(self.norm3(y)))

    def step(self, y, cache: dict, memory_padding):
        """`forward` for the newest position y [batch, 1, width] alone: its self-attention keys/values join
        cache['self'] (those of the earlier positions), cross-attention uses cache['cross'] (the memory's)."""
        h = self.norm1(y)
        keys, values = self.self_attn.keys_values(h)
        if "self" in cache:
            keys, values = (torch.cat([old, new], dim=2) for old, new in zip(cache["self"], (keys, values)))
        cache["self"] = (keys, values)
        y = y + self.drops[0](self.self_attn.attend(h, keys, values))  # every cached position precedes this one
        y = y + self.drops[1](self.cross_attn.attend(self.norm2(y), *cache["cross"], key_padding=memory_padding))
        return y + self.drops[2](self.ffn(self.norm3(y)))


class TransformerTranslator(nn.Module):
    """Target-token logits [batch, target length, vocab] of source ids [batch, S] and shifted target ids."""

    def __init__(self, vocab_size: int, width: int = 256, layers: int = 3, heads: int = 4, ffn: int = 1024,
                 dropout: float = 0.1, tie_weights: bool = True):
        super().__init__()
        if width % heads:
            raise ConfigError(f"model.width {width} must be a multiple of model.heads {heads}")
        self.width, self.tie_weights = width, tie_weights
        self.max_target_positions = MAX_TARGET_POSITIONS
        self.source_embed = nn.Embedding(vocab_size, width, padding_idx=PAD_ID)
        self.target_embed = self.source_embed if tie_weights else nn.Embedding(vocab_size, width, padding_idx=PAD_ID)
        self.embed_dropout = SeededDropout(dropout, 0)
        self.encoder = nn.ModuleList(EncoderLayer(width, heads, ffn, dropout, i) for i in range(layers))
        self.decoder = nn.ModuleList(DecoderLayer(width, heads, ffn, dropout, i) for i in range(layers))
        self.encoder_norm, self.decoder_norm = nn.LayerNorm(width), nn.LayerNorm(width)
        self.output = None if tie_weights else nn.Linear(width, vocab_size, bias=False)

    def output_weights(self) -> tuple[nn.Parameter, ...]:
        """The output projection's weight (`prune.output_rate` applies to it). With `tie_weights` it is the one shared
        embedding matrix (source, target and output), which then gets the output rate."""
        return (self.target_embed.weight if self.output is None else self.output.weight,)

    def _embed(self, embedding: nn.Embedding, ids: torch.Tensor) -> torch.Tensor:
        return self.embed_dropout(embedding(ids) * math.sqrt(self.width) + positions(ids.shape[1], self.width, ids.device))

    def encode(self, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(memory [batch, S, width], source padding [batch, S], True at pads)."""
        padding = source == PAD_ID
        x = self._embed(self.source_embed, source)
        for layer in self.encoder:
            x = layer(x, padding)
        return self.encoder_norm(x), padding

    def decode(self, target_in: torch.Tensor, memory: torch.Tensor, padding: torch.Tensor,
               last_only: bool = False) -> torch.Tensor:
        """Logits of every target position, or (`last_only`, for decoding) of the last one: [batch, 1, vocab]."""
        y = self._embed(self.target_embed, target_in)
        for layer in self.decoder:
            y = layer(y, memory, padding)
        return self.logits(self.decoder_norm(y[:, -1:] if last_only else y))

    def logits(self, y: torch.Tensor) -> torch.Tensor:
        """Vocabulary logits of decoder states (after the final LayerNorm)."""
        weight = self.target_embed.weight if self.output is None else self.output.weight
        return F.linear(y, weight)

    def start_decoding(self, memory: torch.Tensor, padding: torch.Tensor, max_steps: int) -> "IncrementalDecoder":
        """A key/value-cached decoder for up to `max_steps` tokens a row of the sources `encode` gave."""
        return IncrementalDecoder(self, memory, padding, max_steps)

    def forward(self, source: torch.Tensor, target_in: torch.Tensor) -> torch.Tensor:
        memory, padding = self.encode(source)
        return self.decode(target_in, memory, padding)


class IncrementalDecoder:
    """Next-token logits of a batch of growing target prefixes, one position a step: every layer keeps the
    self-attention keys and values of the earlier positions, and the cross-attention keys and values of the
    encoder output are computed once. Gives `TransformerTranslator.decode(prefix, last_only=True)`'s logits
    (up to float rounding) at a cost linear, not quadratic, in the prefix length. In eval mode only."""

    def __init__(self, model: TransformerTranslator, memory: torch.Tensor, padding: torch.Tensor, max_steps: int):
        self.model, self.padding, self.position = model, padding, 0
        self.position_table = positions(max_steps, model.width, memory.device)
        self.caches = [{"cross": layer.cross_attn.keys_values(memory)} for layer in model.decoder]

    def step(self, prefix: torch.Tensor) -> torch.Tensor:
        """Logits [rows, vocab] of the token after each row of `prefix` [rows, position + 1] (only its last
        column is read: the earlier ones are in the cache)."""
        model = self.model
        if self.position >= len(self.position_table):  # past max_steps: rows of a longer table are the same
            self.position_table = positions(2 * self.position + 1, model.width, self.position_table.device)
        y = model.target_embed(prefix[:, -1:]) * math.sqrt(model.width) + self.position_table[self.position]
        y = model.embed_dropout(y)
        for layer, cache in zip(model.decoder, self.caches):
            y = layer.step(y, cache, self.padding)
        self.position += 1
        return model.logits(model.decoder_norm(y))[:, -1]

    def select(self, rows: torch.Tensor) -> None:
        """Keep (in this order, repeats allowed) the prefixes at `rows`: drops finished sentences, reorders beams."""
        self.padding = self.padding[rows]
        for cache in self.caches:
            for key, (keys, values) in cache.items():
                cache[key] = (keys[rows], values[rows])


def positions(length: int, width: int, device) -> torch.Tensor:
    """Sinusoidal position encodings [length, width] (Vaswani et al. 2017, section 3.5)."""
    position = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    frequency = torch.exp(torch.arange(0, width, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / width))
    table = torch.zeros(length, width, device=device)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency[: width // 2])
    return table


def build_translation_model(config: ExperimentConfig, vocab_size: int) -> TransformerTranslator:
    model = config.model
    width = model.width or 256
    heads = model.heads or max(1, width // 64)
    return TransformerTranslator(vocab_size, width=width, layers=model.depth or 3, heads=heads,
                                 ffn=model.ffn_dim or 4 * width, dropout=model.dropout, tie_weights=model.tie_weights)


def initialize_translation_model(model: nn.Module, scheme: str, seed: int) -> nn.Module:
    """Re-draw every parameter from `seed`: Linear weights Glorot-uniform ('glorot_uniform', fairseq's default) or
    Glorot-normal, biases 0, embeddings N(0, width^-1/2) with the pad row 0, LayerNorm weight 1 and bias 0."""
    if scheme not in ("glorot_uniform", "glorot_normal"):
        raise ConfigError(f"model.init {scheme!r} is not one of the transformer's: glorot_uniform, glorot_normal")
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear):
                (nn.init.xavier_uniform_ if scheme == "glorot_uniform" else nn.init.xavier_normal_)(
                    module.weight, generator=generator)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.Embedding):
                module.weight.normal_(0.0, module.embedding_dim ** -0.5, generator=generator)
                module.weight[PAD_ID].zero_()
            elif isinstance(module, nn.LayerNorm):
                module.weight.fill_(1.0)
                module.bias.zero_()
    return model
