"""4. Language-model tickets (Yu, Edunov, Tian & Morcos 2019, "Playing the lottery with rewards and multiple
languages", section 4 / Figure 3): a character-level LSTM on Tiny Shakespeare, IMP tickets with late rewinding
against both random controls (the same masks reinitialized; random masks of the same layer-wise sparsity).
Metric: test bits per character at the early-stop point (lower is better).

The paper (Zaremba et al.'s 2-layer LSTM on WikiText-103, 20% a round, late rewinding): tickets match the dense
model's perplexity down to ~1/5 of the weights and beat both random controls at every sparsity; without late
rewinding they do not.

Scaled for about an hour of 2 CPU cores: the `lstm_tiny_shakespeare` preset (1 x 128 LSTM, BPTT 64, batch 32,
Adam 2e-3, 1,500 iterations, rewind to 100 it, 10 rounds of 20% to 10.7%), 3 trials instead of the preset's 2;
Tiny Shakespeare from ../shared/data (a corpus that fits offline; the paper's WikiText-103 does not fit 2 cores):
93 jobs, 130,500 iterations at ~0.038 CPU-s, ~1.4 CPU-hours, one job a process (`--workers 2`).
`--quick`: a 1 x 16 LSTM on a generated 12 KB text, 20 iterations, 2 rounds.

    python -m benchmarks.reproduce.language_model [--quick] [--out DIR] [--trials N]
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Sequence

from benchmarks.reproduce import common


def generated_text(path: Path, characters: int = 12_000, seed: int = 0) -> Path:
    """A seeded text of repeated phrases (learnable structure), written once; returns its path."""
    if not path.is_file():
        generator = random.Random(seed)
        phrases = ["to be ", "or not ", "that is ", "the question\n", "whether ", "tis nobler ", "in the mind "]
        text = ""
        while len(text) < characters:
            text += generator.choice(phrases)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return path


def protocol(quick: bool, trials: int | None, out_dir: Path):
    import ticketlab

    if quick:
        config = ticketlab.preset("lstm_tiny").replace(**{
            "data.data_dir": str(generated_text(out_dir / "data" / "generated.txt")), "trials": 2})
    else:
        config = ticketlab.preset("lstm_tiny_shakespeare").replace(**{
            "data.data_dir": common.shared_data("tinyshakespeare.txt"), "trials": 3})
    return config.replace(trials=trials or config.trials)


def main(argv: Sequence[str] | None = None) -> common.Outputs:
    args = common.parse_args(__doc__, argv, "runs/reproduce/language_model")
    started = time.time()
    result = common.find(protocol(args.quick, args.trials, args.out), args.out, workers=args.workers)
    rows = common.results_table(result.run_dir, args.out, "early_stop_test_metric")
    return common.finish(args.out, rows, title="Language-model tickets: char LSTM on Tiny Shakespeare"
                         + (" (quick)" * args.quick),
                         note="Yu et al. 2019, Figure 3: test bits per character (lower is better) of tickets "
                              "with late rewinding vs reinitialized tickets and random pruning.",
                         started=started,
                         y_labels={"early_stop_test_metric": "test bits per character at early stop (lower is better)"})


if __name__ == "__main__":
    main()
