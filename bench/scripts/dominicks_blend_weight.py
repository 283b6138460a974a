"""Diagnostic (not part of any model): the weight of the direct trees in the served blend.

The trained model's served Dominick's point is P = 0.5 C + 0.5 D (C the validation-chosen
combination, D the direct per-step trees, dumped as `m_direct_gbm`). From `forecast-bench`
dumps of pre-test origins this scores (1 - w) C + w D for w = 0, 0.1, ..., 1, exactly as
forecast-bench scores (MASE scaled by each series' in-sample one-step naive MAE, averaged over
series; WAPE pooled), and applies the rule in BENCHMARKS.md ("The blend's weight"): a weight other
than 1/2 is adopted only if its mean MASE and mean WAPE over the origins are both lower.

    FORECAST_DUMP=/tmp/dump_d1.csv forecast-bench --only dominicks --no-latency --skip-anchors \\
        --nested --nested-depth 1        (and 2, 3, 4)
    python3 bench/scripts/dominicks_blend_weight.py --members ses,global_gru,global_gbm,local_regression \\
        1:/tmp/dump_d1.csv 2:/tmp/dump_d2.csv ...

`--members DEPTH=a,b,...` (repeatable) names the combination's members at an origin, as
forecast-bench prints them, to check C (`dominicks_dump.combination`) against their mean.
"""
import argparse

import numpy as np

from dominicks_dump import evaluate, read_blend


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--members", action="append", default=[], metavar="DEPTH=a,b,...")
    ap.add_argument("dumps", nargs="+", metavar="DEPTH:DUMP")
    args = ap.parse_args()
    members = {int(k): v.split(",") for k, v in (m.split("=", 1) for m in args.members)}
    weights = [round(0.1 * k, 1) for k in range(11)]
    table = {}
    for item in args.dumps:
        depth, d, direct, comb = read_blend(item)
        if depth in members:
            mean = d[[f"m_{m}" for m in members[depth]]].mean(axis=1).values
            gap = np.abs(mean - comb) / np.maximum(1.0, np.abs(mean))
            print(f"depth {depth}: C against the members' mean: largest relative gap {gap.max():.2e}")
        for w in weights:
            table[(depth, w)] = evaluate(d, (1 - w) * comb + w * direct)
    depths = sorted({k for k, _ in table})
    print("| w (direct trees) | " + " | ".join(f"depth {k}" for k in depths) + " | mean MASE / WAPE |")
    print("|---" * (len(depths) + 2) + "|")
    means = {}
    for w in weights:
        cells = [table[(k, w)] for k in depths]
        means[w] = (np.mean([c[0] for c in cells]), np.mean([c[1] for c in cells]))
        print(f"| {w:.1f} | " + " | ".join(f"{c[0]:.3f} / {c[1]:.4f}" for c in cells)
              + f" | {means[w][0]:.4f} / {means[w][1]:.4f} |")
    half = means[0.5]
    better = [w for w in weights if w != 0.5 and means[w][0] < half[0] and means[w][1] < half[1]]
    if better:
        best = min(better, key=lambda w: means[w][0] / half[0] + means[w][1] / half[1])
        print(f"rule: w = {best} beats 1/2 on both means ({means[best][0]:.4f} / {means[best][1]:.4f})")
    else:
        print("rule: no weight beats 1/2 on both means; nothing changes")


if __name__ == "__main__":
    main()
