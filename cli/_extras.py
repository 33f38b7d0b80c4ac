"""Install extras: which extra provides a missing module, and a one-line exit 1 that names it.

``pip install epg`` installs only the core; each stage's libraries come with an extra (docs/ARCHITECTURE.md,
"The rooms"). A command declares the extras it may need, most specific first; when one of its imports fails,
the first of those extras that provides the missing module is named, e.g.
``epg export needs the 'torch' extra: pip install 'epg[torch]'``. A missing module that none of them provides is a
real bug and propagates unchanged.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

__all__ = ["EXTRA_MODULES", "MissingExtra", "extra_for", "needs_extras", "require_extra"]

F = TypeVar("F", bound=Callable[..., Any])

#: Top-level modules each extra installs (pyproject.toml [project.optional-dependencies], by import name).
EXTRA_MODULES: dict[str, frozenset[str]] = {
    "images": frozenset({"PIL"}),
    "report": frozenset({"matplotlib", "PIL"}),
    "onnx": frozenset({"onnx", "onnxruntime", "PIL"}),
    "torch": frozenset({"torch", "onnx", "onnxscript", "onnxruntime", "transformers", "safetensors", "PIL"}),
    "edit": frozenset({"torch", "diffusers", "transformers", "huggingface_hub", "safetensors", "PIL"}),
    "ray": frozenset({"ray"}),
    "baselines": frozenset({"captum", "torch"}),  # also scikit-image, scikit-learn: checked by epg attribute
    "tables": frozenset({"pyarrow"}),
    "app": frozenset({"gradio", "gradio_client", "matplotlib", "PIL"}),
}


class MissingExtra(click.ClickException):
    """A command's optional dependencies are not installed: one line, exit code 1."""

    exit_code = 1


def extra_for(module: str | None, extras: Sequence[str]) -> str | None:
    """The first of ``extras`` that installs ``module`` (a dotted name is reduced to its top level), or None."""
    if not module:
        return None
    top = module.split(".", 1)[0]
    return next((extra for extra in extras if top in EXTRA_MODULES[extra]), None)


def needs_extras(command: str, *extras: str) -> Callable[[F], F]:
    """Decorate a command that needs ``extras``: a failed import of theirs exits 1 naming the extra to install."""
    unknown = [e for e in extras if e not in EXTRA_MODULES]
    if unknown or not extras:
        raise ValueError(f"unknown extras {unknown} for epg {command}")

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return func(*args, **kwargs)
            except ModuleNotFoundError as exc:
                extra = extra_for(exc.name, extras)
                if extra is None:
                    raise
                raise MissingExtra(f"epg {command} needs the '{extra}' extra: pip install 'epg[{extra}]'") from None

        return wrapper  # type: ignore[return-value]

    return decorate


def require_extra(command: str, extra: str, modules: Sequence[str] | None = None) -> None:
    """Exit 1 naming ``extra`` unless ``modules`` (default: every module the extra installs) import; for a
    command that needs an extra only for some inputs (``epg score -o scores.parquet``), checked up front."""
    import importlib

    for module in modules if modules is not None else sorted(EXTRA_MODULES[extra]):
        try:
            importlib.import_module(module)
        except ImportError:
            raise MissingExtra(f"epg {command} needs the '{extra}' extra: pip install 'epg[{extra}]'") from None
