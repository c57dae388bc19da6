"""Tasks defined outside ticketlab: `ticketlab --task-module FILE_OR_MODULE COMMAND ...` imports a user's file (or an
importable module) whose top level registers its tasks (`simple_task`, or `register_task`), as `flask --app` and
`pytest -p` load a user's module before the command runs. Worker processes import the same sources again
(`task_sources`), so a user task trains in `--workers N` processes too. Torch-free (the file may import torch).
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import sys
from pathlib import Path

from ticketlab.errors import ConfigError
from ticketlab.tasks import TASKS


def import_task_module(source: str) -> tuple[str, ...]:
    """Import `source`, a .py file or a dotted module name, and return the names of the tasks it registered; they
    remember `source` (`TaskInfo.source`). ConfigError in one line for a missing file or module, an import that
    fails (its error's first line), or a new module that registers no task."""
    before = dict(TASKS.items())
    if not isinstance(source, str) or not source.strip():
        raise ConfigError(f"--task-module {source!r} is empty; give a .py file or an importable module name")
    is_file = source.endswith(".py") or "/" in source or "\\" in source
    name = _module_name(source) if is_file else source
    already = name in sys.modules
    try:
        if is_file:
            _import_file(source, name)
        else:
            importlib.import_module(source)
    except ConfigError:
        raise
    except ModuleNotFoundError as error:
        if not is_file and error.name is not None and source.startswith(error.name):
            raise ConfigError(f"--task-module {source!r}: no module named {error.name!r}; give a .py file path or "
                              "a module importable from the current directory or PYTHONPATH") from None
        raise ConfigError(f"--task-module {source!r} failed to import: {_first_line(error)}") from None
    except Exception as error:  # the user's code: one line here, the traceback with TICKETLAB_DEBUG=1
        raise ConfigError(f"--task-module {source!r} failed to import: {_first_line(error)}") from None
    added = [task for task, info in TASKS.items() if before.get(task) is not info]
    if not added and not already:
        raise ConfigError(f"--task-module {source!r} registers no task; call ticketlab.tasks.simple.simple_task(...) "
                          "or ticketlab.tasks.register_task(...) at its top level")
    for task in added:
        TASKS.register(task, dataclasses.replace(TASKS.get(task), source=_canonical(source, is_file)), replace=True)
    return tuple(added)


def import_task_sources(sources: tuple[str, ...] | list[str]) -> None:
    """Import every source of `task_sources()` in this (worker) process; those already imported are skipped."""
    for source in sources:
        is_file = source.endswith(".py") or "/" in source
        if (_module_name(source) if is_file else source) not in sys.modules:
            import_task_module(source)


def _module_name(path: str) -> str:
    """The module name a task file is imported under: its stem (so pickles name its functions by it)."""
    return Path(path).stem


def _canonical(source: str, is_file: bool) -> str:
    return str(Path(source).resolve()) if is_file else source


def _import_file(path: str, name: str) -> None:
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"--task-module {path!r}: no such file; give a .py file or an importable module name")
    if file.suffix != ".py":
        raise ConfigError(f"--task-module {path!r} is not a .py file")
    if not name.isidentifier():
        raise ConfigError(f"--task-module {path!r}: the file's name must be a Python identifier (e.g. my_task.py)")
    existing = sys.modules.get(name)
    if existing is not None:
        if Path(getattr(existing, "__file__", "") or "").resolve() == file.resolve():
            return
        raise ConfigError(f"--task-module {path!r}: a module named {name!r} is already imported from "
                          f"{getattr(existing, '__file__', None)}; rename the file")
    spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__
