//! Training without looking into the future.
//!
//! For each example cutoff `c < cutoff`: the customers' point-in-time features as of `c` from the
//! feature store, the BTYD models fitted on the histories as of `c`, and the label "no order in
//! `(c, e]`" with `e = min(c + horizon, cutoff)`, read from the features as of `e`. No read ever
//! asks for a moment after `cutoff`. Customers are split by a hash of their id into a training
//! part and a held-out part (model selection among the combinations and Platt calibration).

use std::collections::BTreeMap;

use augur_model::ModelMeta;
use augur_model::calibrate::Platt;
use augur_model::metrics;
use chrono::{DateTime, Utc};

use crate::btyd::{BgNbd, ParetoNbd, Rfm};
use crate::error::{Error, Result};
use crate::features::{self, BTYD_GROUP, Btyd, Column, Record, SEQ_GROUP};
use crate::fs::FeatureStore;
use crate::model::{ChurnModel, MODEL_NAME, Spec};
use crate::nam::{Nam, NamConfig};

const DAY: i64 = 86_400;

/// A training job's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainParams {
    /// Seconds; the latest moment any read looks at.
    pub cutoff: i64,
    pub horizon_days: u32,
    /// Seconds; empty = chosen from the data.
    pub example_cutoffs: Vec<i64>,
    pub validation_fraction: f64,
    pub nam: NamConfig,
    pub tiers: [f64; 3],
    /// Restrict training to these combinations (empty = all).
    pub variants: Vec<String>,
}

pub const DEFAULT_HORIZON_DAYS: u32 = 90;
pub const DEFAULT_TIERS: [f64; 3] = [0.5, 0.7, 0.85];
/// The combinations validation chooses from: the NAM over everything with the order-sequence GRU
/// (`nam_seq`), without it (`nam`), without the horizon-aware BTYD columns or the sequence
/// (`nam_no_btyd`), and over the BTYD columns alone (`btyd`).
pub const VARIANTS: &[&str] = &["nam_seq", "nam", "nam_no_btyd", "btyd"];

impl TrainParams {
    pub fn new(cutoff: i64) -> Self {
        TrainParams {
            cutoff,
            horizon_days: DEFAULT_HORIZON_DAYS,
            example_cutoffs: Vec::new(),
            validation_fraction: 0.2,
            nam: NamConfig::default(),
            tiers: DEFAULT_TIERS,
            variants: Vec::new(),
        }
    }

    /// Applies `{"nam.hidden": "16", ...}` overrides; an unknown key or bad value names the key.
    pub fn apply_hyperparameters(&mut self, hp: &BTreeMap<String, String>) -> Result<()> {
        fn num<T: std::str::FromStr>(k: &str, v: &str) -> Result<T> {
            v.trim().parse().map_err(|_| {
                Error::invalid(
                    format!("hyperparameters[{k}]"),
                    format!("cannot parse {v:?}"),
                )
            })
        }
        for (k, v) in hp {
            match k.as_str() {
                "nam.hidden" => self.nam.hidden = num::<usize>(k, v)?.clamp(1, 256),
                "nam.epochs" => self.nam.epochs = num::<usize>(k, v)?.clamp(1, 1_000),
                "nam.lr" => self.nam.lr = num(k, v)?,
                "nam.batch" => self.nam.batch = num::<usize>(k, v)?.max(1),
                "nam.weight_decay" => self.nam.weight_decay = num(k, v)?,
                "nam.seq_hidden" => self.nam.seq_hidden = num::<usize>(k, v)?.clamp(1, 128),
                "seed" => self.nam.seed = num(k, v)?,
                "tier.medium" => self.tiers[0] = num(k, v)?,
                "tier.high" => self.tiers[1] = num(k, v)?,
                "tier.critical" => self.tiers[2] = num(k, v)?,
                "variants" => {
                    self.variants = v
                        .split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect();
                    if let Some(bad) = self
                        .variants
                        .iter()
                        .find(|s| !VARIANTS.contains(&s.as_str()))
                    {
                        return Err(Error::invalid(
                            format!("hyperparameters[{k}]"),
                            format!("unknown variant {bad:?}; known: {}", VARIANTS.join(", ")),
                        ));
                    }
                }
                _ => {
                    return Err(Error::invalid(
                        format!("hyperparameters[{k}]"),
                        "unknown hyper-parameter; known: nam.hidden, nam.epochs, nam.lr, nam.batch, nam.weight_decay, nam.seq_hidden, seed, tier.medium, tier.high, tier.critical, variants",
                    ));
                }
            }
        }
        if !(self.tiers[0] <= self.tiers[1] && self.tiers[1] <= self.tiers[2])
            || self.tiers.iter().any(|t| !(0.0..=1.0).contains(t))
        {
            return Err(Error::invalid(
                "hyperparameters[tier.*]",
                "tier thresholds must be in [0, 1] and increasing",
            ));
        }
        if !(self.nam.lr > 0.0 && self.nam.lr.is_finite()) {
            return Err(Error::invalid("hyperparameters[nam.lr]", "must be > 0"));
        }
        Ok(())
    }
}

