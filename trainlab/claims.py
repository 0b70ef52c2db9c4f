"""The lecture's claims as checks on measured quantities, and the verdicts compare gives them.

An experiment states its claims in its config (`experiment.claims`, a list of dicts); any
sweep can be judged later with `trainlab compare SWEEP --claims FILE.yaml` (a list of claims):

    - text: ReLU reaches the target train error in at least 2x fewer steps than tanh
      kind: compare              # group a's metric is lower/higher than group b's
      metric: steps_to_target
      a: {activation: relu}
      op: lower                  # lower | higher (a is lower/higher than b)
      b: {activation: tanh}
      factor: 2                  # optional, a ratio: a < b / factor (lower), a > b * factor (higher)
      margin: 0                  # optional, additive: a < b - margin (lower), a > b + margin (higher)
      scale: log                 # optional: log (the default with a factor) or linear
    - text: random search finds a configuration at least as good as the grid (within 0.01)
      kind: compare
      metric: best_val_acc
      a: {search: hparam_search}
      op: at_least               # at_least | at_most: a is not worse than b by more than margin
      b: {search: hparam_grid}
      margin: 0.01               # a tolerance >= 0: a >= b - margin (at_most: a <= b + margin)
    - text: with batch norm, val accuracy stays above 0.8 across init scales
      kind: threshold            # the selected groups' mean is above/below a value
      metric: val_acc
      where: {norm: batch}
      op: above                  # above | below
      value: 0.8
    - text: zero init leaves every unit of a layer identical
      kind: all_jobs             # every job (seed) of the selected groups satisfies metric op value
      metric: metrics.unit_max_diff
      where: {init: zeros}
      op: "<"                    # < | <= | > | >=
      value: 1.0e-6

Selectors (`a`, `b`, `where`) map an override key (`activation`, `optimizer.lr`) or a
`choices` key of summary.json (`data`, `model`) to a value or a list of accepted values;
numbers compare numerically (`optimizer.lr: 0.01` matches `optimizer.lr=1e-2`). An optional
`require: all | any` (default all) says how the verdicts of several matched groups combine.
Metrics, and how never-reached targets and diverged jobs are scored: scores.py.

Verdicts (the statistics: verdict.py; in words: README, "How a verdict is decided"): compare
claims on the interval of the difference a - b (log a - log b with a factor) against the
boundary, threshold claims on the interval of the mean, all_jobs on every job. When a selector
matches several groups, each pair sharing the other overrides (compare), or each group, is a
part with its own verdict; `require: all` is confirmed if all parts are, refuted if any is;
`require: any` confirmed if any is, refuted if all are (Holm-corrected where one part decides).
Cross-sweep claims (`experiment.cross_sweep_claims`, compare.py) see one group per sweep,
`{search: LABEL}`, holding each seed's best completed job.

Code: claim_spec.py checks a claim and selects its groups, claim_judges.py judges each kind's
parts (pairs or groups), this module combines the parts into the claim's verdict.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from trainlab.claim_judges import JUDGES, Part
from trainlab.claim_spec import JOB_OPS, KINDS, GroupLike, check_claim, matches
from trainlab.fmt import fmt_num, fmt_stat, infinite_word, json_num
from trainlab.scores import DERIVED, lower_is_better, metric_value
from trainlab.verdict import CONFIRMED, INCONCLUSIVE, REFUTED, Stat, Test, decide, describe, holm

__all__ = ["CONFIRMED", "DERIVED", "INCONCLUSIVE", "JOB_OPS", "KINDS", "REFUTED", "GroupLike",
           "Stat", "check_claim", "describe", "fmt_num", "fmt_stat", "infinite_word",
           "lower_is_better", "matches", "metric_value"]  # fmt: skip


@dataclass
class ClaimResult:
    text: str
    verdict: str
    detail: str  # one line: the numbers behind the verdict
    numbers: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "verdict": self.verdict,
            "detail": self.detail,
            "numbers": self.numbers,
        }


def evaluate_claims(
    specs: Sequence[Mapping[str, Any]], groups: Sequence[GroupLike]
) -> list[ClaimResult]:
    return [evaluate_claim(spec, groups) for spec in specs or ()]


def evaluate_claim(spec: Mapping[str, Any], groups: Sequence[GroupLike]) -> ClaimResult:
    """One claim's verdict; a malformed claim is inconclusive, with the reason."""
    try:
        claim = check_claim(spec)
    except (ValueError, TypeError) as err:
        return ClaimResult(str(spec.get("text", spec)), INCONCLUSIVE, f"invalid claim: {err}")
    parts = JUDGES[claim["kind"]](claim, groups)
    if isinstance(parts, str):  # no groups to judge
        return ClaimResult(claim["text"], INCONCLUSIVE, parts)
    return _combine(claim, parts)


