"""Diagnostic (not part of any model): a fixed equal-weight blend of the trained model's
Dominick's forecast with one setting of the contract's best anchor class (the global LightGBM,
one model per horizon step, from `dominicks_tuning_bounds.py`).

Reads `forecast-bench` dumps of the trained model (one per origin) and fits the LightGBM setting
at the same origin, then scores, exactly as forecast-bench scores (MASE scaled by each series'
in-sample one-step naive MAE, averaged over series; WAPE pooled), the trained model T, the
setting S alone and 0.5 T + 0.5 exp(S):

    FORECAST_DUMP=/tmp/t1.csv forecast-bench --only dominicks --no-latency --skip-anchors --nested
    FORECAST_DUMP=/tmp/t2.csv ... --nested --nested-depth 2    (3, 4; /tmp/t0.csv: no --nested)
    python3 bench/scripts/dominicks_blend.py --settings 0,16 1:/tmp/t1.csv 2:/tmp/t2.csv ...

Settings are numbered as `dominicks_tuning_bounds.py --seed 7 --settings 48` numbers them
(0: the categorical anchor; 16: the setting that search chose on depths 1-4).
"""
import argparse

import numpy as np
import pandas as pd

from dominicks_dump import evaluate
from dominicks_tuning_bounds import build, draw, predict


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--settings", default="0,16")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("dumps", nargs="+", metavar="DEPTH:DUMP")
    args = ap.parse_args()
    ks = [int(k) for k in args.settings.split(",")]
    settings = draw(args.seed, 48)
    rows = {}
    for item in args.dumps:
        depth, path = item.split(":", 1)
        depth = int(depth)
        d = pd.read_csv(path).sort_values(["store", "brand", "step"]).reset_index(drop=True)
        data = build(depth)
        series = data[0]
        rows[(depth, "T")] = evaluate(d, d.point.values)
        for k in ks:
            preds = predict(settings[k], data)
            s = pd.DataFrame([(S["s"], S["b"], j, np.exp(preds[i, j]))
                              for i, S in enumerate(series) for j in range(preds.shape[1])],
                             columns=["store", "brand", "step", "s"])
            m = d.merge(s, on=["store", "brand", "step"], how="left")
            if m.s.isna().any() or len(m) != len(d):
                raise SystemExit(f"{path}: {int(m.s.isna().sum())} points without a setting {k} forecast")
            rows[(depth, f"S{k}")] = evaluate(m, m.s.values)
            rows[(depth, f"B{k}")] = evaluate(m, 0.5 * m.point.values + 0.5 * m.s.values)
        print(f"depth {depth}: " + ", ".join(f"{n} {rows[(depth, n)][0]:.3f} / {rows[(depth, n)][1]:.4f}"
                                             for n in ["T"] + [f"{p}{k}" for k in ks for p in "SB"]),
              flush=True)
    pre = sorted({dp for dp, _ in rows if dp > 0})
    if pre:
        names = ["T"] + [f"{p}{k}" for k in ks for p in "SB"]
        mean = {n: np.mean([rows[(dp, n)] for dp in pre], axis=0) for n in names}
        print(f"mean over depths {pre}: " + ", ".join(f"{n} {mean[n][0]:.4f} / {mean[n][1]:.4f}" for n in names))
        ok = [n for n in names if n.startswith("B") and mean[n][0] < mean["T"][0] and mean[n][1] < mean["T"][1]]
        print(f"blends better than T on both means: {ok}")
        if ok:
            best = min(ok, key=lambda n: mean[n][0] / mean["T"][0] + mean[n][1] / mean["T"][1])
            print(f"chosen by the rule: {best}")


if __name__ == "__main__":
    main()
