"""projections/ab.py against statsmodels / scipy, the verdict's gates (each with a
negative control), and the output against its JSON Schema."""

import copy
import json
import math
import warnings

import jsonschema_rs
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from scipy import integrate, stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_confint,
    proportions_ztest,
)

from projections import ab
from projections.ab import AB_RESULT_SCHEMA, AbConfig, ab_statistics

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LEVELS = st.sampled_from([0.8, 0.9, 0.95, 0.99, 0.999])
VALIDATOR = jsonschema_rs.Draft202012Validator(AB_RESULT_SCHEMA)


def close(a, b, rel=1e-9, abs_=1e-12):
    return math.isclose(a, b, rel_tol=rel, abs_tol=abs_)


@st.composite
def two_arms(draw, max_n=20_000):
    n1 = draw(st.integers(1, max_n))
    n2 = draw(st.integers(1, max_n))
    return draw(st.integers(0, n1)), n1, draw(st.integers(0, n2)), n2


def assert_valid_json(result):
    text = json.dumps(result, allow_nan=False)  # raises on NaN / inf
    errors = [e.message for e in VALIDATOR.iter_errors(json.loads(text))]
    assert not errors, errors


# --- reference values ----------------------------------------------------------


@FAST
@given(df=st.integers(1, 400), x=st.floats(0, 3000, allow_nan=False))
def test_chi2_sf_matches_scipy(df, x):
    expected = stats.chi2.sf(x, df)
    assume(expected > 1e-290)  # below that both are zero or denormal
    assert close(ab.chi2_sf(x, df), expected), (ab.chi2_sf(x, df), expected)


def test_chi2_sf_far_tails_and_integers():
    for x, df in [(1e-8, 1), (0.5, 1), (100.0, 1), (700.0, 3), (3.0, 250), (400.0, 250)]:
        assert close(ab.chi2_sf(x, df), stats.chi2.sf(x, df)), (x, df)
    assert ab.chi2_sf(0.0, 4) == 1.0


@FAST
@given(arms=two_arms(100_000), level=LEVELS)
def test_wilson_matches_statsmodels(arms, level):
    s, n, _, _ = arms
    low, high = ab.wilson_interval(s, n, level)
    ref_low, ref_high = proportion_confint(s, n, alpha=1 - level, method="wilson")
    assert close(low, ref_low) and close(high, ref_high)
    assert 0.0 - 1e-15 <= low <= s / n <= high <= 1.0 + 1e-15


@FAST
@given(arms=two_arms(), level=LEVELS)
def test_newcombe_matches_statsmodels(arms, level):
    s1, n1, s2, n2 = arms
    low, high = ab.newcombe_interval(s1, n1, s2, n2, level)
    ref = confint_proportions_2indep(
        s1, n1, s2, n2, method="newcomb", compare="diff", alpha=1 - level
    )
    assert close(low, ref[0]) and close(high, ref[1])


@FAST
@given(arms=two_arms())
def test_pooled_z_matches_statsmodels_and_pearson_chi2(arms):
    s1, n1, s2, n2 = arms
    assume(0 < s1 + s2 < n1 + n2)
    z, p = ab.pooled_z_test(s1, n1, s2, n2)
    ref_z, ref_p = proportions_ztest([s1, s2], [n1, n2])
    assert close(z, ref_z) and close(p, ref_p, abs_=1e-300)
    chi2, chi_p, _, _ = stats.chi2_contingency([[s1, n1 - s1], [s2, n2 - s2]], correction=False)
    assert close(z * z, chi2) and close(p, chi_p, abs_=1e-300)


def test_pooled_z_none_without_variance():
    assert ab.pooled_z_test(0, 10, 0, 10) is None
    assert ab.pooled_z_test(10, 10, 5, 5) is None
    assert ab.pooled_z_test(0, 0, 1, 5) is None


@settings(max_examples=300, deadline=None)
@given(
    a=st.integers(0, 60), b=st.integers(0, 60), c=st.integers(0, 60), d=st.integers(0, 60)
)
def test_fisher_matches_scipy(a, b, c, d):
    expected = stats.fisher_exact([[a, b], [c, d]]).pvalue
    assert close(ab.fisher_exact_two_sided(a, b, c, d), expected), expected


