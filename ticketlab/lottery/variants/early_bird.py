"""Early-bird tickets (You et al. 2020): per trial, a search job (`level_00/early_bird_search`) trains the dense
network again and draws each level's mask when the masks stop changing; `early_bird` trains that mask from the
weights at the detection step, `early_bird_reset` from θ0 / θk. The search and the masks it stores live in
`ticketlab.lottery.early_bird`. They prune single weights only."""

from __future__ import annotations

from dataclasses import dataclass

from ticketlab.lottery.keys import DENSE, JobKey
from ticketlab.lottery.variants.base import Deferred, Variant, register, starts

SEARCH = "early_bird_search"  # level-0 job per trial: dense training watched until masks settle

search = Deferred("ticketlab.lottery.early_bird")  # the search's runner and the files it stores
context = Deferred("ticketlab.lottery.context")


def search_key(key: JobKey) -> JobKey:
    return JobKey(key.trial, 0, SEARCH)


@dataclass(frozen=True)
class Search(Variant):
    """The search job: trained by its own runner, alone, from θ0 with the dense job's data order."""

    def start(self, ctx, key):
        return starts.init_start(ctx, key.trial)

    def cost_inputs(self, key):
        return ()  # trains from θ0 itself

    def steps(self, ctx, key):
        return ctx.total_steps  # at most: the search stops at detection

    def planned_steps(self, total, rewind, finetune):
        return total

    def run(self, ctx, key, on_progress=None):
        return search.run_early_bird_search(ctx, key, on_progress=on_progress)

    def write_summary(self, ctx, graph):
        search.write_early_bird_csvs(ctx, [key for key in graph if key.variant == self.name])


@dataclass(frozen=True)
class EarlyBird(Variant):
    """The level's early-bird mask, from the detection-point weights (`reset` False) or the rewound ones."""

    reset: bool = False

    def inputs(self, key):
        return (JobKey(key.trial, 0, DENSE), search_key(key))

    def cost_inputs(self, key):
        return (search_key(key),)  # the search (to its stop), not the dense run: what early-bird tickets save

    def mask(self, ctx, key):
        return search.early_bird_mask(ctx, search_key(key), key.level)

    def start(self, ctx, key):
        return super().start(ctx, key) if self.reset else search.detection_start(ctx, search_key(key), key.level)

    def steps(self, ctx, key):
        if not self.reset and context.is_done(ctx, search_key(key)):
            return ctx.total_steps - search.detection_step(ctx, search_key(key), key.level)
        return super().steps(ctx, key)

    def check_model(self, config, model):
        search.check_criterion(config, model)


register(
    EarlyBird("early_bird", "early-bird ticket (detection weights)", "early-bird", family="early_bird",
              rewound=False, style=("black", "<", "-")),
    EarlyBird("early_bird_reset", "early-bird mask + reset", "eb-reset", reset=True, family="early_bird",
              style=("black", ">", "--")),
    Search(SEARCH, "early bird search", "early-bird-s", selectable=False, chain=True, own_runner=True,
           family="early_bird"),
)
