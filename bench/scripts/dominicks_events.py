"""Diagnostic (not part of any model): which chain-wide promotion events carry the trained
model's Dominick's error?

Dominick's promotes a brand in (nearly) all its stores the same week. For a `forecast-bench`
dump (`FORECAST_DUMP`, see BENCHMARKS.md) scored at nested depth D (0: the test weeks; 1 / 2:
12 / 24 weeks before them), the points are grouped by brand and calendar week: each event's
stores, mean deal / feat, summed actual and forecast units, and its share of all absolute
error; then the share carried by the 3 and 10 largest. With `--brand B --weeks A-Z`, the
brand's median store units, price, deal and feat by week over the raw data (how alike its
promotions look and how differently they sell).

    python3 bench/scripts/dominicks_events.py /tmp/m1.csv 1 /tmp/m2.csv 2
    python3 bench/scripts/dominicks_events.py --brand 4 --weeks 124-140
"""
import sys

import numpy as np
import pandas as pd

from dominicks_common import load, series_at

raw = load()

args = sys.argv[1:]
if args[:1] == ["--brand"]:
    brand, (a, z) = int(args[1]), map(int, args[3].split("-"))
    g = raw[(raw.brand == brand) & raw.week.between(a, z)]
    print(g.groupby("week").agg(stores=("store", "size"),
                                units=("logmove", lambda v: np.exp(v).median()),
                                price=("price", "median"), deal=("deal", "mean"),
                                feat=("feat", "mean")).round(3).to_string())
    sys.exit()

for path, depth in zip(args[::2], map(int, args[1::2])):
    d = pd.read_csv(path)
    weeks = {(S["s"], S["b"], j): w
             for S in series_at(raw, depth) for j, w in enumerate(S["w"][S["cut"]:])}
    d["week"] = [weeks[(s, b, j)] for s, b, j in zip(d.store, d.brand, d.step)]
    d["ae"] = (d.actual - d.point).abs()
    ev = d.groupby(["week", "brand"]).agg(stores=("ae", "size"), deal=("deal", "mean"),
                                          feat=("feat", "mean"), actual=("actual", "sum"),
                                          forecast=("point", "sum"), ae=("ae", "sum"))
    ev["share"] = ev.ae / d.ae.sum()
    ev["f/a"] = ev.forecast / ev.actual
    ev = ev.sort_values("ae", ascending=False)
    print(f"{path} (depth {depth}): {len(ev)} brand-weeks; the 3 / 10 largest carry "
          f"{ev.share.head(3).sum():.1%} / {ev.share.head(10).sum():.1%} of the absolute error")
    print(ev.drop(columns="ae").head(10).round(3).to_string())
