"""Where and with what a run directory was computed: one record per `find_tickets` session in provenance.json.

A run is resumable, so one directory may be trained by several sessions (another host, another torch); each
appends its own record (start time, and end time and wall time once it finishes; a record without an end is a
session that was interrupted or is still running). The file sits beside config.json and is not part of its
hash; run directories written before it existed simply have none. Torch-free: the caller passes the device.
"""

from __future__ import annotations

import platform
import shlex
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from ticketlab.store import read_json, write_json
from ticketlab.version import __version__

PROVENANCE_FILE = "provenance.json"


def utc_now() -> str:
    """The current time as ISO 8601 UTC with seconds, e.g. 2026-12-03T10:20:00Z."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def start_session(run_dir: Path, device: object) -> dict:
    """Append this session's record (versions, git commit, host, device, command, start time); returns it."""
    torch = sys.modules.get("torch")
    record = {
        "started_at": utc_now(),
        "ended_at": None,
        "wall_s": None,
        "ticketlab": __version__,
        "torch": getattr(torch, "__version__", None),
        "python": platform.python_version(),
        "git_commit": source_commit(),
        "host": socket.gethostname(),
        "device": _device_text(device, torch),
        "command": shlex.join(sys.argv),
        "_started": time.monotonic(),
    }
    sessions = read_sessions(run_dir)
    write_json(Path(run_dir) / PROVENANCE_FILE, {"sessions": [*sessions, _public(record)]})
    record["_index"] = len(sessions)
    return record


def end_session(run_dir: Path, session: dict) -> None:
    """Record the end time and wall time (seconds) of the session `start_session` returned."""
    sessions = read_sessions(run_dir)
    index = session.get("_index", -1)
    if not 0 <= index < len(sessions):
        return
    sessions[index] = _public(session) | {"ended_at": utc_now(),
                                          "wall_s": round(time.monotonic() - session["_started"], 3)}
    write_json(Path(run_dir) / PROVENANCE_FILE, {"sessions": sessions})


def read_sessions(run_dir: Path) -> list[dict]:
    """The recorded sessions, oldest first; empty for a run without (or with an unreadable) provenance.json."""
    try:
        sessions = read_json(Path(run_dir) / PROVENANCE_FILE).get("sessions", [])
    except (OSError, ValueError, AttributeError):
        return []
    return [entry for entry in sessions if isinstance(entry, dict)] if isinstance(sessions, list) else []


def source_commit() -> str | None:
    """The git commit of ticketlab's source when it runs from a checkout (with '+dirty' for local changes)."""
    source = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=5)
        if commit.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no", "."],
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return commit.stdout.strip() + ("+dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")


def _device_text(device: object, torch) -> str:
    text = str(device)
    if torch is not None and text.startswith("cuda") and torch.cuda.is_available():
        try:
            text += f" ({torch.cuda.get_device_name(getattr(device, 'index', None))})"
        except (RuntimeError, AssertionError):
            pass
    return text


def _public(record: dict) -> dict:
    return {key: value for key, value in record.items() if not key.startswith("_")}
