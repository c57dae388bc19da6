"""Hugging Face transformers as tasks: a pre-trained model from a local directory, fine-tuned on GLUE-layout
sequence classification (task 'glue') or masked-language modelling of a text file (task 'mlm'). The trial's θ0 is
the pre-trained network θ_pre (the task head the checkpoint lacks drawn from the trial seed), so IMP with
`prune.rewind 0it` rewinds to θ_pre, as Chen et al. 2020 do.

Modules: `settings` (the `glue` and `mlm` config sections, torch-free), `pretrained` (loading a model directory,
the seeded head and the random reinitialization), `tensors` (the prunable weights by module type), `glue_data`
(GLUE's file layouts), `text_data` (MLM's token blocks and masking), `metrics` (GLUE's metrics), `train` (the
fine-tuning procedure), `task_fields` (what both TASKs declare alike), `glue` and `mlm` (the TASKs), and `vision`
(an `AutoModelForImageClassification` as a network of the classification task). Needs the `[hf]` extra (transformers). Importing the package
loads neither torch nor transformers.
"""
