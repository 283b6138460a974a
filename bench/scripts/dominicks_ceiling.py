"""Diagnostic (not part of any model): how far below the anchors can a model get on Dominick's
orange juice with the contract's information, if it is even handed the scored weeks' own sales
of the other stores?

The categorical LightGBM anchor (one model per horizon step; last 8 log units at the origin, the
target week's log own price, deal and feat, store and brand as categories; LightGBM's defaults)
is fitted three ways and scored on the same 12 weeks of each series:
  - `anchor`: trained on the weeks before the scored ones only (a real forecast);
  - `oracle`: cross-fitted over 5 groups of stores: the model for a group's series is also
    trained on the scored weeks (the targets themselves) of every other store, with the same
    features. It knows how sales answered prices and promotions in those very weeks, which no
    forecaster does, but not the week itself;
  - `oracle+week`: the same with the target's calendar week as a feature too: it can read each
    brand's chain-wide promotion events of the scored weeks off the other stores.
Scored as forecast-bench scores: the last 12 rows of each series held out (depth 0, the
contract's test weeks), or first dropping 12 / 24 more rows (depth 1 / 2, the pre-test
origins); MASE scaled by the in-sample one-step naive MAE of units, averaged over series; WAPE
pooled over all series and weeks.

    python3 -m venv /tmp/pyv && /tmp/pyv/bin/pip install numpy pandas scikit-learn lightgbm
    AUGUR_DATASETS=../shared/datasets /tmp/pyv/bin/python bench/scripts/dominicks_ceiling.py
"""
import lightgbm as lgb
import numpy as np

from dominicks_common import H, load, score, series_at

L, FOLDS = 8, 5
df = load()


def run(depth):
    series = series_at(df, depth)
    stores = sorted({S["s"] for S in series})
    fold_of = {s: i % FOLDS for i, s in enumerate(stores)}
    # Per step: training rows (target before the scored weeks), scored-week rows (target in the
    # scored weeks; the origin rows of the scored series are the test rows).
    train = {h: ([], [], []) for h in range(1, H + 1)}
    scored = {h: ([], [], []) for h in range(1, H + 1)}
    test = {h: [] for h in range(1, H + 1)}
    for k, S in enumerate(series):
        y, p, d, f, w, cut = S["y"], S["p"], S["d"], S["f"], S["w"], S["cut"]
        for t in range(L, cut + 1):
            base = [S["s"], S["b"]] + list(y[t - L:t][::-1])
            for h in range(1, H + 1):
                j = t + h - 1
                if j >= cut + H:
                    continue
                x = base + [p[j], d[j], f[j], w[j]]
                if t == cut:
                    test[h].append(x)
                if j < cut:
                    train[h][0].append(x)
                    train[h][1].append(y[j])
                else:
                    scored[h][0].append(x)
                    scored[h][1].append(y[j])
                    scored[h][2].append(fold_of[S["s"]])
    test_fold = np.array([fold_of[S["s"]] for S in series])
    out = {}
    for name in ["anchor", "oracle", "oracle+week"]:
        cols = slice(None) if name == "oracle+week" else slice(0, -1)
        preds = np.zeros((len(series), H))
        for h in range(1, H + 1):
            tx, ty = np.array(train[h][0])[:, cols], np.array(train[h][1])
            X = np.array(test[h])[:, cols]
            if name == "anchor":
                m = lgb.LGBMRegressor(verbose=-1).fit(tx, ty, categorical_feature=[0, 1])
                preds[:, h - 1] = m.predict(X)
                continue
            sx, sy = np.array(scored[h][0])[:, cols], np.array(scored[h][1])
            sf = np.array(scored[h][2])
            for fo in range(FOLDS):
                keep = sf != fo
                m = lgb.LGBMRegressor(verbose=-1).fit(
                    np.vstack([tx, sx[keep]]), np.concatenate([ty, sy[keep]]),
                    categorical_feature=[0, 1])
                rows = test_fold == fo
                preds[rows, h - 1] = m.predict(X[rows])
        out[name] = score(series, preds)
        print(f"depth={depth} {name:12s} MASE {out[name][0]:.3f} WAPE {out[name][1]:.3f}", flush=True)
    return out


for depth in [2, 1, 0]:
    run(depth)
