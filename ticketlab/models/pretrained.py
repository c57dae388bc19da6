"""Pre-trained weights from a local safetensors file, loaded by parameter name into the network a user built.

The network comes from the constructor the user already calls, with its own module names:
`torchvision.models.resnet18(num_classes=10)`, `timm.create_model("vit_tiny_patch16_224", pretrained=False,
num_classes=10)`, or ticketlab's `ImageNetResNet(18, num_classes=10)` (torchvision's layout, no torchvision
needed). `load_torchvision_weights(model, path)` fills it from a state_dict saved with `safetensors.torch.save_file`
(torchvision's and timm's published checkpoints, converted once: ticketlab never unpickles a file it is handed).
Every mismatch is one line: the missing and unexpected names, and a classifier head of another size with the
`num_classes` to build the model with (or `head="skip"` to keep the model's own head, the usual start of
fine-tuning on another dataset).
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from ticketlab.errors import DataError

CONVERT = ("convert a checkpoint you trust with: python -c \"import sys, torch, safetensors.torch as st; "
           "st.save_file(torch.load(sys.argv[1], weights_only=True), sys.argv[2])\" IN.pth OUT.safetensors")
HEAD_MODES = ("load", "skip")


def read_state_dict(path: str | Path) -> dict:
    """The tensors of a .safetensors state_dict; DataError in one line for another suffix (a pickle) or a file
    that does not parse."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise DataError(f"{path}: ticketlab reads state_dicts as .safetensors only (it never unpickles a file it is "
                        f"handed); {CONVERT}")
    if not path.is_file():
        raise DataError(f"{path}: no such weights file")
    try:
        from safetensors.torch import load_file

        return load_file(str(path))
    except Exception as error:  # any unreadable file: one line, never a traceback
        raise DataError(f"{path} is not a readable state_dict ({type(error).__name__}: {error})") from None


def load_torchvision_weights(model: nn.Module, path: str | Path, *, strict: bool = True,
                             head: str = "load") -> nn.Module:
    """Load the state_dict in `path` (.safetensors) into `model` by parameter name; returns `model`.

    `head` "skip" leaves the output layer (the last Linear: torchvision's `fc`, timm's `head`) as the model has
    it, for a head of another class count. With `strict`, DataError (one line) for missing or unexpected names or
    another shape; a head of another size names the checkpoint's class count. `strict` False loads the names
    and shapes that match and leaves the rest."""
    if head not in HEAD_MODES:
        raise DataError(f"head {head!r} is unknown; allowed: {', '.join(HEAD_MODES)}")
    path = Path(path)
    state = read_state_dict(path)
    own = model.state_dict()
    head_prefix = _head_prefix(model)
    if head == "skip" and head_prefix:
        state = {name: value for name, value in state.items() if not name.startswith(head_prefix)}
        own = {name: value for name, value in own.items() if not name.startswith(head_prefix)}
    mismatched = [name for name, value in state.items() if name in own and own[name].shape != value.shape]
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if strict and mismatched and all(name.startswith(head_prefix) for name in mismatched) and head_prefix:
        weight = state.get(f"{head_prefix}weight")
        classes = int(weight.shape[0]) if weight is not None else "another number of"
        raise DataError(f"{path} does not match {type(model).__name__}: its classifier head {head_prefix.rstrip('.')} "
                        f"has {classes} outputs, the model's "
                        f"{int(own[f'{head_prefix}weight'].shape[0])}; build the model with num_classes={classes} "
                        "(data.classes), or load with head='skip' to keep the model's own head")
    if strict and (mismatched or missing or unexpected):
        shapes = [f"{name} {list(state[name].shape)} vs {list(own[name].shape)}" for name in mismatched]
        parts = [f"{len(names)} {what} ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})"
                 for what, names in (("missing", missing), ("unexpected", unexpected), ("of another shape", shapes))
                 if names]
        raise DataError(f"{path} does not match {type(model).__name__}: names {'; '.join(parts)}; build the model "
                        "the checkpoint was saved from (the same constructor and depth)")
    model.load_state_dict({name: value for name, value in state.items() if name not in mismatched},
                          strict=strict and head != "skip")
    return model


def _head_prefix(model: nn.Module) -> str:
    """'fc.' / 'head.' ...: the module prefix of the model's output layer (its last Linear), '' if none."""
    names = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    return f"{names[-1]}." if names else ""
