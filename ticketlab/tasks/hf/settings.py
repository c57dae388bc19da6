"""The config sections of the Hugging Face tasks: `glue` (sequence classification) and `mlm` (masked-language
modelling), `config.glue` / `config.mlm`. Torch-free: the config and `ticketlab --help` read them without loading
transformers. The tasks registry registers them.

Which tensors are pruned follows Chen et al. 2020, "The Lottery Ticket Hypothesis for Pre-trained BERT Networks"
(NeurIPS; code: github.com/VITA-Group/BERT-Tickets): every encoder layer's self-attention query, key, value and
attention-output weights, both feed-forward weights, and the pooler's dense weight, pruned globally by magnitude;
the embeddings and the task head (classifier, MLM prediction head) are not pruned. Biases and LayerNorm never are.
"""

from __future__ import annotations

from dataclasses import dataclass

from ticketlab.config.checks import check_bool, check_int, check_number
from ticketlab.errors import ConfigError

# the groups of Linear/Embedding weights a pre-trained model's prunable tensors are chosen from (see `prune_*`)
TENSOR_GROUPS = ("attention", "ffn", "pooler", "embeddings", "head")


@dataclass(frozen=True)
class PretrainedSettings:
    """What both Hugging Face tasks share: the local model directory and which weight groups are pruned."""

    # a local directory written by `save_pretrained` (config.json, weights, tokenizer files); never downloaded
    model_dir: str | None = None
    max_length: int = 128  # tokens per example (longer ones are truncated, shorter ones padded)
    prune_attention: bool = True  # self-attention query, key, value and output weights (Chen et al.: pruned)
    prune_ffn: bool = True  # the feed-forward (intermediate and output) weights (Chen et al.: pruned)
    prune_pooler: bool = True  # the pooler's dense weight (Chen et al.: pruned)
    prune_embeddings: bool = False  # word, position and token-type embeddings (Chen et al.: not pruned)
    prune_head: bool = False  # the task head: classifier or MLM prediction transform (Chen et al.: not pruned)

    def groups(self) -> tuple[str, ...]:
        """The weight groups pruned, in TENSOR_GROUPS order."""
        return tuple(group for group in TENSOR_GROUPS if getattr(self, f"prune_{group}"))

    def validate(self) -> None:
        section = self.section_name
        if self.model_dir is not None and not (isinstance(self.model_dir, str) and self.model_dir.strip()):
            raise ConfigError(f"{section}.model_dir {self.model_dir!r} must be a local model directory or unset")
        check_int(f"{section}.max_length", self.max_length, 4, 1 << 16)
        for group in TENSOR_GROUPS:
            check_bool(f"{section}.prune_{group}", getattr(self, f"prune_{group}"))


@dataclass(frozen=True)
class GlueConfig(PretrainedSettings):
    """Sequence classification (task 'glue') of GLUE-layout TSV files in data.data_dir; data.name names the GLUE
    task (sst2, mrpc, cola, rte, stsb, qnli, qqp), which fixes the columns, the labels and the metric."""

    section_name = "glue"


@dataclass(frozen=True)
class MLMConfig(PretrainedSettings):
    """Masked-language modelling (task 'mlm') of a local text file: BERT's masking (Devlin et al. 2019)."""

    section_name = "mlm"
    mask_probability: float = 0.15  # fraction of tokens predicted per sequence (80% [MASK], 10% random, 10% kept)

    def validate(self) -> None:
        super().validate()
        check_number("mlm.mask_probability", self.mask_probability, 0, 1, low_open=True, high_open=True)