def _combine(claim: dict, parts: list[Part]) -> ClaimResult:
    """Each part's verdict (Holm over the parts where one part decides), then the claim's."""
    tested = [p for p in parts if p.test is not None]
    p_claim = [p.test.p_claim for p in tested]
    p_other = [p.test.p_other for p in tested]
    if len(tested) > 1:  # one refuted part refutes `all`; one confirmed part confirms `any`
        p_other, p_claim = (
            (holm(p_other), p_claim) if claim["require"] == "all" else (p_other, holm(p_claim))
        )
    for part, pc, po in zip(tested, p_claim, p_other, strict=True):
        part.verdict = decide(pc, po)
        log = claim.get("scale") == "log" and claim["kind"] == "compare"
        part.text += _p_text(part.test, pc, po, len(tested), log)
        part.numbers["test"] = _test_numbers(part, pc, po)
    for part in parts:
        if part.verdict == INCONCLUSIVE and part.test is None and part.why:
            part.text += f"; {part.why}"
    verdicts = [p.verdict for p in parts]
    if claim["require"] == "all":
        ok, bad = all(v == CONFIRMED for v in verdicts), REFUTED in verdicts
    else:
        ok, bad = CONFIRMED in verdicts, all(v == REFUTED for v in verdicts)
    verdict = CONFIRMED if ok else REFUTED if bad else INCONCLUSIVE
    if len(parts) == 1:
        detail = parts[0].text
    else:
        counts = ", ".join(
            f"{verdicts.count(v)} {v}" for v in (CONFIRMED, REFUTED, INCONCLUSIVE) if v in verdicts
        )
        holm_note = f", Holm over {len(tested)}" if len(tested) > 1 else ""
        detail = f"{counts} (require {claim['require']}{holm_note}): " + "; ".join(
            f"[{p.verdict}] {p.text}" for p in parts
        )
    return ClaimResult(
        claim["text"], verdict, detail, [{"verdict": p.verdict, **p.numbers} for p in parts]
    )


def _p_text(test: Test, pc: float, po: float, holm_k: int, log: bool) -> str:
    """', p = 0.004' (the side the data point to), and for an inconclusive part what the seeds
    could detect and how many would resolve it."""
    text = f", {'Holm ' if holm_k > 1 else ''}p = {fmt_num(min(pc, po))}"
    if test.method == "point" or decide(pc, po) != INCONCLUSIVE:
        return "" if test.method == "point" else text
    mde, seeds = test.power()
    if test.method in ("welch", "t"):
        beyond = f"a ratio {fmt_num(math.exp(mde))}x" if log else f"a true effect {fmt_num(mde)}"
        text += f"; these seeds detect {beyond} beyond the boundary (80% power)"
    elif math.isnan(mde):
        text += f"; {test.method} with these seeds cannot reach p < 0.025"
    elif 0.5 + mde < 1:
        text += f"; these seeds detect P(claimed side) >= {0.5 + mde:.2f} (80% power)"
    else:
        text += "; these seeds detect only a complete separation"
    if math.isinf(seeds):
        return text + "; no number of seeds resolves an estimate on the boundary"
    return text + f"; about {int(seeds)} seeds per group would resolve the observed effect"


def _test_numbers(part: Part, pc: float, po: float) -> dict[str, Any]:
    test = part.test
    nums = {"method": test.method, "estimate": test.estimate, "lo": test.lo, "hi": test.hi,
            "p_claim": pc, "p_other": po}  # fmt: skip
    if part.verdict == INCONCLUSIVE:
        nums["mde"], nums["seeds_needed"] = test.power()
    return {k: json_num(v) if isinstance(v, float) else v for k, v in nums.items()}
