"""Language modelling: LSTM language models on WikiText-2, Penn Treebank (words) and Tiny Shakespeare (characters).

Modules: `data` (corpora as token tensors), `streams` (batchify, BPTT segments, data order), `model` (the LSTM
LM and its seeded init), `train` (truncated-BPTT training with exact masks and resume), `evaluate` (loss and
perplexity / bits per character), `task` (the TASK the lottery engine calls).
"""

from ticketlab.tasks.language.data import TokenSplits, load_language_data
from ticketlab.tasks.language.evaluate import evaluate
from ticketlab.tasks.language.model import LSTMLanguageModel, build_language_model, initialize_language_model
from ticketlab.tasks.language.streams import steps_per_epoch
from ticketlab.tasks.language.task import TASK, language_metric
from ticketlab.tasks.language.train import LanguageTrainResult, train_language_model

__all__ = [
    "TASK", "LSTMLanguageModel", "LanguageTrainResult", "TokenSplits", "build_language_model", "evaluate",
    "initialize_language_model", "language_metric", "load_language_data", "steps_per_epoch", "train_language_model",
]