def test_fisher_large_tables_and_ties():
    tables = [(3, 4997, 9, 4991), (0, 10_000, 7, 9_993), (1, 3, 3, 1), (5, 5, 5, 5), (2, 0, 0, 2)]
    for table in tables:
        expected = stats.fisher_exact([table[:2], table[2:]]).pvalue
        assert close(ab.fisher_exact_two_sided(*table), expected), (table, expected)


@settings(max_examples=40, deadline=None)  # multipletests takes ~30 ms a call
@given(st.lists(st.floats(0, 1), min_size=1, max_size=12))
def test_holm_matches_statsmodels(p_values):
    ref = multipletests(p_values, method="holm")[1]
    assert all(close(x, y) for x, y in zip(ab.holm(p_values), ref, strict=True))


@FAST
@given(
    sent=st.lists(st.integers(0, 50_000), min_size=2, max_size=6),
    weights=st.lists(st.integers(1, 9), min_size=6, max_size=6),
)
def test_sample_ratio_matches_scipy_chisquare(sent, weights):
    assume(sum(sent) > 0)
    names = [f"v{i}" for i in range(len(sent))]
    split = {name: float(w) for name, w in zip(names, weights, strict=False)}
    result = ab_statistics(
        {name: {"sent": n} for name, n in zip(names, sent, strict=True)}, AbConfig(split=split)
    )["sample_ratio"]
    total = sum(sent)
    expected = [total * split[n] / sum(split.values()) for n in names]
    ref = stats.chisquare(sent, expected)
    assert close(result["statistic"], ref.statistic)
    assert close(result["p_value"], ref.pvalue, abs_=1e-290)
    assert result["flagged"] == (ref.pvalue < 0.001)


def test_sample_ratio_edge_cases():
    assert ab_statistics({"A": {"sent": 5}})["sample_ratio"]["reason"] == "fewer than two variants"
    empty = ab_statistics({"A": {}, "B": {}})["sample_ratio"]
    assert empty["p_value"] is None and empty["reason"] == "no sends yet"
    # A planned arm that got nothing is a mismatch; so are sends outside the plan.
    planned = ab_statistics({"A": {"sent": 500}}, AbConfig(split={"A": 1, "B": 1}))
    assert planned["sample_ratio"]["flagged"]
    outside = ab_statistics({"A": {"sent": 5}, "C": {"sent": 5}}, AbConfig(split={"A": 1, "B": 1}))
    assert outside["sample_ratio"]["flagged"] and "C" in outside["sample_ratio"]["reason"]


# --- mSPRT, checked by integrating the likelihood ratio over the mixing prior ----


def mixture_by_quadrature(theta_hat, var, tau2, lower=-math.inf):
    # Lambda = E_{theta ~ N(0, tau2)}[LR(theta)], LR of N(theta, var) vs N(0, var) at theta_hat;
    # one-sided: the half-normal prior on theta > 0.
    sd = math.sqrt(tau2)

    # Returns log Lambda; the integrand is scaled by its value at the mode.
    peak = theta_hat * tau2 / (var + tau2)  # the integrand's mode
    spread = math.sqrt(var * tau2 / (var + tau2))

    def log_integrand(theta):
        return (theta * theta_hat - theta * theta / 2) / var + stats.norm.logpdf(theta, 0, sd)

    top = log_integrand(max(lower, peak))
    lo = max(lower, peak - 40 * spread)
    value = integrate.quad(lambda t: math.exp(log_integrand(t) - top), lo, peak + 40 * spread,
                           points=[max(lo, peak)], epsabs=0, epsrel=1e-12, limit=200)[0]
    return math.log(value * (2 if lower == 0 else 1)) + top


def p_from_log(log_lam):
    return 1.0 if log_lam <= 0 else math.exp(-log_lam)


@settings(max_examples=60, deadline=None)
@given(arms=two_arms(5_000), tau2=st.sampled_from([1e-5, 1e-4, 1e-3]))
def test_msprt_matches_quadrature(arms, tau2):
    s1, n1, s2, n2 = arms
    pooled = (s1 + s2) / (n1 + n2)
    var = pooled * (1 - pooled) * (1 / n1 + 1 / n2)
    assume(var > 0)
    theta_hat = s1 / n1 - s2 / n2
    log_lam = mixture_by_quadrature(theta_hat, var, tau2)
    assume(log_lam < 600)  # p below 1e-260: both underflow the same way
    assert close(ab.msprt_p_value(s1, n1, s2, n2, tau2), p_from_log(log_lam), rel=1e-7)
    log_plus = mixture_by_quadrature(theta_hat, var, tau2, lower=0)
    assert close(ab.msprt_p_value_greater(s1, n1, s2, n2, tau2), p_from_log(log_plus), rel=1e-7)


