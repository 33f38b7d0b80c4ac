"""Entry point of the ``epg`` command group; each sub-module registers its commands."""

from __future__ import annotations

import os

import click

from ._errors import EpgGroup

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# transformers' notices (e.g. "requires torchvision (not installed); falling back to ...") would break the one-line
# output of every command that loads a pipeline; its errors still surface through epg's own messages.
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def _enable_compilation_cache() -> None:
    """JAX's persistent compilation cache, so a second ``epg`` run does not recompile the kernels."""
    import jax

    cache = os.environ.get("EPG_JAX_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "epg", "jax")
    if not _writable_folder(cache):  # JAX would warn on every run; run without the cache instead (silently)
        return
    try:
        jax.config.update("jax_compilation_cache_dir", cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    except (AttributeError, ValueError):  # older JAX: run without the cache
        pass


def _writable_folder(path: str) -> bool:
    """True when ``path`` is (or can be made) a folder this process can write."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        return False
    return os.path.isdir(path) and os.access(path, os.W_OK | os.X_OK)


@click.group(cls=EpgGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="epg")
def cli() -> None:
    """Explain why an image model predicts what it does, by gradual interventions.

    \b
    Example:
        epg demo                      # the whole pipeline on a built-in scenario
        epg score outputs.h5 --class cat
    """
    _enable_compilation_cache()


from . import _baselines, _bench, _core, _intervene, _models, _report, _study  # noqa: E402  (registration)

_core.register(cli)
_report.register(cli)
_bench.register(cli)
_intervene.register(cli)
_models.register(cli)
_study.register(cli)
_baselines.register(cli)

from . import _app  # noqa: E402  (registration: the explorer)

_app.register(cli)
