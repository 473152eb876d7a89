"""User-facing errors: problems the user can fix, with a message that says how.

The CLI prints a FextError as one `error: ...` line and exits 1; anything else is a bug and
keeps its traceback. Each kind also derives from the built-in it refines, so callers that
catch ValueError or FileNotFoundError keep working.
"""

from __future__ import annotations


class FextError(Exception):
    """A problem with the input, the settings or the workspace, not with FEXT itself."""


class UsageError(FextError, ValueError):
    """A setting, argument or file content that cannot be used."""


class NotFoundError(FextError, FileNotFoundError):
    """A folder, file or artefact that is not there (yet)."""


class BusyError(FextError, RuntimeError):
    """Something else is working on the same model right now."""


class StaleError(FextError, RuntimeError):
    """An artefact was built from another model or collection state than the current one."""


class LockedError(BusyError):
    """Another job is writing the same artefacts."""


class ImageError(UsageError):
    """A file that cannot be used as an image; the message is the reason shown to the user."""


class ModelNotFoundError(NotFoundError):
    """No finished model of that name in the workspace."""
