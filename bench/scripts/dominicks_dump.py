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
