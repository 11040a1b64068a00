"""What the fuzzers share: a tally of how each method fared, and how a case and the totals
are printed."""

from __future__ import annotations


def tally(names) -> dict[str, dict[str, int]]:
    """``{name: {'ran': 0, 'refused': 0, 'failed': 0}}`` for each method or check."""
    return {name: {"ran": 0, "refused": 0, "failed": 0} for name in names}


def print_failed(i: int, what: str, bad: list[str]) -> None:
    """One case's failures, under the case's description."""
    print(f"case {i}: FAILED {what}")
    for b in bad:
        print("   ", b)


def print_totals(cases: int, noun: str, failures: int, counts: dict[str, dict[str, int]]) -> None:
    """``N <noun>, F with a failure`` and a line per method."""
    print(f"\n{cases} {noun}, {failures} with a failure")
    for m, c in counts.items():
        print(f"  {m:16s} ran {c['ran']:4d}  refused {c['refused']:4d}  failed {c['failed']:4d}")
