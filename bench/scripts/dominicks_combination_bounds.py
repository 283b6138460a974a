"""Diagnostic (not part of any model): how much better could the trained model's combination
layer do on Dominick's orange juice with the members it has?

Reads `forecast-bench` dumps, whose `m_<member>` columns hold every member's forecast of the
scored weeks (the same members the served combination averages):

    FORECAST_DUMP=/tmp/m1.csv forecast-bench --only dominicks --no-latency --skip-anchors --nested
    FORECAST_DUMP=/tmp/m2.csv ... --nested --nested-depth 2    (and 3, 4; /tmp/m0.csv: no --nested)
    python3 bench/scripts/dominicks_combination_bounds.py /tmp/m0.csv /tmp/m1.csv ...

For each dump, bounds that use the scored weeks' own outcomes (so none of them is a forecast):
  - `best equal`: the equal-weight combination of at most 4 members with the lowest OWA (relative
    sMAPE + relative MASE against Naive2, point-level, the trained model's own rule) on the
    scored weeks themselves;
  - `best per state`: the same chosen separately for weeks with a deal or a feature and for the
    others (a combination per promotion state);
  - `LP weights`: non-negative member weights (any sum) minimising the scored weeks' absolute
    error, pooled (WAPE) or scaled by each series' naive MAE (MASE), by linear programming.
MASE per series averaged over series, WAPE pooled, as forecast-bench scores. Needs numpy,
pandas and scipy (which scikit-learn brings).
"""
import itertools
import sys

import numpy as np
import pandas as pd
from scipy.optimize import linprog
from scipy.sparse import csr_matrix, hstack, identity


def evaluate(d, f):
    e = np.abs(d.actual.values - f)
    mase = pd.Series(e / d.scale.values).groupby([d.store.values, d.brand.values]).mean().mean()
    return mase, e.sum() / d.actual.sum()


def combine(d, members):
    return np.maximum(np.mean([d[c].values for c in members], axis=0), 0.0)


def best_equal(d, mask, cols):
    a, sc = d.actual.values[mask], d.scale.values[mask]

    def smape(f):
        return np.mean(2 * np.abs(a - f) / np.maximum(np.abs(a) + np.abs(f), 1e-9))

    def scaled(f):
        return np.mean(np.abs(a - f) / sc)

    n2 = d.m_naive2.values[mask]
    rs, rm = smape(n2), scaled(n2)
    vals = {c: d[c].values[mask] for c in cols}
    best = (np.inf, None)
    for k in range(1, 5):
        for members in itertools.combinations(cols, k):
            f = np.maximum(np.mean([vals[c] for c in members], axis=0), 0.0)
            owa = 0.5 * smape(f) / rs + 0.5 * scaled(f) / rm
            if owa < best[0]:
                best = (owa, members)
    return best[1]


def lp_weights(d, cols, weight):
    X, a = d[cols].values, d.actual.values
    n, k = X.shape
    c = np.concatenate([np.zeros(k), weight, weight])
    A = hstack([csr_matrix(X), identity(n), -identity(n)]).tocsr()
    r = linprog(c, A_eq=A, b_eq=a, bounds=(0, None), method="highs")
    return r.x[:k]


def short(members):
    return "+".join(m[2:] for m in members)


for path in sys.argv[1:]:
    d = pd.read_csv(path)
    cols = [c for c in d.columns if c.startswith("m_") and np.isfinite(d[c]).all()]
    promo = ((d.deal > 0) | (d.feat > 0)).values
    print(f"{path}: {len(d)} points, promotion share {promo.mean():.2f}")
    print("  trained model (validation-chosen)  MASE %.3f WAPE %.3f" % evaluate(d, d.point.values))
    eq = best_equal(d, np.ones(len(d), bool), cols)
    print(f"  best equal ({short(eq)})  MASE %.3f WAPE %.3f" % evaluate(d, combine(d, eq)))
    p, q = best_equal(d, promo, cols), best_equal(d, ~promo, cols)
    f = np.where(promo, combine(d, p), combine(d, q))
    print(f"  best per state ({short(p)} / {short(q)})  MASE %.3f WAPE %.3f" % evaluate(d, f))
    for name, weight in [("WAPE", np.ones(len(d))), ("MASE", 1.0 / d.scale.values)]:
        w = lp_weights(d, cols, weight)
        shown = ", ".join(f"{c[2:]} {x:.2f}" for c, x in zip(cols, w) if x > 0.01)
        print(f"  LP weights for {name} ({shown})  MASE %.3f WAPE %.3f"
              % evaluate(d, d[cols].values @ w))
