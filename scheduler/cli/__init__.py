"""The ``windward`` command. Each command group lives in its own module with a ``register(app)`` function.

Modules register lazily-importing commands so ``windward --help`` stays fast and a command's heavy
imports (ray, fastapi, matplotlib) happen only when it runs.
"""

from __future__ import annotations

import importlib
import logging
import os

import typer

from scheduler.cli.exitcodes import EXIT_CODES_HELP

app = typer.Typer(
    name="windward",
    help="Windward: carbon- and power-cap aware GPU scheduling for a wind-powered AI factory.\n\n" + EXIT_CODES_HELP,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# Command modules, in the order they appear in --help. A module that is missing is skipped, so the
# CLI keeps working while a command is being built.
_MODULES = ("simulate", "plan", "demo", "server", "client", "ops", "bench")


def _register_all() -> None:
    for name in _MODULES:
        try:
            mod = importlib.import_module(f"scheduler.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"scheduler.cli.{name}":
                continue
            raise
        mod.register(app)


def _version(value: bool) -> None:
    if value:
        from scheduler import __version__

        typer.echo(f"windward {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log at DEBUG level."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),  # fmt: skip
) -> None:
    level = logging.DEBUG if verbose else getattr(logging, os.environ.get("WINDWARD_LOG", "WARNING").upper())
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


_register_all()


def main() -> None:
    from scheduler.cli.exitcodes import exit_code_of
    from scheduler.errors import WindwardError

    try:
        app()
    except WindwardError as e:
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        raise SystemExit(exit_code_of(e)) from None
