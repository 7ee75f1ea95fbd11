"""The one exception root of Windward and its few meaningful subclasses."""

from __future__ import annotations


class WindwardError(Exception):
    """Root of every error Windward raises on purpose."""


class InputError(WindwardError):
    """Bad user input: names the file, row or field, the value, and what is allowed. Nothing was applied."""


class DataNotFoundError(WindwardError):
    """A data file or the shared data directory could not be found."""


class InfeasibleError(WindwardError):
    """No plan satisfies the hard constraints (the message names the slot or the job)."""


class ExecutorError(WindwardError):
    """The executor (Ray or simulated) could not carry out an action."""
