"""Would Dominick's forecasts gain from a different blend in promotion weeks? A diagnostic on
`forecast-bench` dumps of the pre-test origins (not the test weeks):

    FORECAST_DUMP=/tmp/dump1.csv forecast-bench --only dominicks --no-latency --nested
    FORECAST_DUMP=/tmp/dump2.csv forecast-bench --only dominicks --no-latency --nested --nested-depth 2
    python3 bench/scripts/dominicks_promo_blend.py /tmp/dump1.csv /tmp/dump2.csv

For each anchor column of the dump and weight w, the trained model's point forecast is replaced
by w * anchor + (1 - w) * point only in weeks with a deal or a feature (`promo`), only in the
other weeks (`nonpromo`), or everywhere (`all`); MASE (per series, scaled by the in-sample
one-step naive MAE, averaged) / WAPE (pooled). Needs numpy and pandas.
"""
import sys

import numpy as np
import pandas as pd


def score(d, f):
    e = (d.actual - f).abs()
    mase = (e / d.scale).groupby([d.store, d.brand]).mean().mean()
    return mase, e.sum() / d.actual.sum()


for path in sys.argv[1:]:
    d = pd.read_csv(path)
    promo = (d.deal > 0) | (d.feat > 0)
    print(path, "points", len(d), "promotion share %.2f" % promo.mean())
    print("  trained %.3f / %.3f" % score(d, d.point))
    for col in ["gbm_anchor_cat", "regression", "arima", "gbm_anchor"]:
        for w in [0.25, 0.5, 1.0]:
            for name, mask in [("promo", promo), ("nonpromo", ~promo), ("all", promo | ~promo)]:
                f = np.where(mask, w * d[col] + (1 - w) * d.point, d.point)
                s = pd.Series(f, index=d.index)
                print("  %-15s w=%.2f %-8s %.3f / %.3f" % ((col, w, name) + score(d, s)))
