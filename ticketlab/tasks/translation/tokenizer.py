"""Subword tokenization of a translation corpus: one joint BPE model over source and target training text.

Built with Hugging Face `tokenizers` (the `[nlp]` extra): a byte-pair-encoding model over a Metaspace
pre-tokenization (spaces become a visible '▁' marker, as in sentencepiece), so decoding restores the text's
spacing exactly and BLEU is computed on detokenized output. The trained model is a JSON string, saved as
`tokenizer.json` in the run directory so a run directory holds everything needed to decode.
"""

from __future__ import annotations

from ticketlab.errors import ConfigError, IntegrityError

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)  # ids 0, 1, 2, 3
PAD_ID, BOS_ID, EOS_ID, UNK_ID = range(4)
INSTALL = "pip install 'ticketlab[nlp]'"


def _tokenizers():
    try:
        import tokenizers
    except ImportError:
        raise ConfigError(f"translation needs the tokenizers package: {INSTALL}") from None
    return tokenizers


def train_tokenizer(texts: list[str], vocab_size: int) -> str:
    """A BPE tokenizer of `vocab_size` tokens (the 4 special ones included) trained on `texts`, as JSON."""
    tokenizers = _tokenizers()
    from tokenizers import decoders, models, pre_tokenizers, trainers

    alphabet = len({character for text in texts for character in text}) + 1  # + the '▁' marker
    if vocab_size < len(SPECIAL_TOKENS) + alphabet:
        raise ConfigError(f"data.vocab_size {vocab_size} is too small for this corpus: its {alphabet} characters "
                          f"and {len(SPECIAL_TOKENS)} special tokens need at least {len(SPECIAL_TOKENS) + alphabet}")
    tokenizer = tokenizers.Tokenizer(models.BPE(unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), show_progress=False,
                                  limit_alphabet=alphabet)
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer.to_str()


def load_tokenizer(text: str, where: str = "tokenizer"):
    """The Tokenizer a JSON string describes; IntegrityError (one line) if it is not a valid tokenizer of ours."""
    tokenizers = _tokenizers()
    try:
        tokenizer = tokenizers.Tokenizer.from_str(text)
    except Exception as error:  # tokenizers raises its own Exception subclass for malformed JSON
        raise IntegrityError(f"{where} is not a valid tokenizer ({' '.join(str(error).split())[:120]})") from None
    if [tokenizer.token_to_id(token) for token in SPECIAL_TOKENS] != list(range(len(SPECIAL_TOKENS))):
        raise IntegrityError(f"{where} lacks the special tokens {', '.join(SPECIAL_TOKENS)} as ids 0-3")
    return tokenizer


def encode(tokenizer, texts: list[str]) -> list[list[int]]:
    """Subword ids of each text (no special tokens)."""
    return [encoding.ids for encoding in tokenizer.encode_batch(texts, add_special_tokens=False)]


def decode(tokenizer, sequences: list[list[int]]) -> list[str]:
    """Detokenized text of each id sequence; special tokens are dropped."""
    return tokenizer.decode_batch(sequences, skip_special_tokens=True)
