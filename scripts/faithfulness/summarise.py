"""Pools the faithfulness study's ablation files (docs/faithfulness.md) into its tables.

    python scripts/faithfulness/summarise.py OUT_DIR [--removal zero] > tables.md

Each base run (world × model seed × layer × saliency method × negative set) has one
``ablation-<quality>-<replacement>.json`` per game variant. For every (variant, ranking,
fraction) the unit is the run: the per-run difference of pooled accuracy specificity
(ranking − baseline) is averaged over runs, with a 95% t-interval over runs (n − 1 degrees
of freedom) — it holds model seeds, layers, methods and worlds as the variation, as the
protocol says. Verdict: "better" if the interval is above 0, "worse" if below, else
"within noise".
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
from collections import defaultdict

# Two-sided 95% Student t quantiles, by degrees of freedom.
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
        9: 2.262, 10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131,
        16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093, 20: 2.086, 21: 2.080, 22: 2.074,
        23: 2.069, 24: 2.064, 25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048, 29: 2.045,
        30: 2.042}
PRIMARY_FRACTIONS = (5, 10, 20)
RANKINGS = ("shapley", "shapley_positive")
LABEL = {"shapley": "Φ", "shapley_positive": "Φ, w>0 first", "weight_standardised": "|w|·σ",
         "weight_raw": "raw |w|", "mean_activation": "mean act.", "random": "random"}


def t975(df: int) -> float:
    return T975.get(df, 1.96 + 2.4 / max(df, 1))


def interval(values: list[float]) -> tuple[float, float, float]:
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, mean, mean
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = t975(n - 1) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def cell(diffs: list[float]) -> str:
    """Mean [interval] verdict over runs; one run has no interval."""
    if not diffs:
        return "—"
    mean, low, high = interval(diffs)
    if len(diffs) < 2:
        return f"{mean:+.3f} (1 run, no interval)"
    return f"{mean:+.3f} [{low:+.3f}, {high:+.3f}] {verdict(low, high)}"


def verdict(low: float, high: float) -> str:
    return "better" if low > 0 else "worse" if high < 0 else "within noise"


def load(out: str):
    runs = defaultdict(dict)  # run name → variant → {(selection, fraction): specificity}
    for path in sorted(glob.glob(os.path.join(out, "*", "runs", "*", "ablation-*.json"))):
        run = os.path.basename(os.path.dirname(path))
        variant = os.path.basename(path)[len("ablation-"):-len(".json")]
        report = json.load(open(path))
        runs[run][variant] = report
    return runs


def specificity(report, removal: str, measure: str):
    key = "specificity" if measure == "accuracy" else "probability_specificity"
    return {(p["selection"], p["fraction"]): p["drops"][key]
            for p in report["curves"] if p["removal"] == removal}


DEFAULT_GAME = "log_likelihood-marginal"


def differences(runs, select, removal: str, measure: str, variant: str, ranking: str,
                fraction: int, reference) -> list[float]:
    """Per selected run: the ranking's specificity under `variant` minus the reference's,
    `reference` = (variant or None for the same one, selection)."""
    ref_variant, ref_selection = reference
    out = []
    for run, by_variant in runs.items():
        other = ref_variant or variant
        if not select(run) or variant not in by_variant or other not in by_variant:
            continue
        s = specificity(by_variant[variant], removal, measure)
        r = specificity(by_variant[other], removal, measure)
        if (ranking, fraction) in s and (ref_selection, fraction) in r:
            out.append(s[(ranking, fraction)] - r[(ref_selection, fraction)])
    return out


def variants_of(runs) -> list[str]:
    return sorted({v for r in runs.values() for v in r}, key=variant_order)


def table(runs, removal: str, measure: str, reference, select) -> list[str]:
    """Every (variant, ranking) − `reference` per primary fraction, pooled over runs."""
    lines = [f"| game (quality, replacement) | ranking | runs | "
             + " | ".join(f"{f}%" for f in PRIMARY_FRACTIONS) + " |",
             "|---|---|---|" + "---|" * len(PRIMARY_FRACTIONS)]
    for variant in variants_of(runs):
        for ranking in RANKINGS:
            cells, n = [], 0
            for f in PRIMARY_FRACTIONS:
                diffs = differences(runs, select, removal, measure, variant, ranking, f,
                                    reference)
                cells.append(cell(diffs))
                n = max(n, len(diffs))
            if n:
                lines.append(f"| {variant} | {LABEL[ranking]} | {n} | " + " | ".join(cells) + " |")
    return lines


def winner(runs, removal: str, select) -> str:
    """The protocol's decision rule, applied mechanically."""
    best = None
    for variant in variants_of(runs):
        for ranking in RANKINGS:
            verdicts, means = [], []
            for f in PRIMARY_FRACTIONS:
                diffs = differences(runs, select, removal, "accuracy", variant, ranking, f,
                                    (None, "weight_standardised"))
                if len(diffs) < 2:
                    break
                mean, low, high = interval(diffs)
                verdicts.append(verdict(low, high))
                means.append(mean)
            if len(verdicts) < len(PRIMARY_FRACTIONS):
                continue
            beats = verdicts.count("better") >= 2 and "worse" not in verdicts
            score = sum(means) / len(means)
            if beats and (best is None or score > best[0]):
                best = (score, variant, ranking)
    if best is None:
        return "No (variant, ranking) beats |w|·σ by the primary criterion."
    return (f"Winner by the primary criterion: {best[1]}, ranking {LABEL[best[2]]} "
            f"(mean difference over 5–20% {best[0]:+.3f}).")


