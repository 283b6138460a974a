"""Diagnostic (not part of any model): do the same store's other brands' prices and promotions of
the target week help the issue's global LightGBM on Dominick's orange juice?

The issue names the own-brand price, `deal` and `feat` of the horizon as known in advance. A
retailer also knows its plan for the other brands on the same shelf (each of them is itself a
series whose own price and promotions are known in advance), and in the data a competitor's
deal may take sales away. This script measures whether that information would help, before any
model change: the categorical LightGBM anchor (one model per horizon step, last 8 log units, log
own price, deal and feat of the target week, store and brand as categories), with and without
cross-brand features of the target week:
  - `rel`: own log price minus the mean log price of the store's other brands that week;
  - `min`: own log price minus the lowest other brand's log price;
  - `ndeal`, `nfeat`: how many of the store's other brands are on deal / featured that week
    (from the other series' rows of the same store and week; 0 where a brand has no row).
Scored as in forecast-bench: last 12 rows of each series held out (depth 0), or first dropping
12 / 24 more rows (depth 1 / 2, the pre-test origins); MASE scaled by the in-sample one-step
naive MAE of units, WAPE pooled.

    python3 -m venv /tmp/pyv && /tmp/pyv/bin/pip install numpy pandas scikit-learn lightgbm
    AUGUR_DATASETS=../shared/datasets /tmp/pyv/bin/python bench/scripts/dominicks_cross_brand.py
"""
import os

import numpy as np
import pandas as pd

from dominicks_common import fit_and_score

DATA = os.path.join(os.environ.get("AUGUR_DATASETS", "../shared/datasets"), "dominicks/oj_yx.csv")
if not os.path.exists(DATA):
    raise SystemExit(f"DATASET MISSING: {DATA} (set AUGUR_DATASETS)")
H, L = 12, 8

df = pd.read_csv(DATA)
prices = df[[f"price{b}" for b in range(1, 12)]].to_numpy()
df["price"] = prices[np.arange(len(df)), df.brand.to_numpy() - 1]
logp = np.log(prices)
own = np.log(df.price.to_numpy())
others_mean = (logp.sum(axis=1) - own) / 10.0
mask = np.ones_like(logp, dtype=bool)
mask[np.arange(len(df)), df.brand.to_numpy() - 1] = False
others_min = np.where(mask, logp, np.inf).min(axis=1)
df["rel"] = own - others_mean
df["rmin"] = own - others_min
sw_deal = df.groupby(["store", "week"]).deal.sum()
sw_feat = df.groupby(["store", "week"]).feat.sum()
key = pd.MultiIndex.from_arrays([df.store, df.week])
df["ndeal"] = sw_deal.reindex(key).to_numpy() - df.deal.to_numpy()
df["nfeat"] = sw_feat.reindex(key).to_numpy() - df.feat.to_numpy()
df = df.sort_values(["store", "brand", "week"])

VARIANTS = {
    "own only": [],
    "rel+min": ["rel", "rmin"],
    "ndeal+nfeat": ["ndeal", "nfeat"],
    "all four": ["rel", "rmin", "ndeal", "nfeat"],
}


def run(depth, cols):
    series = []
    for (s, b), g in df.groupby(["store", "brand"]):
        n = len(g)
        cut = n - H * (depth + 1)
        k = cut + H
        series.append(dict(s=s, b=b, y=g.logmove.values[:k], p=np.log(g.price.values[:k]),
                           d=g.deal.values[:k], f=g.feat.values[:k],
                           x=g[cols].to_numpy()[:k], cut=cut))
    train_x = {h: [] for h in range(1, H + 1)}
    train_y = {h: [] for h in range(1, H + 1)}
    test_x = {h: [] for h in range(1, H + 1)}
    for S in series:
        y, p, d, f, X, cut = S["y"], S["p"], S["d"], S["f"], S["x"], S["cut"]
        for t in range(L, cut + 1):
            base = [S["s"], S["b"]] + list(y[t - L:t][::-1])
            for h in range(1, H + 1):
                j = t + h - 1
                x = base + [p[j], d[j], f[j]] + list(X[j])
                if t == cut:
                    test_x[h].append(x)
                elif j < cut:
                    train_x[h].append(x)
                    train_y[h].append(y[j])
    return fit_and_score(series, train_x, train_y, test_x)


for depth in [2, 1, 0]:
    for name, cols in VARIANTS.items():
        m, w = run(depth, cols)
        print(f"depth={depth} {name:12s}: MASE {m:.3f} WAPE {w:.3f}", flush=True)