@settings(max_examples=40, deadline=None)
@given(arms=two_arms(5_000), level=st.sampled_from([0.9, 0.95, 0.99]))
def test_msprt_interval_endpoints_have_the_bound_likelihood_ratio(arms, level):
    s1, n1, s2, n2 = arms
    tau2 = 1e-4
    low, high = ab.msprt_interval(s1, n1, s2, n2, tau2, level)
    r1, r2 = (s1 + 0.5) / (n1 + 1), (s2 + 0.5) / (n2 + 1)
    var = r1 * (1 - r1) / n1 + r2 * (1 - r2) / n2
    diff = s1 / n1 - s2 / n2
    for end in (low, high):
        if abs(end) < 1:  # not clipped to [-1, 1]
            # The null theta = end is just rejected: Lambda(diff - end) = 1 / (1 - level).
            log_lam = mixture_by_quadrature(diff - end, var, tau2)
            assert close(log_lam, -math.log(1 - level), rel=1e-7)
    assert low <= diff <= high


def test_always_valid_is_more_cautious_than_fixed_horizon():
    # 10 % vs 14 % on 1,000 each: the fixed test says p < 0.01, the always-valid one does not.
    z_p = ab.pooled_z_test(140, 1000, 100, 1000)[1]
    av_p = ab.msprt_p_value(140, 1000, 100, 1000, 1e-4)
    assert z_p < 0.01 < 0.05 < av_p
    assert ab.msprt_p_value(0, 50, 0, 50, 1e-4) == 1.0


# --- ab_statistics: shape, edge cases -------------------------------------------

COUNTS = st.fixed_dictionaries(
    {},
    optional={
        key: st.integers(0, 3000)
        for key in ("sent", "delivered", "failed", "pending", "unique_repliers",
                    "unique_link_clicks", "unique_human_link_clicks", "opt_outs")
    },
)


@settings(max_examples=80, deadline=None)
@given(
    variants=st.dictionaries(st.sampled_from("ABCD"), COUNTS, max_size=4),
    level=LEVELS,
    control=st.sampled_from([None, "B", "Z"]),
)
def test_any_counts_give_schema_valid_output_matching_the_references(variants, level, control):
    result = ab_statistics(variants, AbConfig(level=level, control=control))
    assert_valid_json(result)
    by_name = {v["variant"]: v for v in result["variants"]}
    assert set(by_name) == set(variants)
    for comparison in result["comparisons"]:
        for metric, entry in comparison["metrics"].items():
            s1 = by_name[comparison["variant"]]["metrics"][metric]["successes"]
            n1 = by_name[comparison["variant"]]["metrics"][metric]["trials"]
            s2 = by_name[comparison["control"]]["metrics"][metric]["successes"]
            n2 = by_name[comparison["control"]]["metrics"][metric]["trials"]
            if n1 == 0 or n2 == 0:
                assert entry["skipped"] and entry["p_value"] is None and entry["interval"] is None
                continue
            low, high = confint_proportions_2indep(
                s1, n1, s2, n2, method="newcomb", compare="diff", alpha=1 - level)
            assert close(entry["interval"]["low"], low) and close(entry["interval"]["high"], high)
            table = [[s1, n1 - s1], [s2, n2 - s2]]
            expected_cells = stats.contingency.expected_freq(table)
            if expected_cells.min() < 5:
                assert entry["test"] == "fisher_exact"
                assert close(entry["p_value"], stats.fisher_exact(table).pvalue)
            else:
                assert entry["test"] == "pooled_z"
                assert close(entry["p_value"], proportions_ztest([s1, s2], [n1, n2])[1],
                             abs_=1e-300)
        if len(variants) <= 2:
            assert all(e["p_value_holm"] is None for e in comparison["metrics"].values())


def test_holm_across_three_arms():
    variants = {
        "A": {"sent": 2000, "unique_link_clicks": 200},
        "B": {"sent": 2000, "unique_link_clicks": 245},
        "C": {"sent": 2000, "unique_link_clicks": 260},
    }
    result = ab_statistics(variants)
    assert_valid_json(result)
    raw = [c["metrics"]["click_rate"]["p_value"] for c in result["comparisons"]]
    holm = [c["metrics"]["click_rate"]["p_value_holm"] for c in result["comparisons"]]
    assert all(close(x, y) for x, y in zip(holm, multipletests(raw, method="holm")[1], strict=True))
    assert [c["variant"] for c in result["comparisons"]] == ["B", "C"]


