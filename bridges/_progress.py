"""The one progress mechanism of ``epg_bridges``: a callback ``progress(done, total)``.

Long-running functions (designed edits, frames, diffusion edits, predict, sweeps) take
``progress: Progress | None`` and call it with the number of finished units and the total after each unit
(a sweep's first call counts the checkpoints skipped because they were already stored). The library never
draws bars itself: the CLI turns the calls into a tqdm bar, a notebook or a server into whatever it likes.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["Progress", "Counter"]

#: ``progress(done, total)``: ``done`` of ``total`` units are finished.
Progress = Callable[[int, int], None]


class Counter:
    """Counts finished units and reports them to an optional :data:`Progress` callback."""

    def __init__(self, progress: Progress | None, total: int, done: int = 0) -> None:
        self.progress, self.total, self.done = progress, int(total), int(done)
        if progress is not None:
            progress(self.done, self.total)

    def add(self, n: int = 1) -> None:
        """``n`` more units are finished."""
        self.done += int(n)
        if self.progress is not None:
            self.progress(self.done, self.total)
