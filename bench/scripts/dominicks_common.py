"""Shared by the Dominick's diagnostic scripts: fit one LightGBM per horizon step on log units and
score the held-out 12 weeks as forecast-bench does (MASE scaled by the in-sample one-step naive
MAE of units, averaged over series; WAPE pooled over all series and weeks)."""
import lightgbm as lgb
import numpy as np

H = 12


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