def test_zero_sent_does_not_crash():
    result = ab_statistics({"A": {"sent": 0}, "B": {}})
    assert_valid_json(result)
    metric = result["variants"][0]["metrics"]["click_rate"]
    assert metric == {"successes": 0, "trials": 0, "rate": None, "interval": None}
    entry = result["comparisons"][0]["metrics"]["click_rate"]
    assert entry["p_value"] is None and entry["always_valid_p_value"] is None
    assert "A" in entry["skipped"] and "B" in entry["skipped"]
    assert result["verdict"]["status"] == "no_winner_yet"


def test_zero_and_all_successes():
    result = ab_statistics({
        "A": {"sent": 500, "delivered": 500},
        "B": {"sent": 400, "delivered": 400},
    })
    assert_valid_json(result)
    delivery = result["comparisons"][0]["metrics"]["delivery_rate"]
    clicks = result["comparisons"][0]["metrics"]["click_rate"]
    assert delivery["p_value"] == 1.0 and delivery["test"] == "fisher_exact"
    assert delivery["always_valid_p_value"] == 1.0 and delivery["lift"] == 0.0
    assert clicks["lift"] is None  # control rate 0
    assert clicks["difference"] == 0.0
    b_clicks = result["variants"][1]["metrics"]["click_rate"]
    assert b_clicks["rate"] == 0.0 and b_clicks["interval"]["low"] == 0.0


def test_missing_keys_count_as_zero_and_rejected_are_derived():
    result = ab_statistics({"A": {"sent": 100, "delivered": 80, "pending": 10, "failed": 25}})
    counts = result["variants"][0]["counts"]
    assert counts["rejected"] == 15  # 25 failed - (100 - 80 - 10) accepted failures
    failure = result["variants"][0]["metrics"]["failure_rate"]
    assert (failure["successes"], failure["trials"]) == (25, 115)
    assert counts["unique_link_clicks"] == 0 and counts["opt_outs"] == 0


def test_opt_outs_are_capped_at_sent():
    result = ab_statistics({"A": {"sent": 3, "opt_outs": 5}})
    assert result["variants"][0]["metrics"]["opt_out_rate"]["rate"] == 1.0
    assert result["notes"] == []


def test_unknown_control_falls_back_with_a_note():
    result = ab_statistics({"A": {"sent": 5}, "B": {"sent": 5}}, AbConfig(control="X"))
    assert result["control"] == "A" and "'X'" in result["notes"][0]


def test_bad_input_is_refused():
    with pytest.raises(ValueError):
        ab_statistics({"A": {"sent": -1}})
    with pytest.raises(ValueError):
        AbConfig(primary="replies")
    with pytest.raises(ValueError):
        AbConfig(alpha=0)


def test_schema_rejects_what_the_output_never_is():
    # Negative control of the schema checks: each mutation must be caught.
    good = ab_statistics({"A": {"sent": 300, "unique_link_clicks": 30},
                          "B": {"sent": 300, "unique_link_clicks": 40}})
    assert_valid_json(good)
    mutations = [
        lambda r: r["variants"][0]["metrics"]["click_rate"].update(rate=1.5),
        lambda r: r["variants"][0].update(extra=1),
        lambda r: r["comparisons"][0]["metrics"]["click_rate"].update(test="t"),
        lambda r: r["verdict"].update(status="winner"),
        lambda r: r["verdict"].update(reasons=[]),
        lambda r: r["sample_ratio"].pop("p_value"),
        lambda r: r["variants"][0]["counts"].update(sent=-1),
    ]
    for mutate in mutations:
        bad = copy.deepcopy(good)
        mutate(bad)
        assert not VALIDATOR.is_valid(bad)
    assert jsonschema_rs.meta.is_valid(AB_RESULT_SCHEMA)


# --- the verdict -----------------------------------------------------------------


def arm(sent, clicks, opt_outs=0, failed=0, raw_clicks=None):
    """Counts of one arm whose clickers are all human unless ``raw_clicks`` says more
    clicked (previews and bots too): the verdict is on human clicks by default."""
    return {"sent": sent, "delivered": sent - failed, "failed": failed,
            "unique_link_clicks": clicks if raw_clicks is None else raw_clicks,
            "unique_human_link_clicks": clicks, "opt_outs": opt_outs}


