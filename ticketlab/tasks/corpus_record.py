"""What a run directory records of its corpus (RUN_DIR/corpus.json), so that a resumed run refuses another one.

A language or translation run's models are shaped by their corpus (the vocabulary) and trained on its token
order, but `--data-dir` is a path, not a result, and stays out of the config's hash: the run's first start records
the corpus's fingerprint, and every later start (and every analysis that loads the data) compares, so a changed
corpus is refused in one line instead of half-used.
"""

from __future__ import annotations

from pathlib import Path

from ticketlab.errors import ConfigError, IntegrityError
from ticketlab.store import read_json_record, write_json

CORPUS_FILE = "corpus.json"


def bind_corpus(run_dir: str | Path, listing: dict) -> dict:
    """The corpus record of `run_dir`: `listing` (its "fingerprint", the "origin" path and a "summary" of sizes,
    plus whatever the task keeps) written on a run's first start, or the record already there, after checking
    that its fingerprint is `listing`'s. A run made before records existed gets `listing` recorded now.

    ConfigError (one line, both corpora named) for a different corpus; IntegrityError for an unreadable record."""
    path = Path(run_dir) / CORPUS_FILE
    if not path.exists():
        write_json(path, listing)
        return listing
    what_it_records = ("it records which corpus the run was trained on: restore it, or delete it to record the "
                       "corpus given now (unchecked)")
    stored = read_json_record(path, what_it_records)
    if not isinstance(stored.get("fingerprint"), str):
        raise IntegrityError(f"{path} is damaged (no fingerprint); {what_it_records}")
    if stored["fingerprint"] != listing["fingerprint"]:
        raise ConfigError(f"the corpus at {listing['origin']} ({listing['summary']}) is not the one this run was "
                          f"trained on ({stored.get('origin')}: {stored.get('summary')}, recorded in {path}); use "
                          "that corpus, or a new --root")
    return stored
