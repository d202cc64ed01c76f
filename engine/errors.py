"""The one error family and the one exit-code table.

Every mistake aplot can name (a bad config, a data file, a run reference, a training failure)
is an `AplotError`: its message is meant for the user as it stands, and it carries the exit
status a command ends with. The CLI and the training entry points catch this base alone and
print `lines()`; anything else is a bug and keeps its type name (and, with `--debug`, its
traceback). Torch-free: the UI imports it.
"""

from __future__ import annotations

# exit statuses of `aplot …` and of the training processes
EXIT_OK = 0
EXIT_FAILED = 1  # the run (or an unforeseen error) failed
EXIT_USAGE = 2  # the user's input was wrong: config, data file, run reference, arguments
EXIT_INTERRUPTED = 130  # stopped by SIGINT / ctrl+c (128 + 2, as shells report it)

class AplotError(Exception):
    """A problem with a message fit to show as is; `code` is the exit status it ends with."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str = "", code: int | None = None):
        super().__init__(message)
        self.code = self.exit_code if code is None else code

    def lines(self) -> list[str]:
        """What the user sees: one line, or one per problem for errors that gather several."""
        return str(self).splitlines() or [type(self).__name__]
