"""User-facing errors.

Every error the user can cause by bad input is one of these: the command-line front end prints
its message on one line and exits with code 2, never a traceback.
"""


class KgclipError(Exception):
    """Base class of the errors caused by bad input (files, configs, arguments)."""


class StoreError(KgclipError):
    """A knowledge store folder is missing, corrupt or invalid."""


class ConfigError(KgclipError):
    """A configuration key or value is wrong."""


class SourceError(KgclipError):
    """A source file cannot be converted (unreadable, truncated, wrong format)."""


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (the first line, or its type when it has none)."""
    lines = str(exc).strip().splitlines()
    return lines[0].strip() if lines else type(exc).__name__
