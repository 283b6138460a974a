"""Diagnostic (not part of any model): the direct trees' weight in the served blend, one weight for
promotion weeks (the target week's `deal` or `feat` on) and another for the rest. The rule is in
BENCHMARKS.md ("The blend's weight by promotion state").

The trained model's served Dominick's point P blends C (the validation-chosen
combination, dumped as `combination`, D the direct per-step trees, `m_direct_gbm`). From
`forecast-bench` dumps of pre-test origins this scores w D + (1 - w) C with w = w_promo in
promotion weeks and w_quiet elsewhere, exactly as forecast-bench scores (MASE scaled by each
series' in-sample one-step naive MAE, averaged over series; WAPE pooled).

    FORECAST_DUMP=/tmp/dump_d1.csv forecast-bench --only dominicks --no-latency --skip-anchors \\
        --nested --nested-depth 1        (and 2, 3, 4)
    python3 bench/scripts/dominicks_blend_state.py 1:/tmp/dump_d1.csv 2:/tmp/dump_d2.csv ...
"""
import argparse

import numpy as np

from dominicks_dump import evaluate, read_blend

PROMO = [0.5, 0.6, 0.7, 0.8]
QUIET = [0.2, 0.3, 0.4, 0.5]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dumps", nargs="+", metavar="DEPTH:DUMP")
    args = ap.parse_args()
    table = {}
    for item in args.dumps:
        depth, d, direct, c = read_blend(item)
        promo = (d.deal.values > 0.5) | (d.feat.values > 0.5)
        print(f"depth {depth}: {promo.mean():.1%} of the points are promotion weeks, "
              f"{d.actual.values[promo].sum() / d.actual.sum():.1%} of the units")
        for wp in PROMO:
            for wq in QUIET:
                w = np.where(promo, wp, wq)
                table[(depth, wp, wq)] = evaluate(d, w * direct + (1.0 - w) * c)
    depths = sorted({k[0] for k in table})
    ref = np.mean([table[(dp, 0.5, 0.5)] for dp in depths], axis=0)
    print(f"\n| w_promo, w_quiet | " + " | ".join(f"depth {dp}" for dp in depths) + " | mean |")
    print("|---" * (len(depths) + 2) + "|")
    ok = []
    for wp in PROMO:
        for wq in QUIET:
            mean = np.mean([table[(dp, wp, wq)] for dp in depths], axis=0)
            cells = " | ".join(f"{table[(dp, wp, wq)][0]:.4f} / {table[(dp, wp, wq)][1]:.4f}" for dp in depths)
            print(f"| {wp}, {wq} | {cells} | {mean[0]:.4f} / {mean[1]:.4f} |")
            if (wp, wq) != (0.5, 0.5) and mean[0] < ref[0] and mean[1] < ref[1]:
                ok.append(((wp, wq), mean[0] / ref[0] + mean[1] / ref[1]))
    print(f"\npairs better than (0.5, 0.5) on both means: {[p for p, _ in ok]}")
    if ok:
        print(f"chosen by the rule: {min(ok, key=lambda x: x[1])[0]}")


if __name__ == "__main__":
    main()
