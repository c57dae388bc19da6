"""Primary test metrics of the tasks, by name: direction and how reports draw them. Torch-free (reports use it)."""

from __future__ import annotations

from dataclasses import dataclass

from ticketlab.errors import ConfigError


@dataclass(frozen=True)
class Metric:
    """A task's primary test metric: its name (results.csv's `metric` column), direction and display."""

    name: str  # e.g. "accuracy", "perplexity", "bits_per_char"
    higher_is_better: bool
    label: str  # what it is, for axis titles and tables, e.g. "test accuracy"
    log_scale: bool = False  # draw on a log axis (perplexity)
    percent: bool = False  # a fraction in [0, 1] shown as percent
    early_stop: str = "minimum validation loss"  # what picks the early-stopping point, for titles and tables

    def axis_label(self) -> str:
        """Axis label with units and direction, e.g. 'test accuracy (%), higher is better'."""
        unit = " (%)" if self.percent else ""
        direction = "higher is better" if self.higher_is_better else "lower is better"
        return f"{self.label}{unit}, {direction}"


METRICS: dict[str, Metric] = {
    "accuracy": Metric("accuracy", higher_is_better=True, label="test accuracy", percent=True),
    "perplexity": Metric("perplexity", higher_is_better=False, label="test perplexity", log_scale=True),
    "bits_per_char": Metric("bits_per_char", higher_is_better=False, label="test bits per character"),
    "bleu": Metric("bleu", higher_is_better=True, label="test BLEU"),
    "f1": Metric("f1", higher_is_better=True, label="test F1", percent=True),
    "matthews": Metric("matthews", higher_is_better=True, label="test Matthews correlation"),
    "pearson": Metric("pearson", higher_is_better=True, label="test Pearson correlation"),
    "return": Metric("return", higher_is_better=True, label="mean episodic return",
                     early_stop="highest validation-episode return"),
    # regression errors a user task (`ticketlab.tasks.simple`) reports: lower is better, also in a report drawn by a
    # process that never imported the task
    "mse": Metric("mse", higher_is_better=False, label="test MSE"),
    "rmse": Metric("rmse", higher_is_better=False, label="test RMSE"),
    "mae": Metric("mae", higher_is_better=False, label="test MAE"),
}


def register_metric(metric: Metric) -> Metric:
    """Make `metric` known by its name (a user task's metric and direction) and return the one registered: a
    built-in name keeps its built-in entry when the direction agrees; ConfigError when it does not."""
    known = METRICS.get(metric.name)
    if known is not None and known.higher_is_better != metric.higher_is_better:
        raise ConfigError(f"metric {metric.name!r} is built in as {'higher' if known.higher_is_better else 'lower'} is better; "
                          f"give direction {'max' if known.higher_is_better else 'min'} or another name")
    return METRICS.setdefault(metric.name, metric)


def metric_named(name: str) -> Metric:
    """The Metric called `name`; an unknown name (a task added later) is drawn plainly, higher is better."""
    return METRICS.get(name) or Metric(name, higher_is_better=True, label=f"test {name.replace('_', ' ')}")
