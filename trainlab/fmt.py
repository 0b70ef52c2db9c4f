"""Numbers as text for tables and verdicts, and as JSON-safe values for claims.json."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from trainlab.scores import NEVER_KEYS
from trainlab.verdict import Stat


def fmt_num(x: float) -> str:
    """About three significant digits; whole numbers (steps, counts) as integers."""
    if math.isinf(x) or math.isnan(x):
        return str(x)
    if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e6):
        return f"{x:.2e}"
    if abs(x) >= 100 or x == int(x):
        return f"{x:.0f}"
    return f"{x:.2f}" if abs(x) >= 1 else f"{x:.3f}"


def fmt_stat(st: Stat, interval: bool = True, word: str = "never") -> str:
    """'140 ± 12 [95% 110, 170]', with '1/3 never' when some seeds never reached the target
    (`word`: what an infinite value is, e.g. 'diverged' for a loss)."""
    if st.n == 0:
        return "–"
    if st.finite == 0:
        return f"{word} ({st.never}/{st.n})"
    num = _fmt_like(st.std, st.mean) if st.finite >= 2 else fmt_num
    text = num(st.mean)
    if st.finite >= 2:
        text += f" ± {num(st.std) if st.std else 0}"
        if interval:
            text += f" [95% {num(st.lo)}, {num(st.hi)}]"
    if st.never:
        text += f", {st.never}/{st.n} {word}"
    return text


def infinite_word(metric: str) -> str:
    """What an infinite value of `metric` means: 'never' (reached, diverged) or 'diverged'."""
    return "never" if metric in NEVER_KEYS or metric.endswith("_to_target") else "diverged"


def _fmt_like(std: float, mean: float) -> Callable[[float], str]:
    """Fixed decimals down to the std's second significant digit: '141.3 ± 9.7', '0.913 ± 0.015'."""
    if not (std > 0 and math.isfinite(std)) or not 1e-3 <= abs(mean) < 1e6:
        return fmt_num
    decimals = min(max(1 - math.floor(math.log10(std)), 0), 6)
    return lambda x: f"{x:.{decimals}f}"


def stat_numbers(st: Stat) -> dict[str, Any]:
    """A Stat as JSON-safe numbers (infinities as the strings 'inf'/'-inf', NaN as null);
    lo/hi: the clipped t-interval over finite values; interval: with infinite values."""
    nums = {k: json_num(getattr(st, k)) for k in ("n", "mean", "std", "lo", "hi", "never")}
    return nums | {"interval": [json_num(x) for x in st.bounds()]}


def json_num(x: float | int) -> float | int | str | None:
    x = float(x) if isinstance(x, float) else x  # numpy floats too
    if isinstance(x, float) and math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return None if isinstance(x, float) and math.isnan(x) else x
