"""Translation: an encoder-decoder Transformer on Multi30k or any parallel corpus, scored by sacrebleu BLEU.

Modules: `tokenizer` (a joint BPE model, saved in the run directory), `data` (parallel text as padded id
tensors), `batches` (token-count batches and their order), `model` (the pre-norm Transformer and its seeded
init), `decode` (greedy and beam search), `evaluate` (loss and BLEU), `train` (training with exact masks and
resume), `task` (the TASK the lottery engine calls). Needs the `[nlp]` extra (tokenizers, sacrebleu).
"""

from ticketlab.tasks.translation.task import TASK

__all__ = ["TASK"]
