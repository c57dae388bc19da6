"""One version: the package's (ticketlab.version, re-exported as ticketlab.__version__) is pyproject.toml's."""

import tomllib
from pathlib import Path

import ticketlab
from ticketlab.version import __version__


def test_the_package_version_is_pyprojects():
    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    assert __version__ == project["version"] == ticketlab.__version__