/// Training progress callback: (stage, fraction, message).
pub trait Report: Send {
    fn report(&mut self, stage: &str, fraction: f64, message: String);
}

impl<F: FnMut(&str, f64, String) + Send> Report for F {
    fn report(&mut self, stage: &str, fraction: f64, message: String) {
        self(stage, fraction, message)
    }
}

/// One training example.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub customer_id: String,
    /// Seconds.
    pub at: i64,
    /// Weeks of the label window.
    pub window_weeks: f64,
    pub record: Record,
    pub churned: bool,
    /// Orders in the label window.
    pub purchases: f64,
    pub validation: bool,
}

/// Everything read from the feature store for training.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub examples: Vec<Example>,
    /// BTYD fitted as of each example cutoff (same order as `cutoffs`).
    pub cutoffs: Vec<i64>,
    pub btyd_at: Vec<Btyd>,
    /// Features of every customer as of `cutoff` (for the served BTYD fit).
    pub at_cutoff: Vec<Record>,
    /// The customer ids of `at_cutoff`, in the same order.
    pub at_cutoff_ids: Vec<String>,
    pub names: Vec<String>,
    pub data_start: Option<i64>,
}

/// FNV-1a: a stable hash for the customer split.
fn stable_hash(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

pub fn is_validation(id: &str, fraction: f64) -> bool {
    (stable_hash(id) % 10_000) as f64 / 10_000.0 < fraction
}

/// Fits BG/NBD and Pareto/NBD on the purchase summaries, grouping identical ones.
pub fn fit_btyd(recs: &[&Record]) -> Btyd {
    fit_btyd_summaries(&btyd_summaries(recs))
}

/// The distinct purchase summaries (x, t_x, T in weeks, to a day) of `recs`, each with its count.
pub fn btyd_summaries(recs: &[&Record]) -> Vec<(Rfm, f64)> {
    let mut counts: BTreeMap<(i64, i64, i64), usize> = BTreeMap::new();
    for r in recs {
        if let Some(c) = r.rfm() {
            let k = (
                c.x as i64,
                (c.t_x * 7.0).round() as i64,
                (c.t * 7.0).round() as i64,
            );
            *counts.entry(k).or_default() += 1;
        }
    }
    // Weighted data: repeat each distinct summary by its count through a compact list.
    counts
        .into_iter()
        .map(|((x, tx, t), n)| {
            (
                Rfm {
                    x: x as f64,
                    t_x: tx as f64 / 7.0,
                    t: t as f64 / 7.0,
                },
                n as f64,
            )
        })
        .collect()
}

/// Fits BG/NBD and Pareto/NBD on weighted purchase summaries (CPU-bound: seconds on big data).
pub fn fit_btyd_summaries(data: &[(Rfm, f64)]) -> Btyd {
    Btyd {
        bgnbd: BgNbd::fit_weighted(data),
        pareto: ParetoNbd::fit_weighted(data),
    }
}

/// Reads the training examples. Every feature-store read is as of a moment <= `p.cutoff`; the
/// reads are long, so they are not bound by the request-path call timeout.
pub async fn load(fs: &FeatureStore, p: &TrainParams, report: &mut dyn Report) -> Result<Dataset> {
    let fs = &fs.for_training();
    report.report("loading", 0.02, "listing customers".into());
    let ids = fs.customers().await?;
    if ids.is_empty() {
        return Err(Error::invalid(
            "cutoff",
            "the feature store knows no customers",
        ));
    }
    let attrs = fs.attribute_keys(p.cutoff).await?;
    let mut names: Vec<String> = features::NUMERIC
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    names.extend(features::CATEGORICAL.iter().map(|s| s.to_string()));
    names.extend(attrs.iter().map(|k| format!("attr_{k}")));
    names.extend((1..=features::SEQ_STEPS).flat_map(features::seq_features));

    report.report(
        "loading",
        0.05,
        format!("features of {} customers as of the cutoff", ids.len()),
    );
    let rows = fs.features(&ids, Some(p.cutoff), &names).await?;
    let names = rows.names.clone();
    let at_cut = features::records(rows);
    let data_start = at_cut
        .iter()
        .flatten()
        .filter_map(|r| r.get("days_since_first_order"))
        .fold(None::<f64>, |m, d| Some(m.map_or(d, |m| m.max(d))))
        .map(|d| p.cutoff - (d * DAY as f64) as i64);

    let h = i64::from(p.horizon_days) * DAY;
    let cutoffs: Vec<i64> = if p.example_cutoffs.is_empty() {
        let start = data_start.unwrap_or(p.cutoff);
        let span = p.cutoff - start;
        let mut v = Vec::new();
        let mut c = p.cutoff - h;
        // At least half a horizon of history before each example cutoff, at most 6 cutoffs.
        while c - start >= h / 2 && v.len() < 6 {
            v.push(c);
            c -= h;
        }
        if v.is_empty() && span >= 2 * DAY {
            // Too little history for a full label window: one cutoff a third of the span back,
            // its label window shorter than the horizon (the BTYD columns extrapolate).
            v.push(p.cutoff - (span / 3).max(DAY));
        }
        v
    } else {
        p.example_cutoffs.clone()
    };
    if cutoffs.is_empty() {
        return Err(Error::invalid(
            "example_cutoffs",
            "not enough history before the cutoff for any training example",
        ));
    }
    for (i, &c) in cutoffs.iter().enumerate() {
        if c >= p.cutoff {
            return Err(Error::invalid(
                format!("example_cutoffs[{i}]"),
                "must be before the cutoff",
            ));
        }
    }

    let mut examples = Vec::new();
    let mut btyd_at = Vec::new();
    for (i, &c) in cutoffs.iter().enumerate() {
        let frac = 0.1 + 0.3 * i as f64 / cutoffs.len() as f64;
        let end = (c + h).min(p.cutoff);
        report.report(
            "features",
            frac,
            format!(
                "examples as of {} (labels until {})",
                fmt_ts(c),
                fmt_ts(end)
            ),
        );
        let at_c = features::records(fs.features(&ids, Some(c), &names).await?);
        let label_names = vec!["frequency_lifetime".to_string()];
        let at_e = features::records(fs.features(&ids, Some(end), &label_names).await?);
        let known: Vec<&Record> = at_c.iter().flatten().collect();
        if known.is_empty() {
            return Err(Error::invalid(
                format!("example_cutoffs[{i}]"),
                "no customers known before this example cutoff",
            ));
        }
        // The fits are CPU-bound (seconds on large data): off the async workers, which must keep
        // serving requests and answering HTTP/2 keep-alive pings meanwhile.
        let summaries = btyd_summaries(&known);
        let btyd = tokio::task::spawn_blocking(move || fit_btyd_summaries(&summaries))
            .await
            .map_err(|e| Error::Internal(format!("BTYD fit task: {e}")))?;
        btyd_at.push(btyd);
        let window_weeks = (end - c) as f64 / (7 * DAY) as f64;
        for ((id, rc), re) in ids.iter().zip(at_c).zip(&at_e) {
            let Some(rec) = rc else { continue };
            let before = rec.get("frequency_lifetime").unwrap_or(0.0);
            let after = re
                .as_ref()
                .and_then(|r| r.get("frequency_lifetime"))
                .unwrap_or(before);
            let purchases = (after - before).max(0.0);
            examples.push(Example {
                customer_id: id.clone(),
                at: c,
                window_weeks,
                record: rec,
                churned: purchases == 0.0,
                purchases,
                validation: is_validation(id, p.validation_fraction),
            });
        }
    }
    Ok(Dataset {
        examples,
        cutoffs,
        btyd_at,
        at_cutoff_ids: ids
            .iter()
            .zip(&at_cut)
            .filter(|(_, r)| r.is_some())
            .map(|(id, _)| id.clone())
            .collect(),
        at_cutoff: at_cut.into_iter().flatten().collect(),
        names,
        data_start,
    })
}

fn fmt_ts(t: i64) -> String {
    DateTime::<Utc>::from_timestamp(t, 0)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// Validation scores of one combination.
#[derive(Debug, Clone)]
pub struct Evaluated {
    pub variant: String,
    pub columns: Vec<Column>,
    pub nam: Nam,
    pub metrics: BTreeMap<String, f64>,
    pub platt: Platt,
}

fn cross_fit_platt(logits: &[f64], labels: &[bool]) -> Vec<f64> {
    // Two folds: each half calibrated by the other, so the reported log loss is honest.
    let idx: Vec<usize> = (0..logits.len()).collect();
    let (a, b): (Vec<usize>, Vec<usize>) = idx.iter().partition(|&&i| i % 2 == 0);
    let fit = |s: &[usize]| {
        let l: Vec<f64> = s.iter().map(|&i| logits[i]).collect();
        let y: Vec<bool> = s.iter().map(|&i| labels[i]).collect();
        Platt::fit(&l, &y)
    };
    let (pa, pb) = (fit(&a), fit(&b));
    let mut out = vec![0.0; logits.len()];
    for &i in &a {
        out[i] = pb.apply(logits[i]);
    }
    for &i in &b {
        out[i] = pa.apply(logits[i]);
    }
    out
}

/// Trains the combinations, picks the best on the held-out customers, calibrates it.
pub fn fit(ds: &Dataset, p: &TrainParams, report: &mut dyn Report) -> Result<ChurnModel> {
    let btyd_of = |e: &Example| -> &Btyd {
        let i = ds.cutoffs.iter().position(|&c| c == e.at).unwrap_or(0);
        &ds.btyd_at[i]
    };
    let train: Vec<&Example> = ds.examples.iter().filter(|e| !e.validation).collect();
    let valid: Vec<&Example> = ds.examples.iter().filter(|e| e.validation).collect();
    if train.is_empty() || valid.is_empty() {
        return Err(Error::invalid(
            "validation_fraction",
            format!(
                "{} training and {} validation examples: need both",
                train.len(),
                valid.len()
            ),
        ));
    }
    let train_recs: Vec<&Record> = train.iter().map(|e| &e.record).collect();
    let cands = features::candidates(&ds.names, &train_recs);
    let all_cols = features::fit_columns(cands, |s| {
        train
            .iter()
            .map(|e| features::raw(s, &e.record, btyd_of(e), e.window_weeks))
            .collect()
    });

    // When some label window is shorter than the horizon, only the combinations with the
    // horizon-aware BTYD columns can extrapolate to it: a horizon-blind network would answer for
    // the short window, and the held-out customers (whose labels are as short) cannot tell.
    let truncated = train
        .iter()
        .any(|e| e.window_weeks * 7.0 + 0.5 < f64::from(p.horizon_days));
    let variants: Vec<String> = if p.variants.is_empty() {
        VARIANTS
            .iter()
            .filter(|v| !(truncated && **v == "nam_no_btyd"))
            .map(|s| s.to_string())
            .collect()
    } else {
        p.variants.clone()
    };
    let y_train: Vec<bool> = train.iter().map(|e| e.churned).collect();
    let y_valid: Vec<bool> = valid.iter().map(|e| e.churned).collect();
    let mut evaluated = Vec::new();
    for (vi, variant) in variants.iter().enumerate() {
        let cols: Vec<Column> = all_cols
            .iter()
            .filter(|c| match variant.as_str() {
                "nam_seq" => true,
                "nam" => c.group != SEQ_GROUP,
                "nam_no_btyd" => c.group != BTYD_GROUP && c.group != SEQ_GROUP,
                "btyd" => c.group == BTYD_GROUP,
                _ => true,
            })
            .cloned()
            .collect();
        let seq = features::seq_layout(&cols);
        if cols.is_empty() || (variant == "nam_seq" && seq.is_none()) {
            continue;
        }
        let enc = |e: &Example| features::encode(&cols, &e.record, btyd_of(e), e.window_weeks);
        let x_train: Vec<Vec<f32>> = train.iter().map(|e| enc(e)).collect();
        let x_valid: Vec<Vec<f32>> = valid.iter().map(|e| enc(e)).collect();
        let base_frac = 0.45 + 0.45 * vi as f64 / variants.len() as f64;
        let step = 0.45 / variants.len() as f64;
        let epochs = p.nam.epochs.max(1);
        let nam = Nam::train(&x_train, &y_train, cols.len(), seq, &p.nam, |ep, loss| {
            report.report(
                "training",
                base_frac + step * (ep + 1) as f64 / epochs as f64,
                format!("{variant}: epoch {}/{epochs} loss {loss:.4}", ep + 1),
            );
        })?;
        let logits: Vec<f64> = x_valid.iter().map(|x| nam.logit(x)).collect();
        let probs = cross_fit_platt(&logits, &y_valid);
        let mut m = BTreeMap::new();
        m.insert(
            "roc_auc".to_string(),
            metrics::roc_auc(&logits, &y_valid).unwrap_or(f64::NAN),
        );
        m.insert(
            "pr_auc".to_string(),
            metrics::pr_auc(&logits, &y_valid).unwrap_or(f64::NAN),
        );
        m.insert("brier".to_string(), metrics::brier(&probs, &y_valid));
        m.insert("log_loss".to_string(), metrics::log_loss(&probs, &y_valid));
        let platt = Platt::fit(&logits, &y_valid);
        evaluated.push(Evaluated {
            variant: variant.clone(),
            columns: cols,
            nam,
            metrics: m,
            platt,
        });
    }
    let best = evaluated
        .iter()
        .min_by(|a, b| a.metrics["log_loss"].total_cmp(&b.metrics["log_loss"]))
        .cloned()
        .ok_or_else(|| Error::Internal("no model combination could be trained".into()))?;
    report.report(
        "validating",
        0.92,
        format!(
            "chose {} (validation log loss {:.4}, ROC-AUC {:.4})",
            best.variant, best.metrics["log_loss"], best.metrics["roc_auc"]
        ),
    );

    // The served BTYD models: fitted on every customer's history as of the cutoff.
    let cut_recs: Vec<&Record> = ds.at_cutoff.iter().collect();
    let btyd = fit_btyd(&cut_recs);
    // Expected purchases: BG/NBD over each past-only label window against what happened.
    let (mut actual, mut predicted) = (0.0, 0.0);
    for e in &train {
        if let Some(c) = e.record.rfm() {
            actual += e.purchases;
            predicted += btyd_of(e).bgnbd.expected(&c, e.window_weeks);
        }
    }
    let purchase_scale = if predicted > 0.0 && actual > 0.0 {
        actual / predicted
    } else {
        1.0
    };
    let aovs: Vec<f64> = cut_recs
        .iter()
        .filter_map(|r| r.get("avg_order_value"))
        .filter(|v| *v > 0.0)
        .collect();
    let default_order_value = if aovs.is_empty() {
        0.0
    } else {
        aovs.iter().sum::<f64>() / aovs.len() as f64
    };

    let mut meta = ModelMeta::new(MODEL_NAME);
    meta.data_start = ds
        .data_start
        .and_then(|t| DateTime::<Utc>::from_timestamp(t, 0));
    meta.data_end = DateTime::<Utc>::from_timestamp(p.cutoff, 0);
    meta.training_examples = train.len() as i64;
    for e in &evaluated {
        for (k, v) in &e.metrics {
            meta.validation_metrics
                .insert(format!("{}.{k}", e.variant), *v);
        }
    }
    for (k, v) in &best.metrics {
        meta.validation_metrics.insert(k.clone(), *v);
    }
    meta.validation_metrics
        .insert("validation_examples".into(), valid.len() as f64);
    meta.validation_metrics
        .insert("purchase_scale".into(), purchase_scale);
    let prm = &mut meta.parameters;
    prm.insert("horizon_days".into(), p.horizon_days.to_string());
    prm.insert("variant".into(), best.variant.clone());
    prm.insert("tier.medium".into(), p.tiers[0].to_string());
    prm.insert("tier.high".into(), p.tiers[1].to_string());
    prm.insert("tier.critical".into(), p.tiers[2].to_string());
    prm.insert("nam.hidden".into(), p.nam.hidden.to_string());
    prm.insert("nam.epochs".into(), p.nam.epochs.to_string());
    prm.insert("nam.lr".into(), p.nam.lr.to_string());
    prm.insert("nam.batch".into(), p.nam.batch.to_string());
    prm.insert("nam.weight_decay".into(), p.nam.weight_decay.to_string());
    prm.insert("nam.seq_hidden".into(), p.nam.seq_hidden.to_string());
    prm.insert("seed".into(), p.nam.seed.to_string());
    prm.insert(
        "example_cutoffs".into(),
        ds.cutoffs
            .iter()
            .map(|&c| fmt_ts(c))
            .collect::<Vec<_>>()
            .join(","),
    );
    prm.insert("columns".into(), best.columns.len().to_string());
    prm.insert(
        "bgnbd".into(),
        format!(
            "r={:.4} alpha={:.4} a={:.4} b={:.4} (weeks)",
            btyd.bgnbd.r, btyd.bgnbd.alpha, btyd.bgnbd.a, btyd.bgnbd.b
        ),
    );
    prm.insert(
        "pareto_nbd".into(),
        format!(
            "r={:.4} alpha={:.4} s={:.4} beta={:.4} (weeks)",
            btyd.pareto.r, btyd.pareto.alpha, btyd.pareto.s, btyd.pareto.beta
        ),
    );
    meta.description = format!(
        "neural additive model ({}) over behavioural features{}{}, Platt-calibrated on held-out customers; expected purchases from BG/NBD x {:.3}",
        best.variant,
        if best.variant == "nam_no_btyd" {
            ""
        } else {
            " and BG/NBD + Pareto/NBD outputs"
        },
        if best.variant == "nam_seq" {
            " and a GRU over the last orders"
        } else {
            ""
        },
        purchase_scale
    );
    // What the served inputs are compared with: the training examples' features.
    let reference = crate::model::fit_reference(&best.columns, train.iter().map(|e| &e.record));
    Ok(ChurnModel {
        meta,
        reference: Some(reference),
        spec: Spec {
            columns: best.columns,
            btyd,
            platt: best.platt,
            horizon_days: p.horizon_days,
            tiers: p.tiers,
            purchase_scale,
            default_order_value,
            currency: String::new(),
            variant: best.variant,
            horizon_stretch: None,
        },
        nam: best.nam,
    })
}

/// The rehearsal of a horizon stretch, or `None` when there is none to rehearse.
///
/// When the label windows (longest `l` days) are shorter than the horizon `h`, the served model
/// answers for `h` from labels of `l` days, through the horizon-aware BTYD columns, and its
/// probabilities come out miscalibrated for `h` (on CDNOW: mean 0.79 for an actual 0.70). The
/// past can show how much: the same stretch, one window earlier. "Now" becomes `cutoff - l`, the
/// horizon `l` (whose outcome is known by `cutoff`), the labels `l * l / h` days long; the same
/// pipeline is trained on that, scored as of the earlier "now", and a Platt map from its
/// probabilities' log-odds to the known outcomes becomes the served model's `horizon_stretch`.
/// Every read stays at or before `cutoff`.
pub fn rehearsal_params(p: &TrainParams, ds: &Dataset, variant: &str) -> Option<TrainParams> {
    let longest = ds
        .examples
        .iter()
        .map(|e| e.window_weeks * 7.0)
        .fold(0.0, f64::max);
    let h = f64::from(p.horizon_days);
    if !(longest >= 1.0 && longest + 0.5 < h) {
        return None;
    }
    let l = longest.round() as i64;
    let now = p.cutoff - l * DAY;
    let short = ((longest * longest / h).round() as i64).max(1);
    let example = now - short * DAY;
    // The earlier examples need history before them (as training asks of its own examples).
    let start = ds.data_start?;
    if example - start < short * DAY {
        return None;
    }
    let mut r = p.clone();
    r.cutoff = now;
    r.horizon_days = u32::try_from(l).ok()?;
    r.example_cutoffs = vec![example];
    r.variants = vec![variant.to_string()];
    Some(r)
}

/// When `ds`'s labels are shorter than the horizon, fits the horizon-stretch map on a rehearsal
/// (see [`rehearsal_params`]) and gives it to `model`, with the rehearsal's figures. A rehearsal
/// the data cannot support (too little history, outcomes of one kind only) is skipped, said in
/// the progress report and the log; any other failure (the feature store) fails the Train.
pub async fn add_horizon_stretch(
    fs: &FeatureStore,
    p: &TrainParams,
    ds: &Dataset,
    model: &mut ChurnModel,
    report: &mut dyn Report,
) -> Result<()> {
    let Some(rp) = rehearsal_params(p, ds, &model.spec.variant) else {
        return Ok(());
    };
    let what = format!(
        "{} d horizon from {} d labels, as of {}",
        rp.horizon_days,
        rp.example_cutoffs
            .first()
            .map_or(0, |e| (rp.cutoff - e) / DAY),
        fmt_ts(rp.cutoff)
    );
    report.report(
        "rehearsal",
        0.93,
        format!("horizon stretch rehearsed: {what}"),
    );
    let mut quiet = |_: &str, _: f64, _: String| {};
    match rehearse(fs, &rp, &mut quiet).await {
        Ok((map, figures)) => {
            model.spec.horizon_stretch = Some(map);
            model.meta.validation_metrics.extend(figures);
            model.meta.parameters.insert(
                "horizon_stretch".into(),
                format!("a={:.4} b={:.4} (rehearsal: {what})", map.a, map.b),
            );
        }
        Err(e @ Error::Invalid(_)) => {
            tracing::warn!(error = %e, "horizon-stretch rehearsal skipped");
            report.report("rehearsal", 0.94, format!("rehearsal skipped: {e}"));
        }
        Err(e) => return Err(e),
    }
    Ok(())
}

/// Fits the horizon-stretch map on a rehearsal (see [`rehearsal_params`]): trains `rp`'s model,
/// scores every customer known at `rp.cutoff` for `rp.horizon_days`, and fits Platt from the
/// log-odds of those probabilities to "no order in `(rp.cutoff, rp.cutoff + horizon]`", read as
/// of that end (<= the real cutoff). Returns the map and the rehearsal's figures.
pub async fn rehearse(
    fs: &FeatureStore,
    rp: &TrainParams,
    report: &mut dyn Report,
) -> Result<(Platt, BTreeMap<String, f64>)> {
    let ds = load(fs, rp, report).await?;
    let rp2 = rp.clone();
    let (ds, model) = tokio::task::spawn_blocking(move || {
        let mut quiet = |_: &str, _: f64, _: String| {};
        let m = fit(&ds, &rp2, &mut quiet);
        (ds, m)
    })
    .await
    .map_err(|e| Error::Internal(format!("rehearsal task: {e}")))?;
    let model = model?;
    let end = rp.cutoff + i64::from(rp.horizon_days) * DAY;
    let after = features::records(
        fs.for_training()
            .features(
                &ds.at_cutoff_ids,
                Some(end),
                &["frequency_lifetime".to_string()],
            )
            .await?,
    );
    let (mut z, mut y) = (Vec::new(), Vec::new());
    for (rec, later) in ds.at_cutoff.iter().zip(&after) {
        let p = model.probability(model.predict_top(rec, 0).logit);
        let before = rec.get("frequency_lifetime").unwrap_or(0.0);
        let later = later
            .as_ref()
            .and_then(|r| r.get("frequency_lifetime"))
            .unwrap_or(before);
        z.push(features::logit(p));
        y.push(later <= before);
    }
    if z.is_empty() || y.iter().all(|&v| v) || y.iter().all(|&v| !v) {
        return Err(Error::invalid(
            "horizon_days",
            "the horizon-stretch rehearsal has no outcomes of both kinds",
        ));
    }
    let map = Platt::fit(&z, &y);
    let before: Vec<f64> = z
        .iter()
        .map(|&z| augur_model::calibrate::sigmoid(z))
        .collect();
    let after: Vec<f64> = z.iter().map(|&z| map.apply(z)).collect();
    let mut m = BTreeMap::new();
    m.insert("stretch.customers".to_string(), z.len() as f64);
    m.insert(
        "stretch.churn_rate".to_string(),
        y.iter().filter(|&&v| v).count() as f64 / y.len() as f64,
    );
    m.insert(
        "stretch.mean_probability_before".to_string(),
        before.iter().sum::<f64>() / before.len() as f64,
    );
    m.insert(
        "stretch.brier_before".to_string(),
        metrics::brier(&before, &y),
    );
    m.insert(
        "stretch.brier_after_in_sample".to_string(),
        metrics::brier(&after, &y),
    );
    m.insert(
        "stretch.roc_auc".to_string(),
        metrics::roc_auc(&z, &y).unwrap_or(f64::NAN),
    );
    Ok((map, m))
}
