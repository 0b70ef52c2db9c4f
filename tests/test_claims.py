"""Claim verdicts on constructed groups: every kind confirmed, refuted and inconclusive."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from trainlab.claims import (
    CONFIRMED,
    INCONCLUSIVE,
    REFUTED,
    check_claim,
    describe,
    evaluate_claim,
    metric_value,
)
from trainlab.compare import Group, Job, compare, group_label

# Student t 0.975 quantiles (two-sided 95%), from statistical tables
T_TABLE = {
    1: 12.7062,
    2: 4.3027,
    3: 3.1824,
    4: 2.7764,
    5: 2.5706,
    9: 2.2622,
    29: 2.0452,
    120: 1.9799,
}


def group(params: dict[str, str], summaries: list[dict], choices: dict | None = None) -> Group:
    jobs = [
        Job(
            Path("."),
            params,
            str(i),
            s.get("status", "completed"),
            summary={"choices": choices or {}, **s},
        )
        for i, s in enumerate(summaries)
    ]
    shared = choices or {}
    return Group(group_label(params), params, jobs, {k: str(v) for k, v in shared.items()})


def seeds(metric: str, values: list, **params: str) -> Group:
    """A group of one job per value of `metric` (dotted paths build nested dicts)."""
    summaries = []
    for v in values:
        node = s = {}
        *parents, leaf = metric.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = v
        summaries.append(s)
    return group(params, summaries)


# ---------------------------------------------------------------- statistics


@pytest.mark.parametrize("df", sorted(T_TABLE))
def test_describe_interval_matches_t_tables(df: int) -> None:
    vals = np.arange(df + 1, dtype=float)
    st = describe(vals)
    half = T_TABLE[df] * vals.std(ddof=1) / math.sqrt(len(vals))
    assert (st.lo, st.hi) == pytest.approx((vals.mean() - half, vals.mean() + half), abs=1e-3)


def test_describe_clips_the_interval_to_the_metric_range() -> None:
    st = describe([0.99, 1.0, 0.9], clip=(0.0, 1.0))
    assert st.hi == 1.0 and st.lo < 0.99
    assert describe([10, 200, 5], clip=(0.0, math.inf)).lo == 0.0


def test_describe_matches_numpy() -> None:
    vals = np.array([0.91, 0.87, 0.95, 0.90])
    st = describe([*vals, None, math.nan])
    half = T_TABLE[3] * vals.std(ddof=1) / 2
    assert (st.n, st.missing, st.never) == (4, 2, 0)
    assert st.mean == pytest.approx(vals.mean()) and st.std == pytest.approx(vals.std(ddof=1))
    assert (st.lo, st.hi) == pytest.approx((vals.mean() - half, vals.mean() + half))


def test_never_reached_counts_as_infinity() -> None:
    assert metric_value({"steps_to_target": None}, "steps_to_target") == math.inf
    assert metric_value({}, "steps_to_target") is None  # absent: no measurement, not "never"
    assert metric_value({"val_acc": None}, "val_acc") is None
    st = describe([100, 120, math.inf])
    assert (st.n, st.never, st.finite) == (3, 1, 2)
    assert st.bounds()[1] == math.inf and math.isfinite(st.bounds()[0])
    assert describe([math.inf, math.inf]).bounds() == (math.inf, math.inf)


def test_metric_paths_and_derived() -> None:
    s = {"metrics": {"dead_fraction_max": 0.25}, "train_acc": 0.9, "val_acc": 0.7}
    assert metric_value(s, "metrics.dead_fraction_max") == 0.25
    assert metric_value(s, "metrics.nope") is None
    assert metric_value(s, "acc_gap") == pytest.approx(0.2)
    assert metric_value(s, "train_error") == pytest.approx(0.1)


# ---------------------------------------------------------------- compare claims

FASTER = {
    "text": "relu reaches the target in at least 2x fewer steps than tanh",
    "kind": "compare", "metric": "steps_to_target", "op": "lower", "factor": 2,
    "a": {"activation": "relu"}, "b": {"activation": "tanh"},
}  # fmt: skip


def steps(relu: list, tanh: list, **other: str) -> list[Group]:
    return [
        seeds("steps_to_target", relu, activation="relu", **other),
        seeds("steps_to_target", tanh, activation="tanh", **other),
    ]


def test_compare_confirmed_with_ratio() -> None:
    r = evaluate_claim(FASTER, steps([130, 140, 150], [600, 610, 620]))
    assert r.verdict == CONFIRMED
    assert "activation=relu 140" in r.detail and "ratio a/b 0.229 [95% 0.194, 0.271]" in r.detail
    assert "claimed a/b < 0.500" in r.detail  # judged on log a - log b against log(1/2)
    assert r.numbers[0]["a"]["n"] == 3 and r.numbers[0]["b"]["mean"] == pytest.approx(610)
    assert r.numbers[0]["test"]["method"] == "welch" and r.numbers[0]["test"]["p_claim"] < 0.025


def test_compare_refuted_when_intervals_separate_the_wrong_way() -> None:
    r = evaluate_claim(FASTER, steps([400, 410, 420], [600, 610, 620]))  # faster, but not 2x
    assert r.verdict == REFUTED


def test_compare_inconclusive_on_overlap_and_on_too_few_seeds() -> None:
    overlap = evaluate_claim(FASTER, steps([100, 300, 500], [600, 700, 800]))
    assert overlap.verdict == INCONCLUSIVE and "ratio a/b 0.355 [95% 0.050, 2.53]" in overlap.detail
    assert "seeds per group would resolve" in overlap.detail
    test = overlap.numbers[0]["test"]
    assert test["mde"] > 0 and test["seeds_needed"] > 3
    few = evaluate_claim(FASTER, steps([10], [600, 610, 620]))
    assert few.verdict == INCONCLUSIVE and "too few seeds" in few.detail
    missing = evaluate_claim(FASTER, steps([10, 20], [600, 610])[:1])
    assert missing.verdict == INCONCLUSIVE and "no group matches b" in missing.detail


def test_compare_never_reached_is_worse_than_any_number() -> None:
    """ "Never" is +inf: judged by ranks, which need 4 seeds a side to reach p < 0.025."""
    five = evaluate_claim(FASTER, steps([130, 150, 140, 135, 160], [None] * 5))
    assert five.verdict == CONFIRMED and "by ranks" in five.detail
    assert evaluate_claim(FASTER, steps([None] * 4, [600, 610, 605, 620])).verdict == REFUTED
    mixed = evaluate_claim(FASTER, steps([130, 150, None, 140, 145], [600, 610, 620, 630, 640]))
    assert mixed.verdict == INCONCLUSIVE and "seeds per group would resolve" in mixed.detail
    few = evaluate_claim(FASTER, steps([130, 150, 140], [None] * 3))
    assert few.verdict == INCONCLUSIVE and "cannot reach p < 0.025" in few.detail
    both = evaluate_claim(FASTER, steps([None, None], [None, None]))
    assert both.verdict == INCONCLUSIVE and "never (2/2)" in both.detail


def test_compare_higher_with_margin() -> None:
    claim = {
        "kind": "compare",
        "metric": "val_acc",
        "a": {"norm": "batch"},
        "op": "higher",
        "b": {"norm": "none"},
    }
    groups = [
        seeds("val_acc", [0.90, 0.91, 0.92], norm="batch"),
        seeds("val_acc", [0.80, 0.81, 0.82], norm="none"),
    ]
    assert evaluate_claim(claim, groups).verdict == CONFIRMED
    assert "difference a - b 0.100 [95% 0.077, 0.123]" in evaluate_claim(claim, groups).detail
    assert evaluate_claim({**claim, "margin": 0.2}, groups).verdict == REFUTED


AT_LEAST = {
    "text": "random search is at least as good as the grid (within 0.01)",
    "kind": "compare", "metric": "best_val_acc", "op": "at_least", "margin": 0.01,
    "a": {"search": "random"}, "b": {"search": "grid"},
}  # fmt: skip


def searches(random: list[float], grid: list[float]) -> list[Group]:
    return [
        seeds("best_val_acc", random, search="random"),
        seeds("best_val_acc", grid, search="grid"),
    ]


@pytest.mark.parametrize(
    "random, grid, verdict, why",
    [
        ([0.85, 0.86, 0.87], [0.80, 0.81, 0.82], CONFIRMED, "difference a - b 0.050"),
        # same values: higher cannot confirm, at_least can (the difference within the tolerance)
        ([0.820, 0.821, 0.822], [0.820, 0.821, 0.822], CONFIRMED, "claimed a - b > -0.010"),
        ([0.70, 0.71, 0.72], [0.80, 0.81, 0.82], REFUTED, "difference a - b -0.100"),
        # an interval that reaches past the tolerance is no evidence of "as good": inconclusive
        ([0.80, 0.85, 0.90], [0.82, 0.83, 0.84], INCONCLUSIVE, "[95% -0.098, 0.138]"),
        ([0.90, 0.90], [0.80], INCONCLUSIVE, "too few seeds"),
    ],
)
def test_at_least_is_non_inferiority_within_the_margin(
    random: list, grid: list, verdict: str, why: str
) -> None:
    r = evaluate_claim(AT_LEAST, searches(random, grid))
    assert r.verdict == verdict and why in r.detail, r.detail


@pytest.mark.parametrize(
    "random, grid, verdict",
    [
        ([0.85, 0.86, 0.87], [0.80, 0.81, 0.82], CONFIRMED),
        ([0.820, 0.821, 0.822], [0.820, 0.821, 0.822], INCONCLUSIVE),
    ],
)
def test_at_least_with_margin_0_is_higher(random: list, grid: list, verdict: str) -> None:
    groups = searches(random, grid)
    assert evaluate_claim({**AT_LEAST, "margin": 0}, groups).verdict == verdict
    assert evaluate_claim({**AT_LEAST, "op": "higher", "margin": 0}, groups).verdict == verdict


def test_at_most_mirrors_at_least_for_lower_is_better() -> None:
    claim = {**AT_LEAST, "metric": "steps_to_target", "op": "at_most", "margin": 10}

    def verdict(random: list, grid: list) -> str:
        groups = [
            seeds("steps_to_target", random, search="random"),
            seeds("steps_to_target", grid, search="grid"),
        ]
        return evaluate_claim(claim, groups).verdict

    assert verdict([100, 101, 102], [100, 101, 102]) == CONFIRMED
    assert verdict([200, 201, 202], [100, 101, 102]) == REFUTED
    assert verdict([100, 150, 200], [100, 101, 102]) == INCONCLUSIVE


def test_compare_pairs_share_the_other_overrides() -> None:
    groups = steps([100, 101, 102], [600, 601, 602], **{"optimizer.lr": "0.01"})
    groups += steps([100, 101, 102], [150, 151, 152], **{"optimizer.lr": "0.1"})  # not 2x at 0.1
    r = evaluate_claim(FASTER, groups)
    assert r.verdict == REFUTED and len(r.numbers) == 2  # two pairs, never relu@0.01 vs tanh@0.1
    assert [n["verdict"] for n in r.numbers] == [CONFIRMED, REFUTED]
    assert "optimizer.lr=0.01: " in r.detail and "1 confirmed, 1 refuted" in r.detail
    assert evaluate_claim({**FASTER, "require": "any"}, groups).verdict == CONFIRMED


def test_selectors_match_numbers_lists_and_choices() -> None:
    groups = [
        group(
            {"optimizer.lr": "1e-2"},
            [{"val_acc": 0.9}, {"val_acc": 0.91}],
            choices={"data": "digits"},
        ),
        group(
            {"optimizer.lr": "0.1"},
            [{"val_acc": 0.5}, {"val_acc": 0.51}],
            choices={"data": "digits"},
        ),
    ]
    claim = {
        "kind": "compare",
        "metric": "val_acc",
        "op": "higher",
        "a": {"optimizer.lr": 0.01},
        "b": {"optimizer.lr": [0.1, 1.0]},
    }
    assert evaluate_claim(claim, groups).verdict == CONFIRMED
    by_choice = {
        "kind": "threshold",
        "metric": "val_acc",
        "where": {"data": "digits"},
        "op": ">",
        "value": 0.1,
    }
    r = evaluate_claim(by_choice, groups)
    assert r.verdict == CONFIRMED and len(r.numbers) == 2


# ---------------------------------------------------------------- threshold claims

ABOVE = {
    "text": "BN keeps val acc above 0.8",
    "kind": "threshold",
    "metric": "val_acc",
    "where": {"norm": "batch"},
    "op": "above",
    "value": 0.8,
}


@pytest.mark.parametrize(
    "values, verdict, why",
    [
        ([0.90, 0.91, 0.92], CONFIRMED, ""),
        ([0.50, 0.52, 0.51], REFUTED, ""),
        ([0.70, 0.85, 0.95], INCONCLUSIVE, "0.83 ± 0.13 [95% 0.52, 1.00]"),  # clipped at 1
        ([0.95], INCONCLUSIVE, "too few seeds"),
    ],
)
def test_threshold(values: list, verdict: str, why: str) -> None:
    r = evaluate_claim(
        ABOVE, [seeds("val_acc", values, norm="batch"), seeds("val_acc", [0.1, 0.1], norm="none")]
    )
    assert r.verdict == verdict and why in r.detail
    assert len(r.numbers) == 1  # norm=none is not selected


def test_threshold_across_init_scales_any_refuted_refutes() -> None:
    groups = [
        seeds("val_acc", vals, norm="batch", **{"init.std": s})
        for s, vals in (("0.01", [0.9, 0.91]), ("1.0", [0.3, 0.31]))
    ]
    assert evaluate_claim(ABOVE, groups).verdict == REFUTED


def test_threshold_below_with_never() -> None:
    claim = {
        "kind": "threshold",
        "metric": "steps_to_target",
        "where": {},
        "op": "below",
        "value": 500,
    }
    assert evaluate_claim(claim, [seeds("steps_to_target", [100, 120])]).verdict == CONFIRMED
    assert evaluate_claim(claim, [seeds("steps_to_target", [100, None])]).verdict == INCONCLUSIVE
    assert evaluate_claim(claim, [seeds("steps_to_target", [None, None])]).verdict == REFUTED


# ---------------------------------------------------------------- all_jobs claims

IDENTICAL = {
    "text": "zero init leaves every unit identical",
    "kind": "all_jobs",
    "metric": "metrics.unit_max_diff",
    "where": {"init": "zeros"},
    "op": "<",
    "value": 1e-6,
}


@pytest.mark.parametrize(
    "values, verdict, why",
    [
        ([0.0, 1e-9, 0.0], CONFIRMED, "3/3 jobs < 1.00e-06"),
        ([0.0, 0.3, 0.0], REFUTED, "2/3 jobs"),
        ([0.0], INCONCLUSIVE, "too few seeds"),
        ([0.0, 0.0, None], INCONCLUSIVE, "without a value"),
    ],
)
def test_all_jobs(values: list, verdict: str, why: str) -> None:
    r = evaluate_claim(IDENTICAL, [seeds("metrics.unit_max_diff", values, init="zeros")])
    assert r.verdict == verdict and why in r.detail


DIVERGES = {
    "text": "lr 1e6 diverges",
    "kind": "all_jobs",
    "metric": "diverged",
    "where": {"optimizer.lr": 1e6},
    "op": ">=",
    "value": 1,
}


def test_diverged_is_derived_from_the_status() -> None:
    assert metric_value({"status": "diverged", "val_acc": 0.1}, "diverged") == 1.0
    assert metric_value({"status": "completed"}, "diverged") == 0.0
    assert metric_value({}, "diverged") is None  # no status: no measurement


@pytest.mark.parametrize(
    "statuses, verdict, why",
    [
        (["diverged", "diverged", "diverged"], CONFIRMED, "3/3 jobs >= 1"),
        (["diverged", "completed", "diverged"], REFUTED, "2/3 jobs >= 1 (worst 0)"),
        (["diverged"], INCONCLUSIVE, "too few seeds"),
    ],
)
def test_all_jobs_diverged(statuses: list[str], verdict: str, why: str) -> None:
    summaries = [{"status": s, "val_acc": 0.1} for s in statuses]
    r = evaluate_claim(DIVERGES, [group({"optimizer.lr": "1000000.0"}, summaries)])
    assert r.verdict == verdict and why in r.detail


def test_all_jobs_never_fails_an_upper_bound() -> None:
    claim = {
        "kind": "all_jobs",
        "metric": "steps_to_target",
        "where": {},
        "op": "<=",
        "value": 1000,
    }
    assert evaluate_claim(claim, [seeds("steps_to_target", [10, None])]).verdict == REFUTED


# ---------------------------------------------------------------- schema


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"kind": "vibes", "metric": "x"}, "kind must be one of"),
        ({"kind": "compare", "metric": "x", "a": {}, "op": "lower"}, "needs 'b'"),
        (
            {"kind": "threshold", "metric": "x", "where": {}, "op": "sideways", "value": 1},
            "op must be",
        ),
        (
            {"kind": "all_jobs", "metric": "x", "where": {}, "op": "lower-ish", "value": 1},
            "op must be",
        ),
        (
            {"kind": "threshold", "metric": "x", "where": "relu", "op": "<", "value": 1},
            "must be a mapping",
        ),
        (
            {"kind": "compare", "metric": "x", "a": {}, "b": {}, "op": "<", "factor": 0},
            "factor must be > 0",
        ),
        (
            {"kind": "compare", "metric": "x", "a": {}, "b": {}, "op": "at_least", "margin": -1},
            "margin is a tolerance",
        ),
        (
            {"kind": "threshold", "metric": "x", "where": {}, "op": "at_least", "value": 1},
            "op must be",
        ),
    ],
)
def test_check_claim_rejects_malformed(bad: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_claim(bad)
    r = evaluate_claim(bad, [])
    assert r.verdict == INCONCLUSIVE and r.detail.startswith("invalid claim")


def test_check_claim_normalises_ops() -> None:
    assert (
        check_claim({"kind": "compare", "metric": "m", "a": {}, "b": {}, "op": "<"})["op"]
        == "lower"
    )
    assert (
        check_claim({"kind": "threshold", "metric": "m", "where": {}, "op": ">=", "value": 1})["op"]
        == "higher"
    )
    assert (
        check_claim({"kind": "all_jobs", "metric": "m", "where": {}, "op": "below", "value": 1})[
            "op"
        ]
        == "<"
    )


# ---------------------------------------------------------------- end to end


def test_claims_json_from_a_sweep(tmp_path: Path) -> None:
    """All three kinds through compare: claims.json carries verdict, detail and numbers."""
    from test_compare import make_job, summary

    exp = {
        "name": "e",
        "claims": [
            FASTER,
            {**ABOVE, "where": {"activation": "tanh"}},
            {**IDENTICAL, "where": {"activation": "relu"}},
        ],
    }
    data = {"relu": ([130, 140, 150, 135], 0.9, 0.0), "tanh": ([600, 610, None, 620], 0.6, 0.2)}
    for act, (ss, acc, diff) in data.items():
        for seed, s in enumerate(ss):
            extra = {"steps_to_target": s, "metrics": {"unit_max_diff": diff}}
            make_job(
                tmp_path,
                [f"activation={act}", f"seed={seed}"],
                summary(acc + seed / 100, **extra),
                experiment=exp,
            )
    compare(tmp_path)
    claims = json.loads((tmp_path / "claims.json").read_text())
    assert [c["verdict"] for c in claims] == [CONFIRMED, REFUTED, CONFIRMED]
    b = claims[0]["numbers"][0]["b"]
    assert (b["never"], b["interval"][1]) == (1, "inf")  # with never = +inf
    assert math.isfinite(b["hi"])  # the t-interval over the seeds that reached the target
    assert claims[0]["numbers"][0]["test"]["method"] == "ranks"  # never: judged by ranks
    assert all(c["text"] and c["detail"] for c in claims)


# ---------------------------------------------------------------- every job counts


def test_a_diverged_job_scores_the_worst_case() -> None:
    from trainlab.scores import job_value, metric_range

    div = {"status": "diverged", "num_classes": 10, "initial_loss": 2.3, "steps_to_target": 40}
    assert job_value(div, "val_acc") == pytest.approx(0.1)  # chance, never dropped
    assert job_value(div, "train_error") == pytest.approx(0.9)
    assert job_value(div, "train_loss") == math.inf and job_value(div, "acc_gap") == math.inf
    assert job_value(div, "initial_loss") == 2.3  # measured before it blew up: kept
    assert job_value(div, "steps_to_target") == 40  # reached the target before diverging
    assert job_value(div, "metrics.dead_fraction_max") is None  # not an outcome: no value
    assert job_value({"status": "diverged"}, "val_acc") == -math.inf  # no C: judged by ranks
    assert job_value({"status": "completed"}, "diverged_at_step") == math.inf  # never diverged
    assert metric_range("val_acc") == (0, 1) and metric_range("steps_to_target")[0] == 0
    assert metric_range("metrics.act_std_ratio_last_first") == (0, math.inf)


def test_bn_beats_a_plain_net_that_diverged() -> None:
    """The plain net diverges at lr 1 in every seed: scored at chance, BN's win is confirmed."""
    claim = {"kind": "compare", "metric": "val_acc", "op": "higher",
             "a": {"norm": "batch"}, "b": {"norm": "none"}}  # fmt: skip
    bn = group({"norm": "batch"}, [{"val_acc": v} for v in (0.90, 0.93, 0.91)])
    plain = group({"norm": "none"}, [{"status": "diverged", "num_classes": 10}] * 3)
    r = evaluate_claim(claim, [bn, plain])
    assert r.verdict == CONFIRMED and "3 diverged, scored as the worst case" in r.detail
    loss = {**claim, "metric": "train_loss", "op": "lower"}  # +inf loss: judged by ranks
    bn_loss = group({"norm": "batch"}, [{"train_loss": v} for v in (0.1, 0.2, 0.15, 0.12)])
    plain4 = group({"norm": "none"}, [{"status": "diverged", "num_classes": 10}] * 4)
    r = evaluate_claim(loss, [bn_loss, plain4])
    assert r.verdict == CONFIRMED and "by ranks" in r.detail and "diverged (4/4)" in r.detail


