"""A pre-trained transformer's prunable weights, chosen by module type: the Linear (and GPT-2-style Conv1D) weights
of the base model's self-attention, feed-forward and pooler modules, its Embedding weights, and the task head's
weights (what lies outside the base model). A module's group is read from the types of the modules that hold it
(BertSelfAttention, BertSelfOutput -> attention; BertIntermediate, BertOutput, an MLP/FFN -> ffn; BertPooler ->
pooler), so any encoder built the way transformers builds them is covered without naming its parameters."""

from __future__ import annotations

from torch import nn

GROUPS_ATTRIBUTE = "ticketlab_prune_groups"  # set on the model by the task's build_model from its settings
_FFN_WORDS = ("intermediate", "output", "mlp", "ffn", "feedforward", "feed_forward")


def weight_groups(model: nn.Module) -> dict[str, str]:
    """Parameter name -> group ('attention', 'ffn', 'pooler', 'embeddings', 'head', or 'other' for a Linear no rule
    places), in module order; a Parameter shared by two modules (an MLM decoder tied to the word embeddings) is
    listed once, under its first name and group."""
    modules = dict(model.named_modules())
    prefix = getattr(model, "base_model_prefix", "")
    base = prefix if prefix and isinstance(getattr(model, prefix, None), nn.Module) else ""
    groups, seen = {}, set()
    for module_name, module in modules.items():
        weight = getattr(module, "weight", None)
        if not (isinstance(module, (nn.Linear, nn.Embedding)) or type(module).__name__ == "Conv1D"):
            continue
        if not isinstance(weight, nn.Parameter) or id(weight) in seen:
            continue
        seen.add(id(weight))
        inside_base = not base or module_name.startswith(base + ".")
        if not inside_base:
            group = "head"
        elif isinstance(module, nn.Embedding):
            group = "embeddings"
        else:
            group = _group_of(module_name, modules)
        groups[f"{module_name}.weight"] = group
    return groups


def _group_of(module_name: str, modules: dict[str, nn.Module]) -> str:
    parts = module_name.split(".")
    kinds = [type(modules[".".join(parts[:end])]).__name__.lower() for end in range(len(parts) - 1, 0, -1)]
    if any("attention" in kind for kind in kinds):
        return "attention"
    if any("pooler" in kind for kind in kinds):
        return "pooler"
    if any(word in kind for kind in kinds for word in _FFN_WORDS):
        return "ffn"
    return "other"


def pretrained_prunable(model: nn.Module) -> dict[str, nn.Parameter]:
    """The weights of the groups the model's task settings prune (`GROUPS_ATTRIBUTE`; default Chen et al.'s:
    attention, ffn, pooler), name -> Parameter in module order."""
    chosen = set(getattr(model, GROUPS_ATTRIBUTE, ("attention", "ffn", "pooler")))
    parameters = dict(model.named_parameters(remove_duplicate=False))
    return {name: parameters[name] for name, group in weight_groups(model).items() if group in chosen}
