"""The reinforcement-learning task: PPO agents in gymnasium environments, scored by mean episodic return."""

from __future__ import annotations

from ticketlab.tasks.base import Task
from ticketlab.tasks.metrics import METRICS
from ticketlab.tasks.rl.data import load_env_data, load_experiment_env
from ticketlab.tasks.rl.evaluate import evaluate
from ticketlab.tasks.rl.model import build_agent, initialize_agent
from ticketlab.tasks.rl.population import population_size, stackable_agent, train_agent_population
from ticketlab.tasks.rl.ppo import train_agent


TASK = Task(
    name="rl",
    load_data=load_env_data,
    build_model=build_agent,
    initialize=lambda model, config, seed: initialize_agent(model, seed),
    train=lambda model, data, train_config, **kwargs: train_agent(model, data, train_config, rl=data.rl, **kwargs),
    evaluate=lambda model, data, split: evaluate(model, data, split, rl=data.rl),
    metric=lambda config: METRICS["return"],
    steps_per_epoch=lambda data, train_config: 1,  # an "epoch" is one PPO iteration
    stackable=stackable_agent,
    train_population=lambda members, data, train_config, **kwargs: train_agent_population(
        members, data, train_config, rl=data.rl, **kwargs),
    population_size=population_size,
    load_experiment_data=load_experiment_env,
    transfers=False,  # an agent's output layer is its action head: no class-sized layer to re-initialize
    labelled_examples=None,  # no labelled examples: stability evaluates returns through `evaluate`
)
