"""Shared by the Dominick's diagnostic scripts: fit one LightGBM per horizon step on log units and
score the held-out 12 weeks as forecast-bench does (MASE scaled by the in-sample one-step naive
MAE of units, averaged over series; WAPE pooled over all series and weeks)."""
import os

import lightgbm as lgb
import numpy as np
import pandas as pd

H = 12


def load():
    """`oj_yx.csv` from `AUGUR_DATASETS` (loudly absent), with each row's own-brand `price`,
    sorted by store, brand and week."""
    path = os.path.join(os.environ.get("AUGUR_DATASETS", "../shared/datasets"),
                        "dominicks/oj_yx.csv")
    if not os.path.exists(path):
        raise SystemExit(f"DATASET MISSING: {path} (set AUGUR_DATASETS)")
    df = pd.read_csv(path)
    prices = df[[f"price{b}" for b in range(1, 12)]].to_numpy()
    df["price"] = prices[np.arange(len(df)), df.brand.to_numpy() - 1]
    return df.sort_values(["store", "brand", "week"])


def series_at(df, depth, extra=()):
    """One dict per store x brand, cut as forecast-bench cuts at nested depth `depth` (0: the
    last H rows held out; d: d x H more rows dropped first): store `s`, brand `b`, weeks `w`,
    log units `y`, log price `p`, `d`eal, `f`eat and the `extra` columns, up to the end of the
    held-out part, and `cut`, its start."""
    out = []
    for (s, b), g in df.groupby(["store", "brand"]):
        cut = len(g) - H * (depth + 1)
        k = cut + H
        S = dict(s=s, b=b, w=g.week.values[:k], y=g.logmove.values[:k],
                 p=np.log(g.price.values[:k]), d=g.deal.values[:k], f=g.feat.values[:k],
                 cut=cut)
        for c in extra:
            S[c] = g[c].values[:k]
        out.append(S)
    return out


def fit_and_score(series, train_x, train_y, test_x, categorical=(0, 1)):
    """`series`: dicts with log units `y` (history and the H held-out weeks) and `cut`, the
    held-out part's start; `train_x[h]`, `train_y[h]`, `test_x[h]` per step h = 1..H (one test
    row per series, in order). Returns (MASE, WAPE)."""
    preds = np.zeros((len(series), H))
    for h in range(1, H + 1):
        model = lgb.LGBMRegressor(verbose=-1)
        model.fit(np.array(train_x[h]), np.array(train_y[h]),
                  categorical_feature=list(categorical) if categorical else "auto")
        preds[:, h - 1] = model.predict(np.array(test_x[h]))
    return score(series, preds)


def score(series, preds):
    """MASE and WAPE of log-unit forecasts `preds` (one row of H per series, in order)."""
    mase, num, den = [], 0.0, 0.0
    for k, S in enumerate(series):
        actual = np.exp(S["y"][S["cut"]:S["cut"] + H])
        fc = np.exp(preds[k])
        scale = np.mean(np.abs(np.diff(np.exp(S["y"][: S["cut"]]))))
        mase.append(np.mean(np.abs(actual - fc)) / scale)
        num += np.abs(actual - fc).sum()
        den += actual.sum()
    return np.mean(mase), num / den
