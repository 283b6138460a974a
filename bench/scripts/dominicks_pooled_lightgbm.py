"""Diagnostic (not part of any model): does a brand-/store-pooled recent residual (or, with the
argument `depth`, the discount depth) help the issue's global LightGBM on Dominick's orange juice?

The categorical LightGBM anchor (one model per horizon step, last 8 log units, log own price,
deal and feat of the target week, store and brand as categories), with and without four pooled
features at each origin: the mean over the series' brand (all stores) and over its store (all
brands) and over everything of log units minus each series' training mean, for the last 4
weeks, and the brand's for the last 12. Scored as in forecast-bench: last 12 rows of each series
held out (depth 0), or first dropping 12 / 24 more rows (depth 1 / 2, the pre-test origins);
MASE scaled by the in-sample one-step naive MAE of units, WAPE pooled.

With the argument `depth` the extra features are instead the target week's log price minus the
highest and minus the median log price of the series' last 26 weeks before the origin (how deep
a price cut is against the regular price, which the recent mean mixes with earlier promotions).

    python3 -m venv /tmp/pyvenv && /tmp/pyvenv/bin/pip install numpy pandas scikit-learn lightgbm
    AUGUR_DATASETS=../shared/datasets /tmp/pyvenv/bin/python bench/scripts/dominicks_pooled_lightgbm.py [depth]

Results of 2026-12-01 are in BENCHMARKS.md ("Long-run levels, raw log targets and the LightGBM
anchor as a member"), those of `depth` (2026-12-02) under "Yearly season and discount depth".
"""
import os
import sys

import numpy as np
import pandas as pd

from dominicks_common import fit_and_score

DATA = os.path.join(os.environ.get("AUGUR_DATASETS", "../shared/datasets"), "dominicks/oj_yx.csv")
H, L = 12, 8
DEPTH = len(sys.argv) > 1 and sys.argv[1] == "depth"

df = pd.read_csv(DATA)
df["price"] = [row[f"price{int(row.brand)}"] for _, row in df.iterrows()]
df = df.sort_values(["store", "brand", "week"])


def run(depth, pooled):
    series = []
    for (s, b), g in df.groupby(["store", "brand"]):
        n = len(g)
        cut = n - H * (depth + 1)
        k = cut + H
        series.append(dict(s=s, b=b, w=g.week.values[:k], y=g.logmove.values[:k],
                           p=np.log(g.price.values[:k]), d=g.deal.values[:k],
                           f=g.feat.values[:k], cut=cut))
    rows = []
    for S in series:
        m = S["y"][: S["cut"]].mean()
        for i in range(S["cut"]):
            rows.append((S["s"], S["b"], S["w"][i], S["y"][i] - m))
    R = pd.DataFrame(rows, columns=["s", "b", "w", "z"])
    by_brand = {b: v for b, v in R.groupby(["b", "w"]).z.mean().groupby(level=0)}
    by_store = {s: v for s, v in R.groupby(["s", "w"]).z.mean().groupby(level=0)}
    overall = R.groupby("w").z.mean()

    def pool(ser, w, k=4):
        weeks = ser.index.get_level_values(-1)
        v = ser[(weeks <= w) & (weeks > w - k)]
        return v.mean() if len(v) else 0.0

    cache = {}

    def pooled_features(S, w):
        key = (S["s"], S["b"], w)
        if key not in cache:
            cache[key] = [pool(by_brand[S["b"]], w), pool(by_store[S["s"]], w),
                          pool(overall, w), pool(by_brand[S["b"]], w, 12)]
        return cache[key]

    train_x = {h: [] for h in range(1, H + 1)}
    train_y = {h: [] for h in range(1, H + 1)}
    test_x = {h: [] for h in range(1, H + 1)}
    for S in series:
        y, p, d, f, cut = S["y"], S["p"], S["d"], S["f"], S["cut"]
        for t in range(L, cut + 1):
            base = [S["s"], S["b"]] + list(y[t - L:t][::-1])
            if not pooled:
                extra = []
            elif DEPTH:
                recent = p[max(0, t - 26):t]
                extra = [recent.max(), np.median(recent)]
            else:
                extra = pooled_features(S, S["w"][t - 1])
            for h in range(1, H + 1):
                j = t + h - 1
                if DEPTH and extra:
                    x = base + [p[j], d[j], f[j], p[j] - extra[0], p[j] - extra[1]]
                else:
                    x = base + [p[j], d[j], f[j]] + extra
                if t == cut:
                    test_x[h].append(x)
                elif j < cut:
                    train_x[h].append(x)
                    train_y[h].append(y[j])
    mase, wape = fit_and_score(series, train_x, train_y, test_x)
    print(f"depth={depth} pooled={pooled}: MASE {mase:.3f} WAPE {wape:.3f}", flush=True)


for depth in [0, 1, 2]:
    for pooled in [False, True]:
        run(depth, pooled)
