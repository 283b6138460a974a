"""Diagnostic (not part of any model): would averaging several fits of the direct per-step trees
lower the served blend's error? The rule is in BENCHMARKS.md ("Averaging the direct trees").

The trained model's served Dominick's point is P = 0.5 C + 0.5 D (C the validation-chosen
combination, dumped as `combination`, D the direct trees, `m_direct_gbm`). For each origin this
fits, with LightGBM, setting 16 of `dominicks_tuning_bounds.py` (the direct trees' design: the
reference, S16) and two averages of it:
  - bag:  5 fits each drawing 70% of the rows for every tree (subsample 0.7, subsample_freq 1,
          random_state 1-5), their log forecasts averaged (one forest of 5 x 200 trees);
  - lags: the 4-lag fit and the same fit with 8 lags, log forecasts averaged;
and scores 0.5 C + 0.5 exp(S) for each, exactly as forecast-bench scores (MASE scaled by each
series' in-sample one-step naive MAE, averaged over series; WAPE pooled).

    FORECAST_DUMP=/tmp/dump_d1.csv forecast-bench --only dominicks --no-latency --skip-anchors \\
        --nested --nested-depth 1        (and 2, 3, 4)
    python3 bench/scripts/dominicks_direct_average.py 1:/tmp/dump_d1.csv 2:/tmp/dump_d2.csv ...
"""
import argparse

import numpy as np
import pandas as pd

from dominicks_dump import evaluate, read_blend
from dominicks_tuning_bounds import build, draw, predict

SEEDS = [1, 2, 3, 4, 5]


def candidates(s16, data):
    """Log forecasts (series x step) of the reference and of each average."""
    ref = predict(s16, data)
    bagged = dict(s16, subsample=0.7)
    bag = np.mean([predict(bagged, data, seed) for seed in SEEDS], axis=0)
    lags = 0.5 * (ref + predict(dict(s16, lags=8), data))
    return {"S16": ref, "bag": bag, "lags": lags}


def fitted(s16, depth, cache):
    """(series keys, candidates' log forecasts) at `depth`, from `cache` when it has them."""
    path = f"{cache}/direct_average_d{depth}.npz" if cache else None
    if path:
        try:
            z = np.load(path)
            return list(zip(z["s"], z["b"])), {k: z[k] for k in ("S16", "bag", "lags")}
        except FileNotFoundError:
            pass
    data = build(depth)
    keys = [(S["s"], S["b"]) for S in data[0]]
    preds = candidates(s16, data)
    if path:
        np.savez(path, s=[k[0] for k in keys], b=[k[1] for k in keys], **preds)
    return keys, preds


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", default=None, metavar="DIR",
                    help="keep each origin's LightGBM forecasts in DIR (reused when present)")
    ap.add_argument("--fit-only", default=None, metavar="DEPTHS",
                    help="only fit and cache the LightGBM forecasts of these depths (needs --cache)")
    ap.add_argument("dumps", nargs="*", metavar="DEPTH:DUMP")
    args = ap.parse_args()
    s16 = draw(7, 48)[16]
    print("setting 16:", s16)
    names = ["C", "S16", "bag", "lags", "B:S16", "B:bag", "B:lags"]
    if args.fit_only:
        for depth in (int(x) for x in args.fit_only.split(",")):
            fitted(s16, depth, args.cache)
            print(f"depth {depth}: fitted", flush=True)
        return
    rows = {}
    for item in args.dumps:
        depth, d, direct, c = read_blend(item)
        series, preds_of = fitted(s16, depth, args.cache)
        rows[(depth, "C")] = evaluate(d, c)
        for name, preds in preds_of.items():
            s = pd.DataFrame([(st, br, j, np.exp(preds[i, j]))
                              for i, (st, br) in enumerate(series) for j in range(preds.shape[1])],
                             columns=["store", "brand", "step", "s"])
            m = d.merge(s, on=["store", "brand", "step"], how="left")
            if m.s.isna().any() or len(m) != len(d):
                raise SystemExit(f"{item}: {int(m.s.isna().sum())} points without a {name} forecast")
            rows[(depth, name)] = evaluate(m, m.s.values)
            rows[(depth, f"B:{name}")] = evaluate(m, 0.5 * c + 0.5 * m.s.values)
        print(f"depth {depth}: " + ", ".join(f"{n} {rows[(depth, n)][0]:.4f} / {rows[(depth, n)][1]:.4f}"
                                             for n in names), flush=True)
    pre = sorted({dp for dp, _ in rows if dp > 0})
    if not pre:
        return
    mean = {n: np.mean([rows[(dp, n)] for dp in pre], axis=0) for n in names}
    print(f"mean over depths {pre}: " + ", ".join(f"{n} {mean[n][0]:.4f} / {mean[n][1]:.4f}" for n in names))
    ref = mean["B:S16"]
    ok = [n for n in ("B:bag", "B:lags") if mean[n][0] < ref[0] and mean[n][1] < ref[1]]
    print(f"candidates better than the reference blend on both means: {ok}")
    if ok:
        best = min(ok, key=lambda n: mean[n][0] / ref[0] + mean[n][1] / ref[1])
        print(f"chosen by the rule: {best}")


if __name__ == "__main__":
    main()
