"""Scoring of `forecast-bench` Dominick's dumps (`FORECAST_DUMP`), as forecast-bench scores: MASE
scaled by each series' in-sample one-step naive MAE (the dump's `scale`), averaged over series;
WAPE pooled over all series and weeks. numpy and pandas only."""
import numpy as np
import pandas as pd


def evaluate(d, f):
    """(MASE, WAPE) of the forecast `f` (one value per row of the dump `d`)."""
    e = np.abs(d.actual.values - f)
    mase = pd.Series(e / d.scale.values).groupby([d.store.values, d.brand.values]).mean().mean()
    return mase, e.sum() / d.actual.sum()


def combination(d):
    """The chosen combination C before the blend with the direct trees: the dump's `combination`
    column, or, in dumps written before it (when the blend was 1:1 everywhere), 2 P - D."""
    if "combination" in d:
        return d["combination"].values
    return 2.0 * d.point.values - d["m_direct_gbm"].values


def read_blend(item):
    """`DEPTH:DUMP` -> (depth, the dump, D the direct trees' forecast, C the combination)."""
    depth, path = item.split(":", 1)
    d = pd.read_csv(path)
    direct = d["m_direct_gbm"].values
    if np.isnan(direct).any():
        raise SystemExit(f"{path}: {int(np.isnan(direct).sum())} points without the direct trees")
    return int(depth), d, direct, combination(d)