CLEAR_WIN = {"A": arm(5000, 500), "B": arm(5000, 650)}  # 10 % vs 13 %


def verdict(variants, **config):
    result = ab_statistics(variants, AbConfig(**config))
    assert_valid_json(result)
    return result["verdict"]


def test_clear_winner():
    v = verdict(CLEAR_WIN)
    assert v["status"] == "winner" and v["variant"] == "B" and v["always_valid_p_value"] < 0.05
    # Symmetric in the arms: the control does not matter, nor which side wins.
    assert verdict(CLEAR_WIN, control="B")["variant"] == "B"
    assert verdict({"A": arm(5000, 650), "B": arm(5000, 500)})["variant"] == "A"


# B's message lands in a chat app more often: its raw clicks are inflated by link
# previews (13 % vs 10 % raw), while people click both at 10 %.
PREVIEWED = {"A": arm(5000, 500, raw_clicks=500), "B": arm(5000, 500, raw_clicks=650)}


def test_the_verdict_is_on_human_clicks_unless_raw_is_asked_for():
    result = ab_statistics(PREVIEWED)
    assert result["config"]["clicks"] == "human" and result["config"]["primary"] == "click_rate"
    v = result["verdict"]
    assert v["status"] == "no_winner_yet" and v["metric"] == "human_click_rate"
    # both ways shown: the raw clicks' rates and comparison are there too
    b = result["variants"][1]["metrics"]
    assert (b["click_rate"]["successes"], b["human_click_rate"]["successes"]) == (650, 500)
    raw_p = result["comparisons"][0]["metrics"]["click_rate"]["always_valid_p_value"]
    assert raw_p < 0.05
    # CA_AB_CLICKS=raw: the same counts give B the win on every click
    raw = verdict(PREVIEWED, clicks="raw")
    assert raw["status"] == "winner" and raw["variant"] == "B" and raw["metric"] == "click_rate"
    # the setting picks clicks only: another primary metric is left alone
    assert verdict(PREVIEWED, primary="delivery_rate", clicks="human")["metric"] == "delivery_rate"


def test_clicks_setting_is_checked():
    with pytest.raises(ValueError, match="clicks must be one of human, raw"):
        AbConfig(clicks="bots")


def test_lower_is_better_primary():
    v = verdict({"A": arm(5000, 0, opt_outs=100), "B": arm(5000, 0, opt_outs=40)},
                primary="opt_out_rate", min_successes=0)
    assert v["status"] == "winner" and v["variant"] == "B"


def test_one_variant_or_none():
    for variants in ({}, {"A": arm(5000, 500)}):
        v = verdict(variants)
        assert v["status"] == "no_winner_yet" and "at least two variants" in v["reasons"][0]


# Each gate: a case the gate must stop, checked on the real rule and on a copy of
# the rule without that gate (the checker must notice the difference).

GATES = {
    "min_sent": (
        {"A": arm(90, 60), "B": arm(5000, 500)},
        {"min_sent": 0},
        "variant A has 90 sent; a verdict needs 100 per variant",
    ),
    "min_successes": (
        {"A": arm(5000, 5), "B": arm(5000, 24)},
        {"min_successes": 0},
        "variant A has 5 successes on human_click_rate; a verdict needs 25 per variant",
    ),
}


@pytest.mark.parametrize("gate", sorted(GATES))
def test_data_gates(gate):
    variants, without_gate, reason = GATES[gate]
    v = verdict(variants)
    assert v["status"] == "no_winner_yet" and reason in v["reasons"]
    # Negative control: the same counts without the gate do give a winner.
    assert verdict(variants, **without_gate)["status"] == "winner"


def fixed_horizon_p(s1, n1, s2, n2, tau2):
    del tau2
    z_test = ab.pooled_z_test(s1, n1, s2, n2)
    return 1.0 if z_test is None else z_test[1]


def test_significance_gate_uses_the_always_valid_test(monkeypatch):
    variants = {"A": arm(1000, 100), "B": arm(1000, 140)}  # fixed p ~ 0.005
    v = verdict(variants)
    assert v["status"] == "no_winner_yet"
    assert "no variant is significantly better on human_click_rate yet" in v["reasons"][0]
    assert "always-valid p = 0.359" in v["reasons"][0]
    # Negative control: a rule on the fixed-horizon p-value calls a winner here.
    monkeypatch.setattr(ab, "msprt_p_value", fixed_horizon_p)
    assert verdict(variants)["status"] == "winner"


