"""Diagnostic (not part of any model): do the stores' demographics help a global LightGBM on
Dominick's orange juice?

`oj_storedemo.csv` describes each of the 83 stores (share of over-60s, education, ethnic share,
log income, large households, working women, house values, distance to and volume of the
nearest competing stores). These are static: known before any forecast. Hoch et al. (1995)
found that they explain much of how the stores' price elasticities differ, which a global model
cannot learn from a store's arbitrary number.

The issue's global LightGBM (one model per horizon step, last 8 log units, log own price, deal
and feat of the target week, store and brand) in four variants:
- `num`: store and brand as plain numbers (what our `global_gbm` member sees);
- `num+demo`: the same plus the 11 demographic columns;
- `cat`: store and brand as categories (the categorical anchor);
- `cat+demo`: categories plus the demographics.
Scored as in forecast-bench: the last 12 rows of each series held out (depth 0), or first
dropping 12 / 24 more rows (depth 1 / 2, the pre-test origins, on which a decision is made);
MASE scaled by the in-sample one-step naive MAE of units, WAPE pooled.

    python3 -m venv /tmp/pyvenv && /tmp/pyvenv/bin/pip install numpy pandas lightgbm
    AUGUR_DATASETS=../shared/datasets /tmp/pyvenv/bin/python bench/scripts/dominicks_store_demographics.py
"""
import os

import numpy as np
import pandas as pd

from dominicks_common import fit_and_score

ROOT = os.path.join(os.environ.get("AUGUR_DATASETS", "../shared/datasets"), "dominicks")
H, L = 12, 8

df = pd.read_csv(os.path.join(ROOT, "oj_yx.csv"))
demo = pd.read_csv(os.path.join(ROOT, "oj_storedemo.csv")).set_index("STORE")
df["price"] = df.to_numpy()[np.arange(len(df)), df.columns.get_loc("price1") + df.brand.to_numpy() - 1]
df = df.sort_values(["store", "brand", "week"])
missing = sorted(set(df.store) - set(demo.index))
if missing:
    print(f"stores without demographics (NaN features): {missing}")


def series_at(depth):
    out = []
    for (s, b), g in df.groupby(["store", "brand"]):
        n = len(g)
        cut = n - H * (depth + 1)
        k = cut + H
        out.append(dict(s=s, b=b, y=g.logmove.values[:k], p=np.log(g.price.values[:k]),
                        d=g.deal.values[:k], f=g.feat.values[:k], cut=cut,
                        demo=list(demo.loc[s].values) if s in demo.index else [np.nan] * demo.shape[1]))
    return out


def run(depth, variant):
    series = series_at(depth)
    with_demo = variant.endswith("+demo")
    cat = variant.startswith("cat")
    train_x = {h: [] for h in range(1, H + 1)}
    train_y = {h: [] for h in range(1, H + 1)}
    test_x = {h: [] for h in range(1, H + 1)}
    for S in series:
        y, p, d, f, cut = S["y"], S["p"], S["d"], S["f"], S["cut"]
        extra = S["demo"] if with_demo else []
        for t in range(L, cut + 1):
            base = [S["s"], S["b"]] + list(y[t - L:t][::-1])
            for h in range(1, H + 1):
                j = t + h - 1
                x = base + [p[j], d[j], f[j]] + extra
                if t == cut:
                    test_x[h].append(x)
                elif j < cut:
                    train_x[h].append(x)
                    train_y[h].append(y[j])
    mase, wape = fit_and_score(series, train_x, train_y, test_x, (0, 1) if cat else ())
    print(f"depth={depth} {variant:9}: MASE {mase:.3f} WAPE {wape:.3f}", flush=True)


for depth in [1, 2, 0]:
    for variant in ["num", "num+demo", "cat", "cat+demo"]:
        run(depth, variant)
