"""The command line (cyclopts): the app and its commands, option help, progress and reports."""

__all__ = ()
