"""Which split were the credit anchors of issue #6 run on?

The issue quotes scikit-learn anchors "run here on that split" (a stratified 70/30 split with a
fixed seed): logistic regression (one-hot, scaling, imputation) ROC-AUC 0.844 / PR-AUC 0.688 /
Brier 0.136, HistGradientBoosting 0.831 / 0.651. This script fits that logistic regression and
HistGradientBoosting on scikit-learn's `train_test_split(..., test_size=0.3, stratify=y,
random_state=seed)` for a few seeds: random_state=42 reproduces them (0.844 / 0.688 / 0.136 and
0.831 / 0.649), the others do not. `risk-bench` draws that same split in Rust
(`augur_model::split::sklearn_stratified_split`; test `services/risk/tests/credit_split.rs`).
Not part of the benchmark (which runs no Python); needs `pip install scikit-learn pandas`.

    python3 bench/scripts/credit_anchor_split.py [path/to/credit_data.csv]
"""
import os
import sys

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

root = os.environ.get("AUGUR_DATASETS", "../shared/datasets")
path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "credit/credit_data.csv")
df = pd.read_csv(path)
y = (df.pop("Status") == "bad").values.astype(int)
cat = [c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])]
df[cat] = df[cat].astype(object)
num = [c for c in df.columns if c not in cat]
for seed in [42, 0, 1, 7, 13, 123, 2024, 2026]:
    xtr, xte, ytr, yte = train_test_split(df, y, test_size=0.3, stratify=y, random_state=seed)
    pre = ColumnTransformer([
        ("n", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), num),
        ("c", make_pipeline(SimpleImputer(strategy="most_frequent"),
                            OneHotEncoder(handle_unknown="ignore")), cat),
    ])
    p = make_pipeline(pre, LogisticRegression(max_iter=2000)).fit(xtr, ytr).predict_proba(xte)[:, 1]
    pre_trees = ColumnTransformer([
        ("n", "passthrough", num),
        ("c", make_pipeline(SimpleImputer(strategy="most_frequent"),
                            OneHotEncoder(handle_unknown="ignore", sparse_output=False)), cat),
    ])
    hgb = make_pipeline(pre_trees, HistGradientBoostingClassifier(random_state=seed))
    q = hgb.fit(xtr, ytr).predict_proba(xte)[:, 1]
    print(f"random_state={seed}: logistic {roc_auc_score(yte, p):.3f} / "
          f"{average_precision_score(yte, p):.3f} / {brier_score_loss(yte, p):.3f}, "
          f"HistGB {roc_auc_score(yte, q):.3f} / {average_precision_score(yte, q):.3f}, "
          f"test index sum {int(np.sort(xte.index.values).sum())}", flush=True)
