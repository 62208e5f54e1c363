"""Percentiles, and the units the tables print."""

from __future__ import annotations


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


def us(ns: float) -> str:
    return f"{ns / 1000:.1f} µs"


def ms(ns: float) -> str:
    return f"{ns / 1e6:.2f} ms"
