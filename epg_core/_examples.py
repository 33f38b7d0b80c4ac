"""Built-in example curves of the paper's Fig. 9 (the `epg demo` table and the README's API example)."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np


class ExampleCurve(NamedTuple):
    """One example behaviour curve with the derivative options the paper uses for it."""

    name: str
    y: np.ndarray
    options: dict[str, Any]
    expected: str


def example_curves(n: int = 92, seed: int = 0) -> list[ExampleCurve]:
    """Noise, sine, step, linear ramp, sigmoid flip, zig-zag (forward differences) and constant curves."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 1.0, n)
    return [
        ExampleCurve("white noise", 0.5 + 0.45 * rng.uniform(-1, 1, n), {}, "not significant"),
        ExampleCurve("sine (no trend)", 0.5 + 0.4 * np.cos(4 * np.pi * t), {}, "EPG significant, Pearson not"),
        ExampleCurve("step", np.where(t < 0.5, 0.9, 0.1), {}, "significant"),
        ExampleCurve("linear ramp", 0.1 + 0.8 * t, {}, "significant"),
        ExampleCurve("sigmoid flip", 1.0 / (1.0 + np.exp((t - 0.6) * 25)), {}, "significant"),
        ExampleCurve("zig-zag", np.where(np.arange(n) % 2 == 0, 0.2, 0.8),
                     {"scheme": "forward", "accuracy": 1}, "significant (forward differences)"),
        ExampleCurve("constant", np.full(n, 0.7), {}, "p = 1"),
    ]
