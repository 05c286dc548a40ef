"""A/B statistics of a campaign's variants (domain.md section 3; docs/ab-statistics.md).

``ab_statistics(variants, config)`` turns per-variant counts into JSON-ready data:
per arm and metric a Wilson score interval; against the control the difference
with Newcombe's hybrid score interval, the lift, a fixed-horizon p-value (pooled
z, or Fisher's exact when an expected cell is below 5; Holm across arms) and an
always-valid p-value and confidence sequence (mSPRT with a normal mixture,
Johari, Pekelis & Walsh 2017); a verdict on the primary metric that only the
always-valid test can give; and a sample-ratio check of ``sent``.

Standard library only: the tests compare every value with statsmodels / scipy.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

# click_rate counts every click; human_click_rate only those judged human (domain.md
# 3b: neither a bot or preview fetcher by user agent, nor at the delivering receipt).
METRICS: tuple[str, ...] = (
    "delivery_rate",
    "unique_reply_rate",
    "click_rate",
    "human_click_rate",
    "opt_out_rate",
    "failure_rate",
)
# Direction of "better" per metric; guardrails are the metrics where higher is worse.
HIGHER_IS_BETTER: Mapping[str, bool] = {
    "delivery_rate": True,
    "unique_reply_rate": True,
    "click_rate": True,
    "human_click_rate": True,
    "opt_out_rate": False,
    "failure_rate": False,
}
GUARDRAILS: tuple[str, ...] = ("opt_out_rate", "failure_rate")
COUNT_KEYS: tuple[str, ...] = (
    "sent",
    "delivered",
    "failed",
    "pending",
    "unknown",
    "unique_repliers",
    "unique_link_clicks",
    "unique_human_link_clicks",
    "opt_outs",
)
CLICKS: tuple[str, ...] = ("human", "raw")  # CA_AB_CLICKS

_NORMAL = NormalDist()
_SQRT2 = math.sqrt(2.0)
# scipy's fisher_exact treats tables whose probability is within 1e-14 of the
# observed one as "as extreme"; our weights come from a chain of ratios (a few
# ulps per step), so ties need a little more room. No two distinct
# hypergeometric probabilities of a realistic table are this close.
_FISHER_TIE = 1e-9


@dataclass(frozen=True)
class AbConfig:
    """How the A/B statistics are computed (defaults: docs/ab-statistics.md).

    ``mixture_variance`` is tau^2 of the mSPRT's N(0, tau^2) prior on the
    difference of rates: tau = 0.01 (one percentage point) is the size of a
    typical real SMS lift (click and reply rates of 2-15 %). Any tau^2 keeps the
    error rate at alpha; it only moves which effects are found fastest. ``clicks``
    (CA_AB_CLICKS): with ``primary`` "click_rate", the verdict is on human clicks
    (``human_click_rate``, the default) or on every click (``raw``).
    """

    alpha: float = 0.05
    level: float = 0.95
    control: str | None = None
    split: Mapping[str, float] | None = None
    primary: str = "click_rate"
    mixture_variance: float = 1e-4
    min_sent: int = 100
    min_successes: int = 25
    srm_threshold: float = 0.001
    clicks: str = "human"

    @property
    def verdict_metric(self) -> str:
        """The metric the verdict is on: ``primary``, its clicks as ``clicks`` says."""
        if self.primary == "click_rate" and self.clicks == "human":
            return "human_click_rate"
        return self.primary

    def __post_init__(self) -> None:
        for name in ("alpha", "level", "srm_threshold"):
            value = getattr(self, name)
            if not 0.0 < value < 1.0:
                raise ValueError(f"{name} must be strictly between 0 and 1; got {value!r}")
        if self.primary not in METRICS:
            raise ValueError(f"primary must be one of {', '.join(METRICS)}; got {self.primary!r}")
        if self.clicks not in CLICKS:
            raise ValueError(f"clicks must be one of {', '.join(CLICKS)}; got {self.clicks!r}")
        if not (self.mixture_variance > 0.0 and math.isfinite(self.mixture_variance)):
            raise ValueError(f"mixture_variance must be positive; got {self.mixture_variance!r}")
        if self.min_sent < 0 or self.min_successes < 0:
            raise ValueError("min_sent and min_successes must be >= 0")
        if self.split is not None:
            for name, weight in self.split.items():
                if not (weight >= 0.0 and math.isfinite(weight)):
                    raise ValueError(f"split weight of {name!r} must be >= 0; got {weight!r}")
            if not any(weight > 0 for weight in self.split.values()):
                raise ValueError("split needs at least one positive weight")


# --- distributions -----------------------------------------------------------


def normal_sf(z: float) -> float:
    return 0.5 * math.erfc(z / _SQRT2)


def normal_quantile_upper(tail: float) -> float:
    """z with P(Z > z) = tail (scipy's ``norm.isf``)."""
    return -_NORMAL.inv_cdf(tail)


def regularized_gamma_q(a: float, x: float) -> float:
    """Q(a, x) = Gamma(a, x) / Gamma(a): the series for P below a + 1, else
    Lentz's continued fraction for Q itself, so the upper tail keeps its
    relative accuracy far out (Numerical Recipes 6.2)."""
    if a <= 0.0:
        raise ValueError("a must be positive")
    if x <= 0.0:
        return 1.0
    if math.isinf(x):
        return 0.0
    log_prefix = -x + a * math.log(x) - math.lgamma(a)
    if x < a + 1.0:
        term = total = 1.0 / a
        denom = a
        for _ in range(100_000):
            denom += 1.0
            term *= x / denom
            total += term
            if abs(term) < abs(total) * 1e-17:
                break
        return max(0.0, 1.0 - total * math.exp(log_prefix))
    tiny = 1e-300
    b = x + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for i in range(1, 100_000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-16:
            break
    return math.exp(log_prefix) * h


def chi2_sf(x: float, df: int) -> float:
    """Survival function of the chi-squared distribution with ``df`` degrees of freedom."""
    if df < 1:
        raise ValueError("df must be >= 1")
    return regularized_gamma_q(df / 2.0, x / 2.0)


# --- intervals and tests -----------------------------------------------------


def wilson_interval(successes: int, trials: int, level: float) -> tuple[float, float] | None:
    """Wilson score interval (statsmodels ``proportion_confint(method="wilson")``)."""
    if trials <= 0:
        return None
    crit = normal_quantile_upper((1.0 - level) / 2.0)
    crit2 = crit * crit
    q = successes / trials
    denom = 1.0 + crit2 / trials
    center = (q + crit2 / (2.0 * trials)) / denom
    dist = crit * math.sqrt(q * (1.0 - q) / trials + crit2 / (4.0 * trials * trials)) / denom
    # The bounds are exactly 0 at no successes and 1 at all successes; rounding
    # would leave them a few ulps off (and outside [0, 1] at worst).
    low = 0.0 if successes == 0 else max(0.0, center - dist)
    high = 1.0 if successes == trials else min(1.0, center + dist)
    return low, high


def newcombe_interval(
    s1: int, n1: int, s2: int, n2: int, level: float
) -> tuple[float, float] | None:
    """Newcombe's hybrid score interval of p1 - p2 (his method 10), as statsmodels'
    ``confint_proportions_2indep(method="newcomb", compare="diff")``."""
    w1 = wilson_interval(s1, n1, level)
    w2 = wilson_interval(s2, n2, level)
    if w1 is None or w2 is None:
        return None
    p1, p2 = s1 / n1, s2 / n2
    diff = p1 - p2
    d_low = math.hypot(p1 - w1[0], w2[1] - p2)
    d_upp = math.hypot(p2 - w2[0], w1[1] - p1)
    return max(-1.0, diff - d_low), min(1.0, diff + d_upp)


def pooled_z_test(s1: int, n1: int, s2: int, n2: int) -> tuple[float, float] | None:
    """Two-sided pooled two-proportion z test; z^2 is the 2x2 Pearson chi-squared
    without continuity correction. None when the pooled variance is 0."""
    if n1 <= 0 or n2 <= 0:
        return None
    pooled = (s1 + s2) / (n1 + n2)
    var = pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)
    if var <= 0.0:
        return None
    z = (s1 / n1 - s2 / n2) / math.sqrt(var)
    return z, math.erfc(abs(z) / _SQRT2)


def fisher_exact_two_sided(a: int, b: int, c: int, d: int) -> float:
    """Two-sided Fisher exact p-value of [[a, b], [c, d]] (scipy's definition: the
    total probability of the tables no more probable than the observed one)."""
    row1, row2, col1 = a + b, c + d, a + c
    lo, hi = max(0, col1 - row2), min(row1, col1)
    if lo == hi:
        return 1.0
    # Hypergeometric weights relative to the mode (weight 1), by the ratio of
    # neighbours: no factorials, no overflow, full relative precision.
    mode = min(hi, max(lo, (row1 + 1) * (col1 + 1) // (row1 + row2 + 2)))
    weights = {mode: 1.0}
    w = 1.0
    for x in range(mode, hi):
        w *= (row1 - x) * (col1 - x) / ((x + 1) * (row2 - col1 + x + 1))
        weights[x + 1] = w
    w = 1.0
    for x in range(mode, lo, -1):
        w *= x * (row2 - col1 + x) / ((row1 - x + 1) * (col1 - x + 1))
        weights[x - 1] = w
    observed = weights[a] * (1.0 + _FISHER_TIE)
    total = math.fsum(weights.values())
    extreme = math.fsum(v for v in weights.values() if v <= observed)
    return min(1.0, extreme / total)


def expected_cells(s1: int, n1: int, s2: int, n2: int) -> tuple[float, float, float, float]:
    total, succ = n1 + n2, s1 + s2
    fail = total - succ
    return n1 * succ / total, n1 * fail / total, n2 * succ / total, n2 * fail / total


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (statsmodels ``multipletests(method="holm")``)."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, (m - rank) * p_values[i])
        adjusted[i] = min(1.0, running)
    return adjusted


# --- mSPRT (always valid) ------------------------------------------------------


def _log_mixture_lr(theta_hat: float, var: float, tau2: float) -> float:
    # Theta_hat ~ N(theta, var); the N(0, tau2) mixture of the likelihood ratios
    # against theta = 0 is N(0, var + tau2) / N(0, var) at theta_hat.
    return 0.5 * math.log(var / (var + tau2)) + tau2 * theta_hat * theta_hat / (
        2.0 * var * (var + tau2)
    )


def _p_from_log_lr(log_lr: float) -> float:
    return 1.0 if log_lr <= 0.0 else math.exp(-log_lr)


def _pooled_var(s1: int, n1: int, s2: int, n2: int) -> float:
    pooled = (s1 + s2) / (n1 + n2)
    return pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)


def msprt_p_value(s1: int, n1: int, s2: int, n2: int, tau2: float) -> float | None:
    """Two-sided always-valid p-value of p1 = p2 at the current counts:
    min(1, 1 / Lambda_n), with the variance of p1_hat - p2_hat under the null
    (pooled plug-in). None without trials; 1 when the pooled rate is 0 or 1."""
    if n1 <= 0 or n2 <= 0:
        return None
    var = _pooled_var(s1, n1, s2, n2)
    if var <= 0.0:
        return 1.0
    return _p_from_log_lr(_log_mixture_lr(s1 / n1 - s2 / n2, var, tau2))


def sends_to_significance(
    s1: int, n1: int, s2: int, n2: int, tau2: float, alpha: float, limit: int = 10_000_000
) -> int | None:
    """How many more trials per arm until the two-sided always-valid p-value falls
    below ``alpha`` if both observed rates held: a projection, not a promise (rates
    move). 0 when it already has; None without a difference, or beyond ``limit``
    trials per arm. Both arms grow by the same factor, so the pooled rate and the
    difference stay and only the variance shrinks."""
    if n1 <= 0 or n2 <= 0 or s1 * n2 == s2 * n1:
        return None
    theta = s1 / n1 - s2 / n2
    var0 = _pooled_var(s1, n1, s2, n2)
    largest = max(n1, n2)

    def significant(extra: int) -> bool:
        scale = (largest + extra) / largest
        return _p_from_log_lr(_log_mixture_lr(theta, var0 / scale, tau2)) < alpha

    if significant(0):
        return 0
    high = largest
    while not significant(high):
        if largest + high > limit:
            return None
        high *= 2
    low = high // 2 if high > largest else 0  # low is not significant
    while high - low > 1:
        middle = (low + high) // 2
        if significant(middle):
            high = middle
        else:
            low = middle
    return high


def msprt_p_value_greater(s1: int, n1: int, s2: int, n2: int, tau2: float) -> float | None:
    """One-sided always-valid p-value of p1 <= p2 (evidence that p1 > p2): the
    mixture over the half-normal prior on theta > 0, in closed form
    2 * Lambda_n * Phi(theta_hat * tau / sqrt(var * (var + tau2)))."""
    if n1 <= 0 or n2 <= 0:
        return None
    var = _pooled_var(s1, n1, s2, n2)
    if var <= 0.0:
        return 1.0
    theta_hat = s1 / n1 - s2 / n2
    phi = normal_sf(-theta_hat * math.sqrt(tau2) / math.sqrt(var * (var + tau2)))
    if phi <= 0.0:
        return 1.0
    return _p_from_log_lr(math.log(2.0) + math.log(phi) + _log_mixture_lr(theta_hat, var, tau2))


def msprt_interval(
    s1: int, n1: int, s2: int, n2: int, tau2: float, level: float
) -> tuple[float, float] | None:
    """Always-valid confidence interval of p1 - p2: the thetas whose mixture
    likelihood ratio is below 1 / (1 - level) (the confidence sequence of the
    same mixture). Here theta != 0, so the variance is the unpooled plug-in,
    with each rate taken as (s + 1/2) / (n + 1) so that 0 % or 100 % arms still
    give an interval of positive width."""
    if n1 <= 0 or n2 <= 0:
        return None
    r1, r2 = (s1 + 0.5) / (n1 + 1), (s2 + 0.5) / (n2 + 1)
    var = r1 * (1.0 - r1) / n1 + r2 * (1.0 - r2) / n2
    log_bound = -math.log(1.0 - level)
    half = math.sqrt(var * (var + tau2) / tau2 * (2.0 * log_bound + math.log((var + tau2) / var)))
    diff = s1 / n1 - s2 / n2
    return max(-1.0, diff - half), min(1.0, diff + half)


# --- counts --------------------------------------------------------------------


@dataclass(frozen=True)
class _Arm:
    name: str
    counts: Mapping[str, int]
    rejected: int
    # metric -> (successes, trials)
    metrics: Mapping[str, tuple[int, int]]


def _arm(name: str, raw: Mapping[str, int], notes: list[str]) -> _Arm:
    counts: dict[str, int] = {}
    for key in COUNT_KEYS:
        value = raw.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"variant {name!r}: {key} must be a non-negative int; got {value!r}")
        counts[key] = value
    sent = counts["sent"]
    accepted_failed = sent - counts["delivered"] - counts["pending"] - counts["unknown"]
    rejected = max(0, counts["failed"] - max(0, accepted_failed))
    raw_metrics = {
        "delivery_rate": (counts["delivered"], sent),
        "unique_reply_rate": (counts["unique_repliers"], sent),
        "click_rate": (counts["unique_link_clicks"], sent),
        "human_click_rate": (counts["unique_human_link_clicks"], sent),
        "opt_out_rate": (counts["opt_outs"], sent),
        "failure_rate": (counts["failed"], sent + rejected),
    }
    metrics: dict[str, tuple[int, int]] = {}
    for metric, (successes, trials) in raw_metrics.items():
        # opt_outs counts replies, so a contact who says STOP twice counts twice:
        # capped at sent it is a proportion again. For the other metrics a count
        # above its denominator is inconsistent input; capped too, and noted.
        if successes > trials:
            if metric != "opt_out_rate":
                notes.append(f"variant {name}: {metric} numerator {successes} > {trials}; capped")
            successes = trials
        metrics[metric] = (successes, trials)
    return _Arm(name, counts, rejected, metrics)


def _rate(successes: int, trials: int) -> float | None:
    return successes / trials if trials > 0 else None


def _interval(bounds: tuple[float, float] | None) -> dict[str, float] | None:
    if bounds is None:
        return None
    return {"low": bounds[0], "high": bounds[1]}


# --- the result ------------------------------------------------------------------


def _variant_entry(arm: _Arm, level: float) -> dict[str, object]:
    metrics: dict[str, object] = {}
    for metric in METRICS:
        successes, trials = arm.metrics[metric]
        metrics[metric] = {
            "successes": successes,
            "trials": trials,
            "rate": _rate(successes, trials),
            "interval": _interval(wilson_interval(successes, trials, level)),
        }
    counts: dict[str, object] = dict(arm.counts)
    counts["rejected"] = arm.rejected
    return {"variant": arm.name, "counts": counts, "metrics": metrics}


def _compare(arm: _Arm, control: _Arm, metric: str, config: AbConfig) -> dict[str, object]:
    s1, n1 = arm.metrics[metric]
    s2, n2 = control.metrics[metric]
    entry: dict[str, object] = {
        "difference": None,
        "interval": None,
        "lift": None,
        "test": None,
        "p_value": None,
        "p_value_holm": None,
        "always_valid_p_value": None,
        "always_valid_interval": None,
        "skipped": None,
    }
    if n1 == 0 or n2 == 0:
        empty = [name for name, n in ((arm.name, n1), (control.name, n2)) if n == 0]
        entry["skipped"] = f"no {metric} denominator yet for {' and '.join(empty)}"
        return entry
    r1, r2 = s1 / n1, s2 / n2
    entry["difference"] = r1 - r2
    entry["interval"] = _interval(newcombe_interval(s1, n1, s2, n2, config.level))
    entry["lift"] = r1 / r2 - 1.0 if r2 > 0 else None
    if min(expected_cells(s1, n1, s2, n2)) < 5.0:
        entry["test"] = "fisher_exact"
        entry["p_value"] = fisher_exact_two_sided(s1, n1 - s1, s2, n2 - s2)
    else:
        entry["test"] = "pooled_z"
        z_test = pooled_z_test(s1, n1, s2, n2)
        # Every expected cell >= 5 means both columns are non-empty: variance > 0.
        entry["p_value"] = z_test[1] if z_test is not None else 1.0
    entry["always_valid_p_value"] = msprt_p_value(s1, n1, s2, n2, config.mixture_variance)
    entry["always_valid_interval"] = _interval(
        msprt_interval(s1, n1, s2, n2, config.mixture_variance, config.level)
    )
    return entry


def _pct(rate: float) -> str:
    return f"{100.0 * rate:.2f} %"


def _fmt_p(p: float) -> str:
    return f"{p:.2g}" if p < 0.001 else f"{p:.3f}"


def _verdict(arms: Sequence[_Arm], config: AbConfig) -> dict[str, object]:
    metric = config.verdict_metric
    higher = HIGHER_IS_BETTER[metric]
    if len(arms) < 2:
        only = f"only variant {arms[0].name}" if arms else "no variants"
        return {
            "status": "no_winner_yet",
            "metric": metric,
            "reasons": [f"{only} so far: an A/B verdict needs at least two variants"],
            "projected_sends_per_arm": None,
        }
    reasons: list[str] = []
    for arm in arms:
        successes, trials = arm.metrics[metric]
        if arm.counts["sent"] < config.min_sent:
            reasons.append(
                f"variant {arm.name} has {arm.counts['sent']} sent; "
                f"a verdict needs {config.min_sent} per variant"
            )
        if successes < config.min_successes:
            reasons.append(
                f"variant {arm.name} has {successes} successes on {metric}; "
                f"a verdict needs {config.min_successes} per variant"
            )
    if any(arm.metrics[metric][1] == 0 for arm in arms):
        if not reasons:
            reasons.append(f"a variant has no {metric} denominator yet")
        return {"status": "no_winner_yet", "metric": metric, "reasons": reasons,
                "projected_sends_per_arm": None}

    def rate(arm: _Arm) -> float:
        successes, trials = arm.metrics[metric]
        return successes / trials

    # The leader is the arm with the best rate; only it can beat every other arm.
    leader = max(arms, key=lambda arm: rate(arm) if higher else -rate(arm))
    others = [arm for arm in arms if arm is not leader]
    raw = []
    for other in others:
        s1, n1 = leader.metrics[metric]
        s2, n2 = other.metrics[metric]
        p = msprt_p_value(s1, n1, s2, n2, config.mixture_variance)
        raw.append(1.0 if p is None else p)
    adjusted = holm(raw) if len(others) > 1 else raw
    worst = max(adjusted)
    ahead = all((rate(leader) > rate(o)) if higher else (rate(leader) < rate(o)) for o in others)
    projected: int | None = None
    if not ahead or worst >= config.alpha:
        if len(others) == 1 and ahead:
            (s1, n1), (s2, n2) = leader.metrics[metric], others[0].metrics[metric]
            projected = sends_to_significance(s1, n1, s2, n2, config.mixture_variance,
                                              config.alpha)
        adj = " (Holm-adjusted, largest over its comparisons)" if len(others) > 1 else ""
        reasons.append(
            f"no variant is significantly better on {metric} yet "
            f"(leader {leader.name} at {_pct(rate(leader))}; always-valid p = {_fmt_p(worst)}"
            f"{adj}; needs < {config.alpha:g})"
        )
    else:
        for guardrail in GUARDRAILS:
            if guardrail == metric:
                continue
            for other in others:
                s1, n1 = leader.metrics[guardrail]
                s2, n2 = other.metrics[guardrail]
                p = msprt_p_value_greater(s1, n1, s2, n2, config.mixture_variance)
                if p is not None and p < config.alpha:
                    label = guardrail.replace("_", " ").replace("opt out", "opt-out")
                    reasons.append(
                        f"{leader.name} is ahead on {metric} but its {label} is significantly "
                        f"worse than {other.name}'s ({_pct(s1 / n1)} vs {_pct(s2 / n2)}; "
                        f"one-sided always-valid p = {_fmt_p(p)})"
                    )
    if reasons:
        return {"status": "no_winner_yet", "metric": metric, "reasons": reasons,
                "projected_sends_per_arm": projected}
    return {
        "status": "winner",
        "metric": metric,
        "variant": leader.name,
        "always_valid_p_value": worst,
    }


def _sample_ratio(
    sent: Mapping[str, int], split: Mapping[str, float] | None, threshold: float
) -> dict[str, object]:
    names = sorted(set(sent) | set(split or {}))
    weights = {name: (1.0 if split is None else float(split.get(name, 0.0))) for name in names}
    result: dict[str, object] = {
        "statistic": None,
        "df": None,
        "p_value": None,
        "flagged": False,
        "expected": None,
        "reason": None,
    }
    total = sum(sent.get(name, 0) for name in names)
    if len(names) < 2:
        result["reason"] = "fewer than two variants"
        return result
    if total == 0:
        result["reason"] = "no sends yet"
        return result
    unplanned = [name for name in names if weights[name] == 0.0 and sent.get(name, 0) > 0]
    if unplanned:
        result["p_value"] = 0.0
        result["flagged"] = True
        result["reason"] = f"sends to variants outside the planned split: {', '.join(unplanned)}"
        return result
    planned = [name for name in names if weights[name] > 0.0]
    if len(planned) < 2:
        result["reason"] = "fewer than two planned variants"
        return result
    weight_sum = math.fsum(weights[name] for name in planned)
    expected = {name: total * weights[name] / weight_sum for name in planned}
    statistic = math.fsum((sent.get(name, 0) - e) ** 2 / e for name, e in expected.items())
    p_value = chi2_sf(statistic, len(planned) - 1)
    result.update(
        statistic=statistic,
        df=len(planned) - 1,
        p_value=p_value,
        flagged=p_value < threshold,
        expected=expected,
    )
    if p_value < threshold:
        result["reason"] = (
            f"sent per variant does not match the planned split (p = {_fmt_p(p_value)} "
            f"< {threshold:g}): check the assignment before trusting any comparison"
        )
    return result


def _config_entry(config: AbConfig) -> dict[str, object]:
    return {
        "alpha": config.alpha,
        "level": config.level,
        "control": config.control,
        "split": None if config.split is None else dict(config.split),
        "primary": config.primary,
        "clicks": config.clicks,
        "mixture_variance": config.mixture_variance,
        "min_sent": config.min_sent,
        "min_successes": config.min_successes,
        "srm_threshold": config.srm_threshold,
    }


def first_attempt_counts(variants: Mapping[str, Mapping[str, Any]]
                         ) -> dict[str, Mapping[str, Any]]:
    """Per variant of a summary, the counts ``ab_statistics`` reads: its first
    attempts only (domain.md 3b: retries leave the A/B statistics alone), or the
    variant's own counts in a summary written before retries were counted."""
    out: dict[str, Mapping[str, Any]] = {}
    for name, variant in variants.items():
        first = variant.get("first_attempts")
        out[name] = first if isinstance(first, Mapping) else variant
    return out


def ab_statistics(
    variants: Mapping[str, Mapping[str, int]], config: AbConfig | None = None
) -> dict[str, object]:
    """The A/B statistics of one campaign (shape: ``AB_RESULT_SCHEMA``)."""
    config = AbConfig() if config is None else config
    notes: list[str] = []
    arms = [_arm(name, variants[name], notes) for name in sorted(variants)]
    by_name = {arm.name: arm for arm in arms}
    control: _Arm | None = None
    if config.control is not None and config.control in by_name:
        control = by_name[config.control]
    elif arms:
        control = arms[0]
        if config.control is not None:
            notes.append(
                f"control {config.control!r} is not a variant of this campaign; "
                f"the first variant by name ({control.name}) is the control"
            )
    comparisons: list[dict[str, object]] = []
    if control is not None:
        challengers = [arm for arm in arms if arm is not control]
        # metric -> (entry, its p-value) of every challenger that could be tested
        tested: dict[str, list[tuple[dict[str, object], float]]] = {m: [] for m in METRICS}
        for arm in challengers:
            metrics: dict[str, object] = {}
            for metric in METRICS:
                entry = _compare(arm, control, metric, config)
                p_value = entry["p_value"]
                if isinstance(p_value, float):
                    tested[metric].append((entry, p_value))
                metrics[metric] = entry
            comparisons.append({"variant": arm.name, "control": control.name, "metrics": metrics})
        if len(challengers) > 1:
            for pairs in tested.values():
                adjusted = holm([p for _, p in pairs])
                for (entry, _), p in zip(pairs, adjusted, strict=True):
                    entry["p_value_holm"] = p
    result: dict[str, object] = {
        "config": _config_entry(config),
        "control": None if control is None else control.name,
        "metrics": list(METRICS),
        "variants": [_variant_entry(arm, config.level) for arm in arms],
        "comparisons": comparisons,
        "sample_ratio": _sample_ratio(
            {arm.name: arm.counts["sent"] for arm in arms}, config.split, config.srm_threshold
        ),
        "verdict": _verdict(arms, config),
        "notes": notes,
    }
    return result


# --- the output's JSON Schema --------------------------------------------------
# Inline subschemas, no $ref: "#/..." references would resolve against the root
# of whatever OpenAPI document embeds this schema.


def _nullable(schema: dict[str, object]) -> dict[str, object]:
    return {"anyOf": [schema, {"type": "null"}]}


def _obj(
    properties: Mapping[str, object], required: Iterable[str] | None = None
) -> dict[str, object]:
    return {
        "type": "object",
        "properties": dict(properties),
        "required": list(properties if required is None else required),
        "additionalProperties": False,
    }


_COUNT = {"type": "integer", "minimum": 0}
_PROB = {"type": "number", "minimum": 0, "maximum": 1}
_DIFF = {"type": "number", "minimum": -1, "maximum": 1}
_P_VALUE = _nullable(_PROB)
_RANGE = _nullable(_obj({"low": _DIFF, "high": _DIFF}))
_PROB_RANGE = _nullable(_obj({"low": _PROB, "high": _PROB}))
_METRIC_NAMES = {"type": "string", "enum": list(METRICS)}


def _per_metric(schema: dict[str, object]) -> dict[str, object]:
    return _obj({metric: schema for metric in METRICS})


AB_RESULT_SCHEMA: dict[str, object] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "AbStatistics",
    "description": "A/B statistics of one campaign (projections/ab.py, docs/ab-statistics.md).",
    **_obj(
        {
            "config": _obj(
                {
                    "alpha": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
                    "level": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
                    "control": {"type": ["string", "null"]},
                    "split": _nullable(
                        {"type": "object", "additionalProperties": {"type": "number", "minimum": 0}}
                    ),
                    "primary": _METRIC_NAMES,
                    "clicks": {"enum": list(CLICKS)},
                    "mixture_variance": {"type": "number", "exclusiveMinimum": 0},
                    "min_sent": _COUNT,
                    "min_successes": _COUNT,
                    "srm_threshold": {
                        "type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1
                    },
                }
            ),
            "control": {"type": ["string", "null"]},
            "metrics": {"type": "array", "items": _METRIC_NAMES},
            "variants": {
                "type": "array",
                "items": _obj(
                    {
                        "variant": {"type": "string"},
                        "counts": _obj({key: _COUNT for key in (*COUNT_KEYS, "rejected")}),
                        "metrics": _per_metric(
                            _obj(
                                {
                                    "successes": _COUNT,
                                    "trials": _COUNT,
                                    "rate": _P_VALUE,
                                    "interval": _PROB_RANGE,
                                }
                            )
                        ),
                    }
                ),
            },
            "comparisons": {
                "type": "array",
                "items": _obj(
                    {
                        "variant": {"type": "string"},
                        "control": {"type": "string"},
                        "metrics": _per_metric(
                            _obj(
                                {
                                    "difference": _nullable(_DIFF),
                                    "interval": _RANGE,
                                    "lift": {"type": ["number", "null"], "minimum": -1},
                                    "test": {"enum": ["pooled_z", "fisher_exact", None]},
                                    "p_value": _P_VALUE,
                                    "p_value_holm": _P_VALUE,
                                    "always_valid_p_value": _P_VALUE,
                                    "always_valid_interval": _RANGE,
                                    "skipped": {"type": ["string", "null"]},
                                }
                            )
                        ),
                    }
                ),
            },
            "sample_ratio": _obj(
                {
                    "statistic": {"type": ["number", "null"], "minimum": 0},
                    "df": {"type": ["integer", "null"], "minimum": 1},
                    "p_value": _P_VALUE,
                    "flagged": {"type": "boolean"},
                    "expected": _nullable(
                        {"type": "object", "additionalProperties": {"type": "number", "minimum": 0}}
                    ),
                    "reason": {"type": ["string", "null"]},
                }
            ),
            "verdict": {
                "oneOf": [
                    _obj(
                        {
                            "status": {"const": "winner"},
                            "metric": _METRIC_NAMES,
                            "variant": {"type": "string"},
                            "always_valid_p_value": _PROB,
                        }
                    ),
                    _obj(
                        {
                            "status": {"const": "no_winner_yet"},
                            "metric": _METRIC_NAMES,
                            "reasons": {
                                "type": "array",
                                "items": {"type": "string"},
                                "minItems": 1,
                            },
                            "projected_sends_per_arm": {"type": ["integer", "null"], "minimum": 0},
                        }
                    ),
                ]
            },
            "notes": {"type": "array", "items": {"type": "string"}},
        }
    ),
}
