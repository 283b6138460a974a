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
import os
import sys

import numpy as np
import pandas as pd

DATA = os.path.join(os.environ.get("AUGUR_DATASETS", "../shared/datasets"), "dominicks/oj_yx.csv")
if not os.path.exists(DATA):
    raise SystemExit(f"DATASET MISSING: {DATA} (set AUGUR_DATASETS)")
H = 12
raw = pd.read_csv(DATA)
prices = raw[[f"price{b}" for b in range(1, 12)]].to_numpy()
raw["price"] = prices[np.arange(len(raw)), raw.brand.to_numpy() - 1]
raw = raw.sort_values(["store", "brand", "week"])

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
    weeks = {}
    for (s, b), g in raw.groupby(["store", "brand"]):
        cut = len(g) - H * (depth + 1)
        for j, w in enumerate(g.week.values[cut:cut + H]):
            weeks[(s, b, j)] = w
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
