"""The `maskloop` command line.

Each command group lives in its own module with a ``register(app)`` function:
``server`` (run, api, worker, migrate, create-user, import, export), ``model`` (train, eval,
export-decoder, ...; torch is imported lazily inside the commands) and ``simulate``.
"""
from __future__ import annotations

import importlib

import typer

app = typer.Typer(help="Maskloop: a data engine for mask annotation.", no_args_is_help=True)

_GROUPS = ("backend.cli.server", "backend.cli.data", "backend.cli.model", "backend.cli.simulate")

for _name in _GROUPS:
    try:
        _module = importlib.import_module(_name)
    except ModuleNotFoundError as exc:  # a group not written yet
        if exc.name != _name:
            raise
        continue
    _module.register(app)


def main() -> None:
    app()