def test_holm_guards_a_claim_refuted_by_one_of_many_pairs() -> None:
    """Seven pairs with no true effect: one pair a little the wrong way does not refute `all`
    once Holm corrects for the seven chances."""
    claim = {"kind": "compare", "metric": "val_acc", "op": "higher",
             "a": {"aug": [f"x{i}" for i in range(7)]}, "b": {"aug": "none"}}  # fmt: skip
    groups = [group({"aug": "none"}, [{"val_acc": v} for v in (0.50, 0.52, 0.51)])]
    groups += [
        group({"aug": f"x{i}"}, [{"val_acc": v} for v in (0.50, 0.53, 0.51)]) for i in range(6)
    ]
    groups += [group({"aug": "x6"}, [{"val_acc": v} for v in (0.47, 0.485, 0.48)])]
    r = evaluate_claim(claim, groups)
    adjusted = [n["test"]["p_other"] for n in r.numbers]  # Holm-adjusted: none below 0.025
    assert r.verdict == INCONCLUSIVE and "Holm over 7" in r.detail and min(adjusted) >= 0.025
    single = evaluate_claim({**claim, "a": {"aug": "x6"}}, groups)  # that pair alone: refuted
    assert single.verdict == REFUTED and single.numbers[0]["test"]["p_other"] < 0.025