def test_the_projection_is_where_the_always_valid_p_crosses_alpha_if_rates_hold():
    variants = {"A": arm(1000, 100), "B": arm(1000, 140)}  # always-valid p = 0.359
    extra = verdict(variants)["projected_sends_per_arm"]
    assert isinstance(extra, int) and extra > 0
    tau2 = AbConfig().mixture_variance

    def p_after(more):  # both arms grown by `more` sends, rates unchanged
        n = 1000 + more
        return ab.msprt_p_value(0.14 * n, n, 0.10 * n, n, tau2)

    assert p_after(extra) < 0.05 <= p_after(extra - 1)
    # the verdict itself turns around that point when the counts grow at these rates
    def grown(more):
        n = 1000 + more
        return {"A": arm(n, round(0.10 * n)), "B": arm(n, round(0.14 * n))}

    assert verdict(grown(int(extra * 0.9)))["status"] == "no_winner_yet"
    assert verdict(grown(int(extra * 1.1)))["status"] == "winner"


def test_no_projection_without_a_difference_or_beyond_reach():
    assert ab.sends_to_significance(100, 1000, 100, 1000, 1e-4, 0.05) is None
    assert ab.sends_to_significance(100, 1000, 101, 1000, 1e-4, 0.05, limit=100_000) is None
    assert ab.sends_to_significance(500, 5000, 650, 5000, 1e-4, 0.05) == 0
    assert verdict(CLEAR_WIN)["status"] == "winner"  # a winner carries no projection
    three = {"A": arm(1000, 100), "B": arm(1000, 140), "C": arm(1000, 120)}
    assert verdict(three)["projected_sends_per_arm"] is None  # Holm: not projected


def test_equal_rates_never_win():
    assert verdict({"A": arm(5000, 500), "B": arm(5000, 500)}, alpha=0.999)["status"] != "winner"


@pytest.mark.parametrize(("guardrail", "worse"), [
    ("opt_out_rate", {"opt_outs": 150}),
    ("failure_rate", {"failed": 600}),
])
def test_guardrail_gate(monkeypatch, guardrail, worse):
    b = arm(5000, 650, opt_outs=worse.get("opt_outs", 20), failed=worse.get("failed", 100))
    variants = {"A": arm(5000, 500, opt_outs=20, failed=100), "B": b}
    v = verdict(variants)
    assert v["status"] == "no_winner_yet"
    label = guardrail.replace("_", " ").replace("opt out", "opt-out")
    assert (f"B is ahead on human_click_rate but its {label} is significantly worse"
            in v["reasons"][0])
    # Negative control: without the guardrail gate B would be declared the winner.
    monkeypatch.setattr(ab, "GUARDRAILS", ())
    assert verdict(variants)["status"] == "winner"


def test_guardrail_not_worse_does_not_block():
    better_guardrails = {"A": arm(5000, 500, 30, 200), "B": arm(5000, 650, 10, 50)}
    assert verdict(better_guardrails)["status"] == "winner"


def test_three_arms_winner_must_beat_every_arm_with_holm(monkeypatch):
    # C beats A clearly but not B: no winner.
    close_race = {"A": arm(5000, 500), "B": arm(5000, 640), "C": arm(5000, 650)}
    v = verdict(close_race)
    assert v["status"] == "no_winner_yet" and "leader C" in v["reasons"][0]
    clear = {"A": arm(5000, 500), "B": arm(5000, 520), "C": arm(5000, 700)}
    assert verdict(clear)["variant"] == "C"
    # Holm: a p-value that passes alone (0.04 < 0.05) fails as the smaller of two (0.08).
    monkeypatch.setattr(ab, "msprt_p_value", lambda *args: 0.04)
    assert verdict(clear)["status"] == "no_winner_yet"
    assert verdict({"A": arm(5000, 500), "C": arm(5000, 700)})["status"] == "winner"


def test_verdict_reports_each_failed_gate():
    v = verdict({"A": arm(50, 10), "B": arm(80, 12)})
    assert len(v["reasons"]) == 5  # two arms x two data gates + not significant
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_valid_json(ab_statistics({"A": arm(50, 10), "B": arm(80, 12)}))
