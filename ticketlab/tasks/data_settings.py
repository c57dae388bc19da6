"""Data settings that only some tasks read. A task refuses the settings it does not read instead of ignoring them,
so that a config never promises what its run did not do (`data.classes` on a language model, `data.vocab_size`
on images)."""

from __future__ import annotations

from ticketlab.config import DataConfig
from ticketlab.errors import ConfigError

# field of DataConfig -> the data that reads it; each is unset (None, or False for augment) by default
SETTING_OWNERS = {
    "classes": "classification",
    "image_size": "image data",
    "channels": "image data",
    "augment": "image data",
    "source": "translation",
    "target": "translation",
    "vocab_size": "translation",
    "eval_size": "translation",
}


def refuse_foreign_settings(config: DataConfig, reader: str, what: str) -> None:
    """ConfigError (one line, naming the field and its value) for a set data field that `reader` (a value of
    SETTING_OWNERS, or "" for none of them) does not read; `what` names the data in the message."""
    for name, owner in SETTING_OWNERS.items():
        value = getattr(config, name)
        if owner != reader and value not in (None, False):
            raise ConfigError(f"data.{name} {value!r} applies to {owner} only, not to {what}; leave it unset")
