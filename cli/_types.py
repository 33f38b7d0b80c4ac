"""click parameter types shared by every ``epg`` command: a bad value is a usage error (exit 2) naming the option.

One size convention everywhere: ``N`` (a square) or ``WIDTHxHEIGHT``, width first, as image tools write it.
"""

from __future__ import annotations

import json
from typing import Any

import click

__all__ = ["MAX_SIDE", "SIZE", "SizeType", "FloatList", "IntTuple", "Floats3", "NameList", "JsonObject", "FiniteRange"]

#: Largest image side any command accepts (pixels); larger sizes are refused before anything is allocated.
MAX_SIDE = 16_384


class SizeType(click.ParamType):
    """``N`` -> ``(N, N)``; ``WIDTHxHEIGHT`` -> ``(width, height)``; each side in 1 .. ``MAX_SIDE``."""

    name = "N|WIDTHxHEIGHT"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[int, int]:
        if isinstance(value, tuple):
            return value  # type: ignore[return-value]  # already converted (a default)
        text = str(value).strip().lower().replace("×", "x")
        parts = text.split("x")
        try:
            sides = [int(p) for p in parts]
        except ValueError:
            self.fail(f"expected N or WIDTHxHEIGHT (e.g. 224 or 640x480), got {value!r}", param, ctx)
        if len(sides) == 1:
            sides *= 2
        if len(sides) != 2:
            self.fail(f"expected N or WIDTHxHEIGHT (e.g. 224 or 640x480), got {value!r}", param, ctx)
        if not all(1 <= s <= MAX_SIDE for s in sides):
            self.fail(f"each side must lie in 1..{MAX_SIDE}, got {value!r}", param, ctx)
        return sides[0], sides[1]


SIZE = SizeType()


def _split(text: str) -> list[str]:
    return [p.strip() for p in str(text).replace(";", ",").split(",") if p.strip()]


class FloatList(click.ParamType):
    """Comma-separated finite numbers, e.g. ``0,0.25,0.5``; optionally strictly increasing."""

    name = "X,Y,..."

    def __init__(self, *, increasing: bool = False) -> None:
        self.increasing = increasing

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> list[float]:
        if isinstance(value, list):
            return value
        parts = _split(value)
        try:
            numbers = [float(p) for p in parts]
        except ValueError:
            self.fail(f"expected comma-separated numbers, got {value!r}", param, ctx)
        if not numbers:
            self.fail("expected at least one number", param, ctx)
        if any(n != n or n in (float("inf"), float("-inf")) for n in numbers):
            self.fail(f"numbers must be finite, got {value!r}", param, ctx)
        if self.increasing and any(b <= a for a, b in zip(numbers, numbers[1:], strict=False)):
            self.fail(f"numbers must be strictly increasing, got {value!r}", param, ctx)
        return numbers


class IntTuple(click.ParamType):
    """Exactly ``n`` comma-separated integers in ``[low, high]``, e.g. ``X,Y`` or ``R,G,B``."""

    def __init__(self, n: int, low: int | None = None, high: int | None = None, metavar: str = "") -> None:
        self.n, self.low, self.high = n, low, high
        self.name = metavar or ",".join(["N"] * n)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[int, ...]:
        if isinstance(value, tuple):
            return value
        try:
            numbers = tuple(int(p) for p in _split(value))
        except ValueError:
            self.fail(f"expected {self.n} comma-separated integers, got {value!r}", param, ctx)
        if len(numbers) != self.n:
            self.fail(f"expected {self.n} comma-separated integers, got {value!r}", param, ctx)
        if (self.low is not None and min(numbers) < self.low) or (self.high is not None and max(numbers) > self.high):
            self.fail(f"integers must lie in {self.low}..{self.high}, got {value!r}", param, ctx)
        return numbers


class Floats3(click.ParamType):
    """``0.5`` -> ``(0.5, 0.5, 0.5)``; ``0.485,0.456,0.406`` -> a triple (finite; positive with ``positive``)."""

    name = "X[,Y,Z]"

    def __init__(self, *, positive: bool = False) -> None:
        self.positive = positive

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[float, ...]:
        if isinstance(value, tuple):
            return value
        numbers = FloatList().convert(value, param, ctx)
        if len(numbers) == 1:
            numbers *= 3
        if len(numbers) != 3:
            self.fail(f"expected one number or three comma-separated numbers, got {value!r}", param, ctx)
        if self.positive and min(numbers) <= 0:
            self.fail(f"numbers must be > 0, got {value!r}", param, ctx)
        return tuple(numbers)


class NameList(click.ParamType):
    """Comma-separated distinct non-empty names, e.g. ``cat,dog``."""

    name = "A,B,..."

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> list[str]:
        if isinstance(value, list):
            return value
        names = [p.strip() for p in str(value).split(",")]
        if not names or any(not n for n in names):
            self.fail(f"expected comma-separated non-empty names, got {value!r}", param, ctx)
        if len(set(names)) != len(names):
            self.fail(f"names must be distinct, got {value!r}", param, ctx)
        return names


class JsonObject(click.ParamType):
    """A JSON object of keyword arguments, e.g. ``'{"dim": 256}'``."""

    name = "JSON"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> dict[str, Any]:
        if isinstance(value, dict):
            return value
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as exc:
            self.fail(f"not valid JSON ({exc.msg}): {value!r}", param, ctx)
        if not isinstance(parsed, dict):
            self.fail(f"expected a JSON object of keyword arguments, got {value!r}", param, ctx)
        return parsed


class FiniteRange(click.FloatRange):
    """``click.FloatRange`` that also refuses NaN and infinities (which compare false to every bound)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if number != number or number in (float("inf"), float("-inf")):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number