def absolute(runs, removal: str, select) -> list[str]:
    """Mean specificity of every selection (default game's file of each run)."""
    sums = defaultdict(list)
    for run, by_variant in runs.items():
        report = by_variant.get(DEFAULT_GAME)
        if not select(run) or report is None:
            continue
        for (sel, f), v in specificity(report, removal, "accuracy").items():
            sums[(sel, f)].append(v)
    fractions = sorted({f for _, f in sums})
    selections = [s for s in LABEL if any((s, f) in sums for f in fractions)]
    lines = ["| removed | " + " | ".join(LABEL[s] for s in selections) + " |",
             "|---|" + "---|" * len(selections)]
    for f in fractions:
        lines.append(f"| {f}% | " + " | ".join(
            f"{sum(sums[(s, f)]) / len(sums[(s, f)]):+.3f}" if sums[(s, f)] else "—"
            for s in selections) + " |")
    return lines


def variant_order(v: str):
    order = ["log_likelihood-marginal", "prediction-marginal", "prediction-zero",
             "prediction-mean", "logit-marginal", "logit-zero", "prediction_all-zero",
             "log_likelihood-zero"]
    return order.index(v) if v in order else len(order)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out")
    parser.add_argument("--removal", default="zero")
    args = parser.parse_args()
    runs = load(args.out)
    mixed = lambda run: run.endswith("-mixed")  # noqa: E731
    print(f"{len(runs)} base runs; removal: {args.removal}\n")
    sections = [
        ("Primary: accuracy specificity, ranking − |w|·σ, all mixed-negative runs",
         "accuracy", "weight_standardised", mixed),
        ("Ranking − random", "accuracy", "random", mixed),
        ("Ranking − mean activation", "accuracy", "mean_activation", mixed),
        ("Probability specificity, ranking − |w|·σ", "probability", "weight_standardised", mixed),
        ("Default world only: ranking − |w|·σ", "accuracy", "weight_standardised",
         lambda r: mixed(r) and r.startswith("default-")),
        ("Hard world only: ranking − |w|·σ", "accuracy", "weight_standardised",
         lambda r: mixed(r) and r.startswith("hard-")),
        ("Layer features.7 only: ranking − |w|·σ", "accuracy", "weight_standardised",
         lambda r: mixed(r) and "-features.7-" in r),
        ("Layer features.4 only: ranking − |w|·σ", "accuracy", "weight_standardised",
         lambda r: mixed(r) and "-features.4-" in r),
        ("Negatives = background: ranking − |w|·σ", "accuracy", "weight_standardised",
         lambda r: r.endswith("-background")),
        ("Negatives = siblings: ranking − |w|·σ", "accuracy", "weight_standardised",
         lambda r: r.endswith("-siblings")),
    ]
    for title, measure, baseline, select in sections:
        print(f"### {title}\n")
        print("\n".join(table(runs, args.removal, measure, (None, baseline), select)))
        print()
    print("### Each game and ranking − today's default Φ (log_likelihood, marginal)\n")
    # Whether a winner is distinguishable from what hint does today.
    print("\n".join(table(runs, args.removal, "accuracy", (DEFAULT_GAME, "shapley"), mixed)))
    print()
    siblings = lambda run: run.endswith("-siblings")  # noqa: E731
    for game in (DEFAULT_GAME, "prediction-zero"):
        print(f"### Negatives = siblings: each game and ranking − fixed-mode {game}, plain Φ\n")
        print("\n".join(table(runs, args.removal, "accuracy", (game, "shapley"), siblings)))
        print()
    print(f"**{winner(runs, args.removal, mixed)}**\n")
    print("### Mean accuracy specificity of every selection (default game), mixed negatives\n")
    print("\n".join(absolute(runs, args.removal, mixed)))


if __name__ == "__main__":
    main()
