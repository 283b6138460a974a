"""Diagnostic (not part of any model): per-series price/deal/feat elasticities shrunk toward
their brand's mean, with a level moved by the series' recent residuals, on Dominick's orange juice.

For each store x brand series: ridge regression of log units on [1, log own price, deal, feat]
over the training part; with `shrink` > 0 the three slopes are pulled toward the brand's mean
slopes (prior precision `shrink`); the forecast for the 12 held-out weeks is the regression on
the known future covariates plus `lam` x the mean residual of the last `k` training weeks.
Held out as in forecast-bench: the last 12 rows of each series (depth 0 = the test weeks), or
first dropping 12 / 24 more rows (depth 1 / 2, the pre-test origins). MASE scaled by the
in-sample one-step naive MAE of units, WAPE pooled; forecasts exp(log forecast).

    python3 -m venv /tmp/pyvenv && /tmp/pyvenv/bin/pip install numpy pandas
    AUGUR_DATASETS=../shared/datasets /tmp/pyvenv/bin/python bench/scripts/dominicks_hierarchical_elasticity.py

Results of 2026-12-02 are in BENCHMARKS.md ("Hierarchical elasticities").
"""
import os

import numpy as np
import pandas as pd

DATA = os.path.join(os.environ.get("AUGUR_DATASETS", "../shared/datasets"), "dominicks/oj_yx.csv")
H = 12

df = pd.read_csv(DATA)
df["price"] = df.apply(lambda r: r[f"price{int(r.brand)}"], axis=1)
df = df.sort_values(["store", "brand", "week"])
SER = [dict(b=b, y=g.logmove.values, p=np.log(g.price.values), d=g.deal.values.astype(float),
            f=g.feat.values.astype(float)) for (s, b), g in df.groupby(["store", "brand"])]


def design(S, lo, hi):
    return np.column_stack([np.ones(hi - lo), S["p"][lo:hi], S["d"][lo:hi], S["f"][lo:hi]])


def run(depth, shrink, k, lam, ridge=1.0):
    cuts = [len(S["y"]) - H * (depth + 1) for S in SER]
    betas = []
    for S, cut in zip(SER, cuts):
        X, y = design(S, 0, cut), S["y"][:cut]
        betas.append(np.linalg.solve(X.T @ X + ridge * np.diag([0, 1, 1, 1]), X.T @ y))
    betas = np.array(betas)
    brands = np.array([S["b"] for S in SER])
    mase, num, den = [], 0.0, 0.0
    for i, (S, cut) in enumerate(zip(SER, cuts)):
        X, y = design(S, 0, cut), S["y"][:cut]
        b = betas[i]
        if shrink > 0:
            P = np.diag([0, shrink, shrink, shrink])
            b = np.linalg.solve(X.T @ X + P, X.T @ y + P @ betas[brands == S["b"]].mean(0))
        r = y - X @ b
        level = lam * r[-k:].mean() if k > 0 else 0.0
        fc = np.exp(design(S, cut, cut + H) @ b + level)
        actual = np.exp(S["y"][cut:cut + H])
        e = np.abs(actual - fc)
        mase.append(e.mean() / np.mean(np.abs(np.diff(np.exp(y)))))
        num += e.sum()
        den += actual.sum()
    return np.mean(mase), num / den


print("shrink k lam | MASE/WAPE 24-12 weeks before test | 12 weeks before | test weeks")
for shrink in [0, 5, 20, 50, 200]:
    for k, lam in [(0, 0), (4, 0.5), (8, 0.5), (8, 1.0), (12, 0.7)]:
        cells = ["%.3f/%.3f" % run(depth, shrink, k, lam) for depth in (2, 1, 0)]
        print(shrink, k, lam, "|", " | ".join(cells), flush=True)
