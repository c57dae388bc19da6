"""What the `glue` and `mlm` Tasks declare alike: data loaded with the whole config (the model directory's
tokenizer), the random reinitialization control, epochs, the prunable tensors by module type, and why they do not
stack into populations."""

from __future__ import annotations

from ticketlab.errors import ConfigError
from ticketlab.tasks.hf.pretrained import reinitialize
from ticketlab.tasks.hf.tensors import pretrained_prunable
from ticketlab.tasks.hf.train import training_steps_per_epoch


def shared_task_fields(name: str) -> dict:
    """The Task fields both Hugging Face tasks set the same way, for the task called `name`."""

    def no_config_data(data_config):
        raise ConfigError(f"the {name} task loads its data with the whole config ({name}.model_dir's tokenizer): "
                          "use load_task_data(task, config)")

    return dict(
        load_data=no_config_data,
        reinitialize=lambda model, config, seed: reinitialize(model, seed),
        steps_per_epoch=training_steps_per_epoch,
        prunable=pretrained_prunable,
        train_examples=lambda data: len(data.train),
        stack_refusal="a pre-trained transformer (populations stack Flatten/Linear/ReLU and built-in conv networks)",
    )
