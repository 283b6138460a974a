"""Diagnostic (not part of any model): is there a yearly season in Dominick's orange juice that
a 52-week lag could use?

Residuals of log units after each series' mean and one pooled regression (series fixed effects)
on log own price, deal and feat; then the autocorrelation of the weekly mean residual over all
913 series (the shock common to the stores) at lags 1-53, per brand at lag 52, and of the
series' own residuals (common shock removed) at lag 52. Weeks are the data's week numbers, so
missing weeks do not shift the lags.

    python3 -m venv /tmp/pyvenv && /tmp/pyvenv/bin/pip install numpy
    AUGUR_DATASETS=../shared/datasets /tmp/pyvenv/bin/python bench/scripts/dominicks_yearly_season.py

Results of 2026-12-02 are in BENCHMARKS.md ("Yearly season and discount depth").
"""
import collections
import csv
import os

import numpy as np

DATA = os.path.join(os.environ.get("AUGUR_DATASETS", "../shared/datasets"), "dominicks/oj_yx.csv")

series = collections.defaultdict(list)
for r in csv.DictReader(open(DATA)):
    b = int(r["brand"])
    series[(int(r["store"]), b)].append(
        (int(r["week"]), float(r["logmove"]), np.log(float(r[f"price{b}"])),
         float(r["deal"]), float(r["feat"])))
xs, ys, keys = [], [], []
for k, v in series.items():
    a = np.array(v)
    xs.append(a[:, 2:5] - a[:, 2:5].mean(0))
    ys.append(a[:, 1] - a[:, 1].mean())
    keys.append((k, a[:, 0].astype(int)))
beta = np.linalg.lstsq(np.vstack(xs), np.concatenate(ys), rcond=None)[0]
print("pooled coefficients (log price, deal, feat):", np.round(beta, 3))
res = {}
for (k, weeks), x, y in zip(keys, xs, ys):
    for w, e in zip(weeks, y - x @ beta):
        res[(k, int(w))] = e


def weekly_mean(pred):
    by = collections.defaultdict(list)
    for (k, w), e in res.items():
        if pred(k):
            by[w].append(e)
    return {w: np.mean(v) for w, v in by.items()}


def corr(c, lag):
    ws = [w for w in c if w - lag in c]
    return np.corrcoef([c[w] for w in ws], [c[w - lag] for w in ws])[0, 1], len(ws)


common = weekly_mean(lambda k: True)
print(f"common shock: sd {np.std(list(common.values())):.3f}")
for lag in [1, 2, 4, 13, 26, 51, 52, 53]:
    r, n = corr(common, lag)
    print(f"  lag {lag:2}: autocorrelation {r:+.3f} ({n} week pairs)")
for b in range(1, 12):
    r, n = corr(weekly_mean(lambda k, b=b: k[1] == b), 52)
    print(f"brand {b:2}: lag-52 autocorrelation of its mean residual {r:+.3f} ({n} pairs)")
a, c = [], []
for (k, w), e in res.items():
    if (k, w - 52) in res:
        a.append(e - common[w])
        c.append(res[(k, w - 52)] - common[w - 52])
print(f"series' own residuals (common shock removed), lag 52: {np.corrcoef(a, c)[0, 1]:+.3f} ({len(a)} pairs)")
