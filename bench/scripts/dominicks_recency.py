"""Diagnostic (not part of any model): do Dominick's sales answer prices and promotions
differently as time goes on, so that a global model should weigh recent weeks more?

`dominicks_ceiling.py` found that the categorical LightGBM anchor, if also trained on the scored
weeks of the other stores, gains 0.03-0.2 MASE and 0.05-0.06 WAPE without being told the week:
the response of the scored weeks differs from the history's on average. If the response drifts,
weighting each training example by its target's recency (weight 0.5^(age / half-life), the age
in weeks before the scored ones) should recover part of that gain without any look-ahead. The
anchor (one model per step, 8 lags, own log price / deal / feat of the target week, store and
brand as categories, LightGBM's defaults) with half-lives of 13, 26, 52 weeks and none.
Scored as forecast-bench scores (depth 0: the contract's test weeks; 1 / 2: the pre-test
origins 12 / 24 weeks earlier).

With `chain` as the first argument, no weights but two more features of the target week: the
share of the chain's stores with the brand on deal and on feature that week (is a chain-wide
promotion different from a store's own?).

    AUGUR_DATASETS=../shared/datasets /tmp/pyv/bin/python bench/scripts/dominicks_recency.py [chain] [DEPTH ...]
"""
import sys

import lightgbm as lgb
import numpy as np

from dominicks_common import H, load, score, series_at

L = 8
CHAIN = sys.argv[1:2] == ["chain"]
HALF_LIVES = [None] if CHAIN else [None, 52, 26, 13]
DEPTHS = [int(a) for a in sys.argv[1 + CHAIN:]] or [2, 1, 0]

df = load()
df = df.join(df.groupby(["brand", "week"]).agg(cd=("deal", "mean"), cf=("feat", "mean")),
             on=["brand", "week"])


def run(depth):
    series = series_at(df, depth, ("cd", "cf"))
    train = {h: ([], [], []) for h in range(1, H + 1)}
    test = {h: [] for h in range(1, H + 1)}
    for S in series:
        y, p, d, f, cut = S["y"], S["p"], S["d"], S["f"], S["cut"]
        for t in range(L, cut + 1):
            base = [S["s"], S["b"]] + list(y[t - L:t][::-1])
            for h in range(1, H + 1):
                j = t + h - 1
                x = base + [p[j], d[j], f[j]] + ([S["cd"][j], S["cf"][j]] if CHAIN else [])
                if t == cut:
                    test[h].append(x)
                elif j < cut:
                    train[h][0].append(x)
                    train[h][1].append(y[j])
                    train[h][2].append(cut - j)
    for hl in HALF_LIVES:
        preds = np.zeros((len(series), H))
        for h in range(1, H + 1):
            age = np.array(train[h][2], dtype=float)
            wt = None if hl is None else 0.5 ** (age / hl)
            m = lgb.LGBMRegressor(verbose=-1).fit(np.array(train[h][0]), np.array(train[h][1]),
                                                  sample_weight=wt, categorical_feature=[0, 1])
            preds[:, h - 1] = m.predict(np.array(test[h]))
        mase, wape = score(series, preds)
        print(f"depth={depth} {'chain shares ' if CHAIN else ''}half-life {str(hl):>4}: MASE {mase:.3f} WAPE {wape:.3f}",
              flush=True)


for depth in DEPTHS:
    run(depth)
