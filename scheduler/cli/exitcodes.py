"""The ``windward`` command's exit codes: the one place they are defined (README "Exit codes", ``--help``).

======  ==========================================================================================
code    meaning
======  ==========================================================================================
0       success (with ``submit --wait``: the job finished)
1       the server or the runtime failed: connection refused or timed out, HTTP 5xx, an unexpected
        error (a Python traceback)
2       usage error: bad flags or arguments, no token, a local file (job spec, script, site) that is
        missing or invalid, a configuration the command cannot run with -- nothing was sent or done
3       the server refused the request (HTTP 4xx: 401 bad token, 403 not allowed, 404 no such job,
        409 conflict, 413/422 invalid spec, 429 over a limit)
4       ``submit --wait`` / ``status --wait``: the job ended failed or cancelled
======  ==========================================================================================
"""

from __future__ import annotations

from scheduler.errors import WindwardError

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_USAGE = 2
EXIT_REJECTED = 3
EXIT_JOB_FAILED = 4

#: One line per code, for ``windward --help`` and the README.
EXIT_CODES_HELP = (
    "Exit codes: 0 ok; 1 server or runtime error (connection refused, HTTP 5xx); 2 usage error (bad flags, "
    "no token, invalid local file); 3 rejected by the server (HTTP 4xx); 4 a waited-for job failed or was "
    "cancelled."
)


class ServerError(WindwardError):
    """The server could not be reached or failed (connection refused, timeout, HTTP 5xx): exit 1."""


class Rejected(WindwardError):
    """The server refused the request (HTTP 4xx): exit 3. ``status`` is the HTTP status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class JobFailed(WindwardError):
    """A job the command waited for ended failed or cancelled: exit 4."""


def exit_code_of(e: WindwardError) -> int:
    """The exit code of a WindwardError that ends a command (any other WindwardError is a usage error:
    bad input or configuration, nothing done)."""
    if isinstance(e, Rejected):
        return EXIT_REJECTED
    if isinstance(e, ServerError):
        return EXIT_RUNTIME
    if isinstance(e, JobFailed):
        return EXIT_JOB_FAILED
    return EXIT_USAGE
