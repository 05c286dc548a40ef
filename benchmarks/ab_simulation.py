"""False winners under continuous looking: the always-valid verdict vs a fixed-horizon test.

    .venv/bin/python -m benchmarks.ab_simulation [--trials N] [--horizon N] [--step N] ...

Simulates campaigns whose sends are assigned at random (evenly) to the arms and
looks at the counts after every ``--step`` sends per arm up to ``--horizon``
per arm. A/A (every arm the same true click rate, at each of ``--rates``): a
trial has a *false winner* if a rule declares one at any look. Rules:

* ``verdict``: ``ab_statistics(...)["verdict"]`` of projections/ab.py, the full
  rule (always-valid test, data gates, guardrails);
* ``always-valid``: the raw two-sided mSPRT p < alpha of the primary metric;
* ``fixed z, every look``: pooled z p < alpha at any look (the negative control:
  the peeking error the always-valid test exists to avoid);
* ``fixed z, horizon only``: the same test once, at the horizon (should be ~alpha).

Then A/B (``--power``, e.g. 0.10 vs 0.12): how often, and how soon, the
verdict finds the real winner. Opt-outs (0.5 %) and failures (3 %) are drawn
the same in every arm, so the guardrails are live but should not block.

numpy (a transitive dependency, benchmark only) draws the counts and screens
looks with the mSPRT vectorised; the full verdict is then run only at looks
whose raw always-valid test is significant (it cannot declare a winner
elsewhere), and the vectorised p-values are checked against projections/ab.py.
Seeded: the same arguments print the same figures.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from projections import ab
from projections.ab import AbConfig, ab_statistics

OPT_OUT_RATE = 0.005
FAILURE_RATE = 0.03


def draw(rng: np.random.Generator, rates: list[float], trials: int, looks: int,
         step: int) -> dict[str, np.ndarray]:
    """Cumulative counts, shape (trials, looks, arms)."""
    arms = len(rates)
    new_sent = rng.multinomial(step * arms, [1.0 / arms] * arms, size=(trials, looks))
    clicks = rng.binomial(new_sent, np.array(rates))
    opt_outs = rng.binomial(new_sent, OPT_OUT_RATE)
    failed = rng.binomial(new_sent, FAILURE_RATE)
    return {
        "sent": new_sent.cumsum(axis=1),
        "clicks": clicks.cumsum(axis=1),
        "opt_outs": opt_outs.cumsum(axis=1),
        "failed": failed.cumsum(axis=1),
    }


def pair_p(s1: np.ndarray, n1: np.ndarray, s2: np.ndarray, n2: np.ndarray,
           tau2: float) -> tuple[np.ndarray, np.ndarray]:
    """(always-valid p, pooled-z p), vectorised as in projections/ab.py."""
    pooled = (s1 + s2) / (n1 + n2)
    var = pooled * (1 - pooled) * (1 / n1 + 1 / n2)
    theta = s1 / n1 - s2 / n2
    with np.errstate(divide="ignore", invalid="ignore"):
        log_lr = 0.5 * np.log(var / (var + tau2)) + tau2 * theta**2 / (2 * var * (var + tau2))
        av = np.where(var > 0, np.exp(-np.maximum(log_lr, 0.0)), 1.0)
        z = np.abs(theta) / np.sqrt(var)
    erfc = np.vectorize(math.erfc)
    fixed = np.where(var > 0, erfc(np.nan_to_num(z) / math.sqrt(2)), 1.0)
    return av, fixed


def leader_p(counts: dict[str, np.ndarray], tau2: float) -> tuple[np.ndarray, np.ndarray]:
    """For every look: the largest p of the leader against each other arm
    (always-valid, fixed z), i.e. the leader beats all others iff it is < alpha."""
    sent, clicks = counts["sent"], counts["clicks"]
    rate = clicks / sent
    leader = rate.argmax(axis=2)
    arms = sent.shape[2]
    take = lambda a: np.take_along_axis(a, leader[..., None], axis=2)[..., 0]  # noqa: E731
    ls, ln = take(clicks), take(sent)
    av_worst = np.zeros(leader.shape)
    fixed_worst = np.zeros(leader.shape)
    for other in range(arms):
        av, fixed = pair_p(ls, ln, clicks[..., other], sent[..., other], tau2)
        is_self = leader == other
        av_worst = np.maximum(av_worst, np.where(is_self, 0.0, av))
        fixed_worst = np.maximum(fixed_worst, np.where(is_self, 0.0, fixed))
    return av_worst, fixed_worst


def variants_at(counts: dict[str, np.ndarray], trial: int, look: int) -> dict[str, dict[str, int]]:
    out = {}
    for arm in range(counts["sent"].shape[2]):
        sent = int(counts["sent"][trial, look, arm])
        failed = int(counts["failed"][trial, look, arm])
        out[chr(ord("A") + arm)] = {
            "sent": sent,
            "delivered": sent - failed,
            "failed": failed,
            "unique_link_clicks": int(counts["clicks"][trial, look, arm]),
            # people's clicks only here: the verdict (CA_AB_CLICKS=human) is on these
            "unique_human_link_clicks": int(counts["clicks"][trial, look, arm]),
            "opt_outs": int(counts["opt_outs"][trial, look, arm]),
        }
    return out


def run(rates: list[float], args: argparse.Namespace, rng: np.random.Generator,
        config: AbConfig) -> dict[str, object]:
    looks = args.horizon // args.step
    counts = draw(rng, rates, args.trials, looks, args.step)
    av, fixed = leader_p(counts, config.mixture_variance)
    screened = av < config.alpha
    first_winner = np.full(args.trials, -1)
    winner_name = [""] * args.trials
    checked = 0
    for trial in np.flatnonzero(screened.any(axis=1)):
        for look in np.flatnonzero(screened[trial]):
            variants = variants_at(counts, trial, look)
            if checked < 200 and len(rates) == 2:  # the vectorised screen is the module's test
                a, b = variants["A"], variants["B"]
                ref = ab.msprt_p_value(a["unique_link_clicks"], a["sent"],
                                       b["unique_link_clicks"], b["sent"],
                                       config.mixture_variance)
                if ref is None or not math.isclose(ref, av[trial, look], rel_tol=1e-9):
                    raise SystemExit(f"screen {av[trial, look]} != projections.ab {ref}")
            checked += 1
            verdict = ab_statistics(variants, config)["verdict"]
            if verdict["status"] == "winner":
                first_winner[trial] = look
                winner_name[trial] = str(verdict["variant"])
                break
    return {
        "verdict": (first_winner >= 0).mean(),
        "always_valid": screened.any(axis=1).mean(),
        "fixed_any": (fixed < config.alpha).any(axis=1).mean(),
        "fixed_end": (fixed[:, -1] < config.alpha).mean(),
        "first_winner": first_winner,
        "winner_name": winner_name,
        "verdict_calls": checked,
    }


def wilson(rate: float, n: int) -> str:
    low, high = ab.wilson_interval(round(rate * n), n, 0.95) or (math.nan, math.nan)
    return f"{100 * rate:5.2f} % [{100 * low:4.1f}, {100 * high:4.1f}]"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 2)[2])
    parser.add_argument("--trials", type=int, default=10_000, help="campaigns per scenario")
    parser.add_argument("--horizon", type=int, default=10_000, help="sends per arm at the end")
    parser.add_argument("--step", type=int, default=100, help="sends per arm between looks")
    parser.add_argument("--rates", default="0.02,0.1,0.3", help="A/A click rates")
    parser.add_argument("--arms", type=int, default=2, help="arms in the A/A campaigns")
    parser.add_argument("--power", default="0.10,0.12", help="A/B click rates (A,B)")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--mixture-variance", type=float, default=AbConfig().mixture_variance)
    parser.add_argument("--seed", type=int, default=20260101)
    args = parser.parse_args(argv)
    config = AbConfig(alpha=args.alpha, level=1 - args.alpha,
                      mixture_variance=args.mixture_variance)
    rng = np.random.default_rng(args.seed)
    started = time.monotonic()
    print(f"{args.trials} campaigns per row, {args.arms} arms, a look every {args.step} sends "
          f"per arm up to {args.horizon} ({args.horizon // args.step} looks), "
          f"alpha = {args.alpha}, tau^2 = {args.mixture_variance:g}, seed {args.seed}")
    print("False-winner rate (A/A), with 95 % Wilson intervals:")
    print(f"{'rate':>6} | {'verdict':>24} | {'always-valid':>24} | "
          f"{'fixed z, every look':>24} | {'fixed z, horizon only':>24}")
    for rate in (float(r) for r in args.rates.split(",")):
        res = run([rate] * args.arms, args, rng, config)
        print(f"{rate:6.2f} | " + " | ".join(
            f"{wilson(float(res[key]), args.trials):>24}"
            for key in ("verdict", "always_valid", "fixed_any", "fixed_end")))
    a_rate, b_rate = (float(r) for r in args.power.split(","))
    res = run([a_rate, b_rate], args, rng, config)
    first = np.asarray(res["first_winner"])
    found = first >= 0
    right = np.array([name == "B" for name in res["winner_name"]])
    sends = (first[found] + 1) * args.step
    print(f"A/B {a_rate:g} vs {b_rate:g}: verdict found B in "
          f"{wilson(float(right.mean()), args.trials)} of campaigns "
          f"(wrong winner A: {int((found & ~right).sum())}); sends per arm at the verdict: "
          f"median {int(np.median(sends)) if found.any() else 0}, "
          f"90th percentile {int(np.percentile(sends, 90)) if found.any() else 0}; "
          f"fixed z at the horizon finds a difference in "
          f"{100 * float(res['fixed_end']):.1f} %")
    print(f"({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
