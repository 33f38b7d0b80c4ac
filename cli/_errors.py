"""How every ``epg`` command fails: one line on stderr and an exit code, never a traceback for the user's mistakes.

- a bad option value or usage (click's own checks, or the library's :class:`epg_core.UsageError`): exit 2;
- bad data or a failed write (:class:`epg_core.EpgError` of kind "data"/"io", or an ``OSError``): exit 1;
- Ctrl-C: exit 130 with one line; never swallowed.

Anything else is a programming error and propagates as a traceback (so tests see it). :class:`EpgGroup` applies
this to every command of the group, including nested groups such as ``intervene``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
from click.exceptions import NoArgsIsHelpError

__all__ = ["CliError", "CliUsageError", "EpgGroup", "Interrupted", "OneLineUsageError", "error_lines", "first_line"]


def first_line(text: str, fallback: str = "error") -> str:
    """The first non-empty line of ``text`` (messages must be one line)."""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    return lines[0] if lines else fallback


class CliError(click.ClickException):
    """Bad data or a failed write: a one-line ``Error: ...``, exit code 1."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(first_line(message))


class CliUsageError(CliError):
    """A bad argument or option value found after parsing: one line, exit code 2."""

    exit_code = 2


class Interrupted(CliError):
    """Ctrl-C: one line, exit code 130 (128 + SIGINT), like a shell."""

    exit_code = 130

    def __init__(self, message: str = "interrupted (Ctrl-C)") -> None:
        super().__init__(message)


class OneLineUsageError(click.UsageError):
    """click's usage error shown as a single line that names the command and points at its ``--help``."""

    def show(self, file: Any = None) -> None:
        path = self.ctx.command_path if self.ctx is not None else "epg"
        click.echo(f"Error: {path}: {first_line(self.format_message())} (see '{path} --help')", file=file,
                   err=file is None)


def _os_message(exc: OSError) -> str:
    if exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    return first_line(str(exc), type(exc).__name__)


@contextmanager
def error_lines() -> Iterator[None]:
    """Turn the library's errors, ``OSError`` and Ctrl-C into one-line click exceptions (see the module doc)."""
    try:
        yield
    except click.ClickException:
        raise
    except KeyboardInterrupt:
        raise Interrupted() from None
    except Exception as exc:
        core = sys.modules.get("epg_core")  # not imported yet: the error cannot be one of its (keeps --help fast)
        if core is not None and isinstance(exc, core.EpgError):
            usage = getattr(exc, "kind", "data") == "usage"
            raise (CliUsageError if usage else CliError)(str(exc)) from None
        if isinstance(exc, OSError):
            raise CliError(_os_message(exc)) from None
        raise  # a programming error: the traceback is the useful output


@contextmanager
def _one_line_usage() -> Iterator[None]:
    """Re-raise click's usage errors as :class:`OneLineUsageError` (``no_args_is_help`` still shows the help)."""
    try:
        yield
    except NoArgsIsHelpError:
        raise
    except click.UsageError as exc:
        if isinstance(exc, OneLineUsageError):
            raise
        raise OneLineUsageError(exc.format_message(), ctx=exc.ctx) from None


class EpgGroup(click.Group):
    """A click group whose commands fail with one line (see the module doc), parsing errors included."""

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        with _one_line_usage():
            return super().make_context(info_name, args, parent=parent, **extra)

    def invoke(self, ctx: click.Context) -> Any:
        with _one_line_usage(), error_lines():
            return super().invoke(ctx)
