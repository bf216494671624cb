"""User-facing errors.

Anything a user can cause (a bad path, a malformed record, an unknown model or
an out-of-range option) raises :class:`UserError` with one message that names
the file, line or option at fault and what to do. The CLI prints the message
and exits with status 2, without a traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """An error caused by the user's input, reported without a traceback."""


class DataError(UserError):
    """A malformed data file or record."""

    def __init__(self, path: object, where: str | None, problem: str):
        loc = f"{path}" + (f", {where}" if where else "")
        super().__init__(f"{loc}: {problem}")
        self.path = path
        self.where = where
        self.problem = problem


class ChecksumError(UserError):
    """A downloaded file whose SHA-256 does not match the pinned value."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill PID``, a scheduler pre-empting the job), raised where Ctrl-C's KeyboardInterrupt would
    be, so that every command stops the same clean way (a compare report keeps its finished modes, a child
    process is terminated); the CLI exits with 143 instead of 130."""

    exit_code = 143


def interrupt_exit_code(exc: KeyboardInterrupt) -> int:
    """The exit status of a command stopped by ``exc``: 130 for Ctrl-C, 143 for SIGTERM (128 + the signal)."""
    return getattr(exc, "exit_code", 130)
