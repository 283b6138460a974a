//! The service's domain: the served models, scoring with features from the feature store,
//! training (from the feature store or from data in the request), persistence.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use augur_model::calibrate::Platt;
use augur_model::monitor::{FeatureReference, ModelMonitor};
use augur_model::{ArtifactStore, ModelError, ModelMeta, ModelSlot, ReloadWatcher, TrainGate};
use augur_proto::featurestore::{self as fpb, Order, Review, event::Payload};
use candle_core::{Device, Tensor};
use chrono::{DateTime, Utc};
use tracing::Instrument;

use crate::embed::{self, Embedder};
use crate::error::Error;
use crate::fs::FeatureStore;
use crate::linear::ridge;
use crate::orders::{
    self, CustomerHistory, OrderFacts, OrderModel, OrderScore, Thresholds, VELOCITY_WINDOW_SECS,
    order_columns,
};
use crate::reviews::{
    self, Corpus, ReviewDoc, ReviewModel, ReviewScore, ReviewSignals, Sentiment, review_columns,
};
use crate::tabular::{
    Cell, Encoder, FitOptions, GbdtParams, IsolationForest, Learner, TabularModel, stratified_split,
};

pub const ORDER_MODEL: &str = "risk-order";
pub const REVIEW_MODEL: &str = "risk-review";
/// The training distribution saved beside a model, for the input drift statistics.
pub const REFERENCE_FILE: &str = "feature_reference.json";
/// Scored orders / reviews the input drift statistics look back over.
pub const DRIFT_WINDOW: usize = 1_000;

/// A model with its metadata.
#[derive(Debug)]
pub struct Served<T> {
    pub meta: ModelMeta,
    pub model: T,
}

/// Training options parsed from `TrainRequest.hyperparameters`.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainOptions {
    pub fit: FitOptions,
    pub thresholds: Thresholds,
    pub validation_fraction: f64,
    pub forest_trees: usize,
    pub seed: u64,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            fit: FitOptions::default(),
            thresholds: Thresholds {
                review: 0.3,
                reject: 0.8,
            },
            validation_fraction: 0.2,
            forest_trees: 100,
            seed: 42,
        }
    }
}

/// Known hyper-parameter keys.
pub const HYPERPARAMETERS: &[&str] = &[
    "seed",
    "decision.review",
    "decision.reject",
    "learners",
    "ratio_features",
    "select_folds",
    "lr.l2",
    "lr.epochs",
    "spline.knots",
    "gbdt.trees",
    "gbdt.depth",
    "gbdt.learning_rate",
    "forest.trees",
];

impl TrainOptions {
    /// Parses overrides; an unknown key or bad value names `hyperparameters[key]`.
    pub fn parse(map: &BTreeMap<String, String>, validation_fraction: f64) -> Result<Self, Error> {
        let mut o = TrainOptions::default();
        if validation_fraction != 0.0 {
            if !(validation_fraction > 0.0 && validation_fraction <= 0.5) {
                return Err(Error::invalid("validation_fraction", "must be in (0, 0.5]"));
            }
            o.validation_fraction = validation_fraction;
        }
        let mut keys: Vec<&String> = map.keys().collect();
        keys.sort();
        for k in keys {
            let v = map[k].trim();
            let field = format!("hyperparameters[{k}]");
            let bad = |what: &str| Error::invalid(field.clone(), format!("{what}, got {v:?}"));
            let num = || v.parse::<f64>().ok().filter(|x| x.is_finite());
            let int = || v.parse::<usize>().ok();
            match k.as_str() {
                "seed" => o.seed = v.parse().map_err(|_| bad("expected an integer"))?,
                "decision.review" => {
                    o.thresholds.review = num()
                        .filter(|x| (0.0..=1.0).contains(x))
                        .ok_or_else(|| bad("expected a probability in [0, 1]"))?
                }
                "decision.reject" => {
                    o.thresholds.reject = num()
                        .filter(|x| (0.0..=1.0).contains(x))
                        .ok_or_else(|| bad("expected a probability in [0, 1]"))?
                }
                "learners" => {
                    let mut ls = Vec::new();
                    for name in v.split(',').map(str::trim) {
                        ls.push(match name {
                            "logistic" => Learner::Linear,
                            "spline_logistic" => Learner::Spline,
                            "gbdt" => Learner::Gbdt,
                            "blend" => Learner::Blend,
                            _ => {
                                return Err(bad(
                                    "expected a comma-separated list of logistic, spline_logistic, gbdt, blend",
                                ));
                            }
                        });
                    }
                    o.fit.learners = ls;
                }
                "ratio_features" => {
                    o.fit.ratio_features = v.parse().map_err(|_| bad("expected true or false"))?
                }
                "lr.l2" => {
                    o.fit.l2 = vec![
                        num()
                            .filter(|x| *x >= 0.0)
                            .ok_or_else(|| bad("expected a number >= 0"))?
                            as f32,
                    ]
                }
                "lr.epochs" => {
                    o.fit.epochs = int()
                        .filter(|x| (1..=10_000).contains(x))
                        .ok_or_else(|| bad("expected 1..10000"))?
                }
                "spline.knots" => {
                    o.fit.knots = int()
                        .filter(|x| *x <= 32)
                        .ok_or_else(|| bad("expected 0..32"))?
                }
                "gbdt.trees" => {
                    o.fit.gbdt.trees = int()
                        .filter(|x| (1..=5000).contains(x))
                        .ok_or_else(|| bad("expected 1..5000"))?
                }
                "gbdt.depth" => {
                    o.fit.gbdt.depth = int()
                        .filter(|x| (1..=10).contains(x))
                        .ok_or_else(|| bad("expected 1..10"))?
                }
                "gbdt.learning_rate" => {
                    o.fit.gbdt.learning_rate = num()
                        .filter(|x| *x > 0.0 && *x <= 1.0)
                        .ok_or_else(|| bad("expected (0, 1]"))?
                        as f32
                }
                "select_folds" => {
                    o.fit.select_folds = int()
                        .filter(|x| *x == 0 || (2..=20).contains(x))
                        .ok_or_else(|| bad("expected 0 (the validation split chooses) or 2..20"))?
                }
                "forest.trees" => {
                    o.forest_trees = int()
                        .filter(|x| (1..=2000).contains(x))
                        .ok_or_else(|| bad("expected 1..2000"))?
                }
                _ => {
                    return Err(Error::invalid(
                        field,
                        format!(
                            "unknown hyper-parameter; known: {}",
                            HYPERPARAMETERS.join(", ")
                        ),
                    ));
                }
            }
        }
        if o.thresholds.review > o.thresholds.reject {
            return Err(Error::invalid(
                "hyperparameters[decision.review]",
                "must not exceed decision.reject",
            ));
        }
        o.fit.seed = o.seed;
        o.fit.gbdt = GbdtParams {
            seed: o.seed,
            ..o.fit.gbdt
        };
        Ok(o)
    }
}

/// Result of fitting a tabular risk model.
#[derive(Debug)]
pub struct TableFit {
    pub model: OrderModel,
    pub metrics: BTreeMap<String, f64>,
    pub examples: usize,
    pub positives: usize,
}

/// Fits the order-style model on a table: isolation forest on every row, a calibrated
/// supervised scorer when both labels are present (at least 4 positives).
pub fn fit_table(
    columns: &[String],
    rows: &[Vec<Cell>],
    labels: &[Option<bool>],
    o: &TrainOptions,
) -> Result<TableFit, Error> {
    if rows.is_empty() {
        return Err(Error::NotEnoughData("no examples".into()));
    }
    let all: Vec<&Vec<Cell>> = rows.iter().collect();
    let anomaly_encoder = Encoder::fit(columns, &all, 0, 5, false, false);
    let ax: Vec<Vec<f32>> = all.iter().map(|r| anomaly_encoder.encode(r)).collect();
    let anomaly = IsolationForest::fit(&ax, o.forest_trees, 256, o.seed);
    let labelled: Vec<usize> = (0..rows.len()).filter(|&i| labels[i].is_some()).collect();
    let y: Vec<bool> = labelled.iter().map(|&i| labels[i] == Some(true)).collect();
    let positives = y.iter().filter(|&&b| b).count();
    let negatives = y.len() - positives;
    let mut metrics = BTreeMap::new();
    let mut anomaly_platt = None;
    let supervised = if positives >= 4 && negatives >= 4 {
        let (tr, va) = stratified_split(&y, o.validation_fraction, o.seed);
        let tx: Vec<&Vec<Cell>> = tr.iter().map(|&k| all[labelled[k]]).collect();
        let ty: Vec<bool> = tr.iter().map(|&k| y[k]).collect();
        let vx: Vec<&Vec<Cell>> = va.iter().map(|&k| all[labelled[k]]).collect();
        let vy: Vec<bool> = va.iter().map(|&k| y[k]).collect();
        let (m, vm) = TabularModel::fit(columns, (&tx, &ty), (&vx, &vy), &o.fit);
        metrics = vm;
        // The anomaly model alone on the same validation rows, for comparison.
        let an: Vec<f64> = vx
            .iter()
            .map(|r| anomaly.percentile(&anomaly_encoder.encode(r)))
            .collect();
        let an_roc = augur_model::metrics::roc_auc(&an, &vy);
        if let Some(a) = an_roc {
            metrics.insert("anomaly_roc_auc".into(), a);
        }
        metrics.insert("validation_examples".into(), vy.len() as f64);
        metrics.insert(
            "validation_positives".into(),
            vy.iter().filter(|&&b| b).count() as f64,
        );
        // (With cross-validated selection, the default, the supervised figure is out of fold
        // over every labelled row; the validation rows are then training rows of the served
        // model, and still out of sample for the unsupervised anomaly model.)
        let sup_roc = metrics.get("roc_auc").copied().unwrap_or(0.0);
        // Model selection on the validation split: the anomaly model (Platt-calibrated on the
        // same split) serves when it ranks clearly better than the supervised scorer.
        if an_roc.is_some_and(|a| a > sup_roc + 0.05) {
            let platt = Platt::fit(&an, &vy);
            let p: Vec<f64> = an.iter().map(|&s| platt.apply(s)).collect();
            metrics.insert("supervised_roc_auc".into(), sup_roc);
            if let Some(a) = augur_model::metrics::roc_auc(&p, &vy) {
                metrics.insert("roc_auc".into(), a);
            }
            if let Some(a) = augur_model::metrics::pr_auc(&p, &vy) {
                metrics.insert("pr_auc".into(), a);
            }
            metrics.insert("brier".into(), augur_model::metrics::brier(&p, &vy));
            metrics.insert("log_loss".into(), augur_model::metrics::log_loss(&p, &vy));
            anomaly_platt = Some(platt);
            None
        } else {
            Some(m)
        }
    } else {
        None
    };
    let reference = fit_reference(columns, &all);
    // High value = 95th percentile of log_total when present.
    let high_value = columns
        .iter()
        .position(|c| c == "log_total")
        .map(|c| {
            let mut v: Vec<f64> = rows
                .iter()
                .filter_map(|r| match r.get(c) {
                    Some(Cell::Num(x)) => Some(x.exp() - 1.0),
                    _ => None,
                })
                .collect();
            v.sort_by(f64::total_cmp);
            v.get(v.len() * 95 / 100).copied().unwrap_or(f64::INFINITY)
        })
        .unwrap_or(f64::INFINITY);
    Ok(TableFit {
        model: OrderModel {
            columns: columns.to_vec(),
            supervised,
            anomaly_platt,
            anomaly_encoder,
            anomaly,
            thresholds: o.thresholds,
            high_value,
            reference: Some(reference),
        },
        metrics,
        examples: rows.len(),
        positives,
    })
}

/// A review to train on or to score.
#[derive(Debug, Clone)]
pub struct LabelledReview {
    pub doc: ReviewDoc,
    pub label: Option<bool>,
    pub account_age_hours: Option<f64>,
}

/// Signals of every review against all the others (similarities by matrix product).
pub fn batch_signals(
    docs: &[LabelledReview],
    emb: &[Vec<f32>],
    sentiment: &Sentiment,
) -> Result<Vec<ReviewSignals>, Error> {
    let n = docs.len();
    let mut out = Vec::with_capacity(n);
    let flat: Vec<f32> = emb.iter().flatten().copied().collect();
    let all = Tensor::from_vec(flat, (n, embed::DIM), &Device::Cpu)?;
    let allt = all.t()?.contiguous()?;
    let mut by_sku: HashMap<&str, Vec<i64>> = HashMap::new();
    let mut by_customer: HashMap<&str, usize> = HashMap::new();
    for d in docs {
        by_sku.entry(d.doc.sku.as_str()).or_default().push(d.doc.ts);
        if !d.doc.customer_id.is_empty() {
            *by_customer.entry(d.doc.customer_id.as_str()).or_default() += 1;
        }
    }
    for v in by_sku.values_mut() {
        v.sort_unstable();
    }
    let chunk = 256;
    for start in (0..n).step_by(chunk) {
        let len = chunk.min(n - start);
        let sims: Vec<Vec<f32>> = all.narrow(0, start, len)?.matmul(&allt)?.to_vec2()?;
        for (k, row) in sims.iter().enumerate() {
            let i = start + k;
            let d = &docs[i].doc;
            let (mut best, mut arg, mut dups) = (0.0f32, None, 0usize);
            for (j, &c) in row.iter().enumerate() {
                if j == i {
                    continue;
                }
                if c > best {
                    best = c;
                    arg = Some(j);
                }
                if c >= reviews::DUPLICATE_COSINE {
                    dups += 1;
                }
            }
            let ts = &by_sku[d.sku.as_str()];
            let lo = ts.partition_point(|&t| t < d.ts - reviews::BURST_SECS);
            let hi = ts.partition_point(|&t| t <= d.ts + reviews::BURST_SECS);
            out.push(ReviewSignals {
                max_similarity: best,
                most_similar: arg.map(|j| docs[j].doc.review_id.clone()),
                near_duplicates: dups,
                burst: (hi - lo).saturating_sub(1),
                sentiment_rating: sentiment.predict(&emb[i]),
                links: crate::text::link_count(&d.text),
                promo: crate::text::promo_terms(&d.text),
                reviewer_reviews: by_customer
                    .get(d.customer_id.as_str())
                    .map_or(0, |c| c.saturating_sub(1)),
                account_age_hours: docs[i].account_age_hours,
                rating: d.rating,
            });
        }
    }
    Ok(out)
}

/// Fits the review model on embedded reviews.
pub fn fit_reviews(
    docs: &[LabelledReview],
    emb: Vec<Vec<f32>>,
    o: &TrainOptions,
) -> Result<(ReviewModel, BTreeMap<String, f64>, usize), Error> {
    if docs.len() < 10 {
        return Err(Error::NotEnoughData(format!(
            "{} reviews (at least 10 are needed)",
            docs.len()
        )));
    }
    // Sentiment: ridge regression from the embedding to the stars of reviews not labelled spam.
    let genuine: Vec<usize> = (0..docs.len())
        .filter(|&i| docs[i].label != Some(true))
        .collect();
    let gx: Vec<Vec<f32>> = genuine.iter().map(|&i| emb[i].clone()).collect();
    let gy: Vec<f32> = genuine.iter().map(|&i| docs[i].doc.rating as f32).collect();
    let (w, b) = ridge(&gx, &gy, 1e-2);
    let sentiment = Sentiment {
        weights: w,
        bias: b,
    };
    let signals = batch_signals(docs, &emb, &sentiment)?;
    let columns = review_columns();
    let rows: Vec<Vec<Cell>> = signals.iter().map(ReviewSignals::cells).collect();
    // Unlabelled reviews count as genuine when some spam is labelled (positive-unlabelled data).
    let any_spam = docs.iter().any(|d| d.label == Some(true));
    let labels: Vec<Option<bool>> = docs
        .iter()
        .map(|d| match d.label {
            Some(l) => Some(l),
            None if any_spam => Some(false),
            None => None,
        })
        .collect();
    let fit = fit_table(&columns, &rows, &labels, o)?;
    let positives = fit.positives;
    let model = ReviewModel {
        columns,
        sentiment,
        classifier: fit.model.supervised,
        anomaly_platt: fit.model.anomaly_platt,
        anomaly_encoder: fit.model.anomaly_encoder,
        anomaly: fit.model.anomaly,
        thresholds: o.thresholds,
        reference: fit.model.reference,
        corpus: Corpus {
            docs: docs.iter().map(|d| d.doc.clone()).collect(),
            embeddings: emb,
        },
    };
    Ok((model, fit.metrics, positives))
}

// ------------------------------------------------------------------------------------------
// Input drift

/// The training distribution of the columns that hold numbers (categories are left out).
pub fn fit_reference(columns: &[String], rows: &[&Vec<Cell>]) -> FeatureReference {
    let numeric: Vec<usize> = (0..columns.len())
        .filter(|&j| rows.iter().any(|r| matches!(r.get(j), Some(Cell::Num(_)))))
        .collect();
    let values: Vec<Vec<f64>> = rows
        .iter()
        .map(|r| numeric.iter().map(|&j| number(r.get(j))).collect())
        .collect();
    FeatureReference::fit(
        numeric.iter().map(|&j| columns[j].clone()).collect(),
        &values,
    )
}

fn number(c: Option<&Cell>) -> f64 {
    match c {
        Some(Cell::Num(v)) => *v,
        _ => f64::NAN,
    }
}

/// The values of the reference's features in a row of `columns` (NaN = missing).
pub fn reference_values(
    reference: &FeatureReference,
    columns: &[String],
    row: &[Cell],
) -> Vec<f64> {
    reference
        .names
        .iter()
        .map(|n| number(columns.iter().position(|c| c == n).and_then(|j| row.get(j))))
        .collect()
}

/// Points `monitor` at a newly served model's training distribution.
fn watch(monitor: &ModelMonitor, reference: Option<&FeatureReference>, version: &str) {
    match reference {
        Some(r) => monitor.set_reference(r.clone()),
        None => {
            tracing::info!(
                model = monitor.name(),
                %version,
                "model saved without a feature reference: no input drift statistics until the next Train"
            );
            monitor.clear_reference();
        }
    }
}

fn reference_json(r: &Option<FeatureReference>) -> Result<Option<Vec<u8>>, Error> {
    Ok(match r {
        Some(r) => Some(serde_json::to_vec(r)?),
        None => None,
    })
}

/// The saved reference, None when the artefact predates drift monitoring.
fn load_reference(a: &augur_model::Artifact) -> Result<Option<FeatureReference>, Error> {
    match a.extra(REFERENCE_FILE) {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
        Err(ModelError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

// ------------------------------------------------------------------------------------------
// Persistence

fn save_order(store: &ArtifactStore, meta: &ModelMeta, m: &OrderModel) -> Result<(), Error> {
    let mut json_model = m.clone();
    let mut tensors = HashMap::new();
    if let Some(lin) = json_model
        .supervised
        .as_mut()
        .and_then(|s| s.linear.as_mut())
    {
        let w = std::mem::take(&mut lin.weights);
        let n = w.len();
        tensors.insert(
            "supervised.linear.weight".to_string(),
            Tensor::from_vec(w, n, &Device::Cpu)?,
        );
    }
    tensors.insert(
        "anomaly.reference".to_string(),
        Tensor::from_vec(
            std::mem::take(&mut json_model.anomaly.reference),
            m.anomaly.reference.len(),
            &Device::Cpu,
        )?,
    );
    let json = serde_json::to_vec(&json_model)?;
    let reference = reference_json(&m.reference)?;
    let mut extra: Vec<(&str, &[u8])> = vec![("order_model.json", &json)];
    if let Some(r) = &reference {
        extra.push((REFERENCE_FILE, r));
    }
    store.save(meta, &tensors, &extra)?;
    Ok(())
}

fn load_order(a: &augur_model::Artifact) -> Result<OrderModel, Error> {
    let mut m: OrderModel = serde_json::from_slice(&a.extra("order_model.json")?)?;
    if let Some(lin) = m.supervised.as_mut().and_then(|s| s.linear.as_mut()) {
        lin.weights = a.tensor("supervised.linear.weight")?.to_vec1()?;
    }
    m.anomaly.reference = a.tensor("anomaly.reference")?.to_vec1()?;
    m.reference = load_reference(a)?;
    Ok(m)
}

fn save_review(store: &ArtifactStore, meta: &ModelMeta, m: &ReviewModel) -> Result<(), Error> {
    let n = m.corpus.embeddings.len();
    let flat: Vec<f32> = m.corpus.embeddings.iter().flatten().copied().collect();
    let mut tensors = HashMap::new();
    tensors.insert(
        "corpus.embeddings".to_string(),
        Tensor::from_vec(flat, (n, embed::DIM), &Device::Cpu)?,
    );
    tensors.insert(
        "sentiment.weight".to_string(),
        Tensor::from_vec(
            m.sentiment.weights.clone(),
            m.sentiment.weights.len(),
            &Device::Cpu,
        )?,
    );
    let mut json_model = m.clone();
    json_model.sentiment.weights.clear();
    json_model.corpus.embeddings.clear();
    let json = serde_json::to_vec(&json_model)?;
    let reference = reference_json(&m.reference)?;
    let mut extra: Vec<(&str, &[u8])> = vec![("review_model.json", &json)];
    if let Some(r) = &reference {
        extra.push((REFERENCE_FILE, r));
    }
    store.save(meta, &tensors, &extra)?;
    Ok(())
}

fn load_review(a: &augur_model::Artifact) -> Result<ReviewModel, Error> {
    let mut m: ReviewModel = serde_json::from_slice(&a.extra("review_model.json")?)?;
    m.sentiment.weights = a.tensor("sentiment.weight")?.to_vec1()?;
    m.corpus.embeddings = a.tensor("corpus.embeddings")?.to_vec2()?;
    m.reference = load_reference(a)?;
    Ok(m)
}

// ------------------------------------------------------------------------------------------
// The application

/// Recent orders per device scored by this process (for velocity before an order is ingested).
#[derive(Debug, Default)]
struct Velocity {
    by_device: HashMap<String, VecDeque<(i64, String)>>,
}

impl Velocity {
    /// Records `(ts, order_id)` for `device` and returns the other order ids of the window.
    fn record(&mut self, device: &str, ts: i64, order_id: &str) -> Vec<String> {
        if self.by_device.len() > 200_000 {
            let cutoff = ts - VELOCITY_WINDOW_SECS;
            self.by_device
                .retain(|_, q| q.back().is_some_and(|(t, _)| *t > cutoff));
        }
        let q = self.by_device.entry(device.to_string()).or_default();
        while q
            .front()
            .is_some_and(|(t, _)| *t <= ts - VELOCITY_WINDOW_SECS)
        {
            q.pop_front();
        }
        if !q.iter().any(|(_, id)| id == order_id) {
            q.push_back((ts, order_id.to_string()));
        }
        q.iter()
            .filter(|(t, id)| id != order_id && *t <= ts)
            .map(|(_, id)| id.clone())
            .collect()
    }
}

type EmbedJob = (
    Vec<String>,
    tokio::sync::oneshot::Sender<Result<Vec<Vec<f32>>, String>>,
);

/// Micro-batching of concurrent scoring requests: one thread takes every text waiting (up to
/// [`Batcher::MAX_TEXTS`]) and embeds them in one call, so concurrent reviews share forward
/// passes instead of contending for the CPU thread pool op by op.
#[derive(Debug, Clone)]
pub struct Batcher {
    tx: tokio::sync::mpsc::Sender<EmbedJob>,
}

impl Batcher {
    pub const MAX_TEXTS: usize = 32;

    pub fn start(embedder: Arc<Embedder>) -> Batcher {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<EmbedJob>(1024);
        let spawned = std::thread::Builder::new()
            .name("risk-embed".into())
            .spawn(move || {
                while let Some(first) = rx.blocking_recv() {
                    let mut jobs = vec![first];
                    let mut n = jobs[0].0.len();
                    while n < Self::MAX_TEXTS {
                        match rx.try_recv() {
                            Ok(j) => {
                                n += j.0.len();
                                jobs.push(j);
                            }
                            Err(_) => break,
                        }
                    }
                    let texts: Vec<&str> = jobs
                        .iter()
                        .flat_map(|(t, _)| t.iter().map(String::as_str))
                        .collect();
                    match embedder.embed(&texts) {
                        Ok(all) => {
                            let mut all = all.into_iter();
                            for (t, reply) in jobs {
                                let part: Vec<Vec<f32>> = all.by_ref().take(t.len()).collect();
                                let _ = reply.send(Ok(part));
                            }
                        }
                        Err(e) => {
                            for (_, reply) in jobs {
                                let _ = reply.send(Err(e.to_string()));
                            }
                        }
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "embedding thread did not start");
        }
        Batcher { tx }
    }

    pub async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, Error> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.tx
            .send((texts, reply))
            .await
            .map_err(|_| Error::Internal("embedding thread stopped".into()))?;
        rx.await
            .map_err(|_| Error::Internal("embedding thread stopped".into()))?
            .map_err(Error::Internal)
    }
}

/// The risk service's state.
pub struct App {
    data_dir: PathBuf,
    fs: FeatureStore,
    pub orders: ModelSlot<Served<OrderModel>>,
    pub reviews: ModelSlot<Served<ReviewModel>>,
    embedder: Option<Arc<Embedder>>,
    embed_error: String,
    /// Scoring requests' texts go through one batching thread (see [`Batcher`]).
    batcher: Option<Batcher>,
    pub gate: TrainGate,
    velocity: Mutex<Velocity>,
    /// Embeddings of recently seen reviews that are not in the model's corpus.
    recent_reviews: Mutex<VecDeque<(ReviewDoc, Vec<f32>)>>,
    /// Inference latency, scores and input drift of the order model.
    pub order_monitor: ModelMonitor,
    /// The same for the review model.
    pub review_monitor: ModelMonitor,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

/// Limits on scored orders and reviews: the feature store's defaults for incoming events, so an
/// order the feature store would refuse to store is refused for scoring too.
pub use augur_runtime::error::MAX_ID_BYTES;
pub const MAX_LINES: usize = 1_000;
pub const MAX_QUANTITY: i64 = 1_000_000;
pub const MAX_AMOUNT: f64 = 1e12;
pub const MAX_TEXT_BYTES: usize = 20_000;
pub const MAX_TITLE_BYTES: usize = 500;
/// How far ahead of the server clock an order or review time may be.
pub const MAX_FUTURE_SKEW_MICROS: i64 = 86_400 * 1_000_000;

/// Microseconds since the epoch, checked the way the feature store checks event times (the same
/// wording): nanos in `[0, 1e9)`, not before 1970-01-01, and representable (no overflow: a
/// timestamp of `i64::MAX` seconds is an error, never a panic or a wrapped value).
pub fn checked_micros(t: &prost_types::Timestamp) -> Result<i64, String> {
    if !(0..1_000_000_000).contains(&t.nanos) {
        return Err(format!("bad timestamp: nanos {} out of range", t.nanos));
    }
    if t.seconds < 0 {
        return Err("bad timestamp: before 1970-01-01".into());
    }
    t.seconds
        .checked_mul(1_000_000)
        .and_then(|m| m.checked_add(i64::from(t.nanos / 1000)))
        .ok_or_else(|| "bad timestamp: in the future".into())
}

/// A request's optional timestamp field: `None` when absent; INVALID_ARGUMENT naming `field`
/// when [`checked_micros`] refuses it or it is more than a day ahead of `now` (micros).
pub fn ts_field(
    field: &str,
    t: &Option<prost_types::Timestamp>,
    now: i64,
) -> Result<Option<i64>, Error> {
    let Some(t) = t else { return Ok(None) };
    match checked_micros(t) {
        Ok(m) if m <= now.saturating_add(MAX_FUTURE_SKEW_MICROS) => Ok(Some(m)),
        Ok(_) => Err(Error::invalid(field, "bad timestamp: in the future")),
        Err(reason) => Err(Error::invalid(field, reason)),
    }
}

/// Microseconds of a stored event's time (validated by the feature store); `None` when absent
/// or unrepresentable.
fn micros(t: &Option<prost_types::Timestamp>) -> Option<i64> {
    t.as_ref().and_then(|t| checked_micros(t).ok())
}

/// An id field: required or optional, at most [`MAX_ID_BYTES`], no control characters (as the
/// feature store checks ids).
fn check_id(field: &str, v: &str, required: bool) -> Result<(), Error> {
    if v.trim().is_empty() {
        if required {
            return Err(Error::invalid(field, "required"));
        }
    } else if v.len() > MAX_ID_BYTES {
        return Err(Error::invalid(
            field,
            format!("id longer than {MAX_ID_BYTES} bytes"),
        ));
    } else if v.chars().any(char::is_control) {
        return Err(Error::invalid(field, "id contains control characters"));
    }
    Ok(())
}

/// A money amount: finite, not negative, at most [`MAX_AMOUNT`].
fn check_amount(field: String, v: f64) -> Result<(), Error> {
    if !v.is_finite() {
        Err(Error::invalid(
            field,
            "must be a finite number (NaN or infinite amount)",
        ))
    } else if v < 0.0 {
        Err(Error::invalid(field, "must not be negative"))
    } else if v > MAX_AMOUNT {
        Err(Error::invalid(field, "implausibly large (over 1e12)"))
    } else {
        Ok(())
    }
}

/// A free-text field of at most `max` bytes.
fn check_text(field: &str, v: &str, max: usize) -> Result<(), Error> {
    if v.len() > max {
        return Err(Error::invalid(
            field,
            format!("text of {} bytes is over the limit of {max} bytes", v.len()),
        ));
    }
    Ok(())
}

/// Where the MiniLM files are looked for: `AUGUR_MINILM_DIR`, `<data_dir>/models/minilm`,
/// `./models/minilm`, then the workspace's `models/minilm`.
pub fn minilm_dirs(data_dir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Ok(d) = std::env::var("AUGUR_MINILM_DIR")
        && !d.is_empty()
    {
        v.push(PathBuf::from(d));
    }
    v.push(data_dir.join("models").join("minilm"));
    v.push(PathBuf::from("models/minilm"));
    v.push(embed::default_dir());
    v
}

impl App {
    /// Loads the newest saved models and the embedding model (when present).
    pub fn open(data_dir: &Path, fs: FeatureStore) -> Result<App, Error> {
        let app = App::empty(data_dir, fs);
        if let Some(a) = ArtifactStore::new(data_dir, ORDER_MODEL).latest()? {
            let model = load_order(&a)?;
            tracing::info!(version = %a.meta.version, "order model loaded");
            app.serve_order(Served {
                meta: a.meta,
                model,
            });
        }
        if let Some(a) = ArtifactStore::new(data_dir, REVIEW_MODEL).latest()? {
            let model = load_review(&a)?;
            tracing::info!(version = %a.meta.version, "review model loaded");
            app.serve_review(Served {
                meta: a.meta,
                model,
            });
        }
        Ok(app)
    }

    /// Serves an order model; its inputs are compared with its training distribution from now on.
    pub fn serve_order(&self, served: Served<OrderModel>) {
        watch(
            &self.order_monitor,
            served.model.reference.as_ref(),
            &served.meta.version,
        );
        self.orders.swap(served);
    }

    /// Serves a review model; its inputs are compared with its training distribution from now on.
    pub fn serve_review(&self, served: Served<ReviewModel>) {
        watch(
            &self.review_monitor,
            served.model.reference.as_ref(),
            &served.meta.version,
        );
        self.reviews.swap(served);
    }

    /// Watchers that load order and review model versions newer than the served ones (trained
    /// by another replica sharing `data_dir`) and serve them as `Train` does
    /// ([`App::serve_order`], [`App::serve_review`]: the drift monitors get their references).
    pub fn reload_watchers(
        self: &Arc<Self>,
    ) -> (
        ReloadWatcher<Served<OrderModel>>,
        ReloadWatcher<Served<ReviewModel>>,
    ) {
        let (a, b) = (self.clone(), self.clone());
        let orders = ReloadWatcher::new(
            ArtifactStore::new(&self.data_dir, ORDER_MODEL),
            move || a.orders.get().map(|s| s.meta.version.clone()),
            |store: &ArtifactStore, version: &str| -> Result<_, Error> {
                let a = store.load(version)?;
                let model = load_order(&a)?;
                Ok(Served {
                    meta: a.meta,
                    model,
                })
            },
            move |served| b.serve_order(served),
        );
        let (a, b) = (self.clone(), self.clone());
        let reviews = ReloadWatcher::new(
            ArtifactStore::new(&self.data_dir, REVIEW_MODEL),
            move || a.reviews.get().map(|s| s.meta.version.clone()),
            |store: &ArtifactStore, version: &str| -> Result<_, Error> {
                let a = store.load(version)?;
                let model = load_review(&a)?;
                Ok(Served {
                    meta: a.meta,
                    model,
                })
            },
            move |served| b.serve_review(served),
        );
        (orders, reviews)
    }

    /// No saved models loaded (MiniLM is, when present).
    pub fn empty(data_dir: &Path, fs: FeatureStore) -> App {
        let dirs = minilm_dirs(data_dir);
        let (embedder, embed_error) = match dirs.iter().find(|d| embed::present(d)) {
            Some(d) => match Embedder::load(d) {
                Ok(e) => {
                    tracing::info!(
                        dir = %d.display(),
                        engine = e.engine().name(),
                        "MiniLM loaded"
                    );
                    (Some(Arc::new(e)), String::new())
                }
                Err(e) => {
                    tracing::error!(dir = %d.display(), error = %e, "MiniLM not loaded");
                    (None, e.to_string())
                }
            },
            None => {
                let msg = format!(
                    "the text embedding model (all-MiniLM-L6-v2) is not installed: looked in {}; run `make minilm` or set AUGUR_MINILM_DIR",
                    dirs.iter()
                        .map(|d| d.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                tracing::warn!("{msg}");
                (None, msg)
            }
        };
        App {
            data_dir: data_dir.to_path_buf(),
            fs,
            orders: ModelSlot::default(),
            reviews: ModelSlot::default(),
            batcher: embedder.clone().map(Batcher::start),
            embedder,
            embed_error,
            gate: TrainGate::default(),
            velocity: Mutex::default(),
            recent_reviews: Mutex::default(),
            order_monitor: ModelMonitor::global(ORDER_MODEL, DRIFT_WINDOW),
            review_monitor: ModelMonitor::global(REVIEW_MODEL, DRIFT_WINDOW),
        }
    }

    pub fn embedder(&self) -> Result<Arc<Embedder>, Error> {
        self.embedder
            .clone()
            .ok_or_else(|| Error::NoModel(self.embed_error.clone()))
    }

    fn order_model(&self) -> Result<Arc<Served<OrderModel>>, Error> {
        self.orders
            .get()
            .ok_or_else(|| Error::NoModel("no order model trained yet: call Train".into()))
    }

    // ------------------------------------------------------------------ orders

    /// Finds a stored order by id: its events through the feature store's indexed lookup, the
    /// placement's details (the first event in event time).
    async fn find_order(&self, order_id: &str) -> Result<Order, Error> {
        self.fs
            .order_events(order_id)
            .await?
            .into_iter()
            .find_map(|e| match e.payload {
                Some(Payload::Order(o)) if o.order_id == order_id => Some(o),
                _ => None,
            })
            .ok_or_else(|| {
                Error::NotFound(format!("order {order_id} not found in the feature store"))
            })
    }

    /// Validates an order passed for scoring (fields named below `prefix`) by the feature
    /// store's rules for incoming orders, so an order the store would refuse is refused here.
    /// Returns its time in micros; `None` when it has none (scored as of now). `now` is the
    /// server clock in micros.
    pub fn validate_order(o: &Order, prefix: &str, now: i64) -> Result<Option<i64>, Error> {
        let Order {
            order_id,
            customer_id,
            ts,
            lines,
            total,
            currency,
            payment_method,
            shipping_country,
            billing_country,
            payment_fingerprint,
            device_fingerprint,
            ip_address,
            status,
            store_id,
            channel,
        } = o;
        let f = |name: &str| format!("{prefix}.{name}");
        check_id(&f("order_id"), order_id, true)?;
        check_id(&f("customer_id"), customer_id, true)?;
        let ts = ts_field(&f("ts"), ts, now)?;
        if lines.len() > MAX_LINES {
            return Err(Error::invalid(
                f("lines"),
                format!("more than {MAX_LINES} lines"),
            ));
        }
        for (i, l) in lines.iter().enumerate() {
            let fpb::OrderLine {
                sku,
                quantity,
                unit_price,
                promotion: _,
            } = l;
            check_id(&f(&format!("lines[{i}].sku")), sku, false)?;
            if *quantity < 0 {
                return Err(Error::invalid(
                    f(&format!("lines[{i}].quantity")),
                    "must not be negative",
                ));
            }
            if *quantity > MAX_QUANTITY {
                return Err(Error::invalid(
                    f(&format!("lines[{i}].quantity")),
                    "implausibly large (over 1,000,000)",
                ));
            }
            check_amount(f(&format!("lines[{i}].unit_price")), *unit_price)?;
        }
        match total {
            Some(t) => check_amount(f("total"), *t)?,
            None if lines.is_empty() => {
                return Err(Error::invalid(
                    f("total"),
                    "required when the order has no lines",
                ));
            }
            None => {}
        }
        let letters = |v: &str, n: usize| {
            v.is_empty() || v.len() == n && v.bytes().all(|b| b.is_ascii_alphabetic())
        };
        if !letters(currency, 3) {
            return Err(Error::invalid(
                f("currency"),
                "must be an ISO 4217 code such as \"EUR\"",
            ));
        }
        for (name, v) in [
            ("shipping_country", shipping_country),
            ("billing_country", billing_country),
        ] {
            if !letters(v, 2) {
                return Err(Error::invalid(
                    f(name),
                    "must be an ISO 3166-1 alpha-2 code such as \"DE\"",
                ));
            }
        }
        check_text(&f("payment_method"), payment_method, 64)?;
        check_text(&f("payment_fingerprint"), payment_fingerprint, 512)?;
        check_text(&f("device_fingerprint"), device_fingerprint, 512)?;
        check_text(&f("ip_address"), ip_address, 64)?;
        if fpb::OrderStatus::try_from(*status).is_err() {
            return Err(Error::invalid(
                f("status"),
                format!("unknown value {status}"),
            ));
        }
        check_id(&f("store_id"), store_id, false)?;
        check_id(&f("channel"), channel, false)?;
        Ok(ts)
    }

    /// Scores an order given in full (`stored = false`) or found by id.
    pub async fn score_order(
        &self,
        order: Option<Order>,
        order_id: Option<String>,
    ) -> Result<(Order, OrderScore, String), Error> {
        let served = self.order_model()?;
        let now = Utc::now().timestamp_micros();
        let (order, ts_us, stored) = match (order, order_id) {
            (Some(o), _) => {
                let ts = Self::validate_order(&o, "order", now)?;
                (o, ts, false)
            }
            (None, Some(id)) => {
                check_id("order_id", &id, true)?;
                let o = self.find_order(&id).await?;
                let ts = micros(&o.ts);
                (o, ts, true)
            }
            (None, None) => return Err(Error::invalid("target", "order or order_id is required")),
        };
        let ts_us = ts_us.unwrap_or(now);
        let ts = ts_us.div_euclid(1_000_000);
        // Customer history: point in time for a stored order, online otherwise.
        let history_fut = async {
            if stored {
                Ok::<_, Error>(
                    self.fs
                        .customers_at(&[(order.customer_id.clone(), (ts_us - 1).max(0))])
                        .await?
                        .pop()
                        .unwrap_or_default(),
                )
            } else {
                self.fs.customer_now(&order.customer_id).await
            }
        };
        let velocity_fut = self.device_orders(&order, ts, stored);
        let (history, velocity) = tokio::try_join!(history_fut, velocity_fut)?;
        let facts = OrderFacts::new(&order, history, velocity);
        let model = &served.model;
        let (cells, score) = self.order_monitor.infer(&served.meta.version, 1, || {
            let cells = orders::align(&model.columns, &facts);
            let score = model.score_cells(&cells, Some(&facts));
            (cells, score)
        });
        self.order_monitor.score(score.score);
        if let Some(r) = &model.reference {
            self.order_monitor
                .features(&reference_values(r, &model.columns, &cells));
        }
        Ok((order, score, served.meta.version.clone()))
    }

    /// Orders from the order's device in the velocity window, this one included: stored orders
    /// from the feature store's per-device index (which takes the raw fingerprint of a new
    /// order and the stored hash of a stored one) plus orders this process scored.
    async fn device_orders(&self, o: &Order, ts: i64, stored: bool) -> Result<u32, Error> {
        if o.device_fingerprint.is_empty() {
            return Ok(1);
        }
        let events = self
            .fs
            .device_orders(
                &o.device_fingerprint,
                (ts - VELOCITY_WINDOW_SECS + 1).max(0),
                ts + 1,
            )
            .await?;
        let mut ids: std::collections::HashSet<String> = events
            .into_iter()
            .filter_map(|e| match e.payload {
                Some(Payload::Order(x)) if x.order_id != o.order_id => Some(x.order_id),
                _ => None,
            })
            .collect();
        if !stored && let Ok(mut v) = self.velocity.lock() {
            ids.extend(v.record(&o.device_fingerprint, ts, &o.order_id));
        }
        Ok(1 + ids.len() as u32)
    }

    // ------------------------------------------------------------------ reviews

    /// Scores one review.
    pub async fn score_review(&self, r: &Review) -> Result<(ReviewScore, String), Error> {
        check_id("review.review_id", &r.review_id, false)?;
        check_id("review.customer_id", &r.customer_id, false)?;
        check_id("review.sku", &r.sku, true)?;
        if !(1..=5).contains(&r.rating) {
            return Err(Error::invalid("review.rating", "must be 1..5"));
        }
        if r.text.trim().is_empty() {
            return Err(Error::invalid("review.text", "required"));
        }
        check_text("review.text", &r.text, MAX_TEXT_BYTES)?;
        check_text("review.title", &r.title, MAX_TITLE_BYTES)?;
        let now = Utc::now().timestamp_micros();
        let ts = ts_field("review.ts", &r.ts, now)?
            .unwrap_or(now)
            .div_euclid(1_000_000);
        let served = self.reviews.get().ok_or_else(|| {
            Error::NoModel(
                "no review model trained yet: call Train with kind MODEL_KIND_REVIEW".into(),
            )
        })?;
        let embedder = self.embedder()?;
        let doc = ReviewDoc {
            review_id: r.review_id.clone(),
            customer_id: r.customer_id.clone(),
            sku: r.sku.clone(),
            rating: r.rating,
            ts,
            text: review_text(&r.title, &r.text),
        };
        // Recent reviews in the feature store (bursts; duplicates not yet in the corpus).
        let recent = self
            .fs
            .scan(
                &[fpb::EventKind::Review],
                Some((ts - reviews::BURST_SECS).max(0)),
                Some(ts + 1),
                "",
            )
            .await?;
        let history = if r.customer_id.is_empty() {
            CustomerHistory::default()
        } else {
            self.fs.customer_now(&r.customer_id).await?
        };
        let known: std::collections::HashSet<&str> = served
            .model
            .corpus
            .docs
            .iter()
            .map(|d| d.review_id.as_str())
            .collect();
        let mut new_docs: Vec<ReviewDoc> = Vec::new();
        for e in recent {
            if let Some(Payload::Review(x)) = e.payload
                && !known.contains(x.review_id.as_str())
                && !new_docs.iter().any(|d| d.review_id == x.review_id)
            {
                new_docs.push(ReviewDoc {
                    review_id: x.review_id.clone(),
                    customer_id: x.customer_id.clone(),
                    sku: x.sku.clone(),
                    rating: x.rating,
                    ts: micros(&x.ts).unwrap_or(0).div_euclid(1_000_000),
                    text: review_text(&x.title, &x.text),
                });
            }
        }
        let cached: Vec<(ReviewDoc, Vec<f32>)> = self
            .recent_reviews
            .lock()
            .map(|q| q.iter().cloned().collect())
            .unwrap_or_default();
        new_docs.retain(|d| !cached.iter().any(|(c, _)| c.review_id == d.review_id));
        let mut texts: Vec<&str> = vec![doc.text.as_str()];
        texts.extend(new_docs.iter().map(|d| d.text.as_str()));
        let texts: Vec<String> = texts.into_iter().map(str::to_string).collect();
        // The inference: embedding (with the recent reviews not yet embedded), signals, score.
        let started = std::time::Instant::now();
        let span = self.review_monitor.span(&served.meta.version, 1);
        let emb = async {
            match &self.batcher {
                Some(b) => b.embed(texts).await,
                None => tokio::task::spawn_blocking(move || {
                    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                    embedder.embed(&refs)
                })
                .await
                .map_err(|e| Error::Internal(e.to_string()))?
                .map_err(Error::from),
            }
        }
        .instrument(span.clone())
        .await?;
        let mut emb = emb.into_iter();
        let e = emb.next().unwrap_or_default();
        let mut extra = cached;
        let fresh: Vec<(ReviewDoc, Vec<f32>)> = new_docs.into_iter().zip(emb).collect();
        extra.extend(fresh.iter().cloned());
        if let Ok(mut q) = self.recent_reviews.lock() {
            for f in fresh {
                q.push_back(f);
            }
            if !doc.review_id.is_empty() && !known.contains(doc.review_id.as_str()) {
                q.push_back((doc.clone(), e.clone()));
            }
            while q.len() > 5000 {
                q.pop_front();
            }
        }
        let age = history.tenure_days.map(|d| d * 24.0);
        let model = &served.model;
        let (s, score) = span.in_scope(|| {
            let s = reviews::signals(&doc, &e, &model.corpus, &extra, &model.sentiment, age);
            let score = model.score(&s);
            (s, score)
        });
        self.review_monitor.inference(started.elapsed());
        self.review_monitor.score(score.probability);
        if let Some(r) = &model.reference {
            self.review_monitor
                .features(&reference_values(r, &model.columns, &s.cells()));
        }
        Ok((score, served.meta.version.clone()))
    }

    // ------------------------------------------------------------------ training

    /// Training data for the order model from the feature store.
    pub async fn order_table(
        &self,
        range: (Option<i64>, Option<i64>),
    ) -> Result<(Vec<Vec<Cell>>, Vec<Option<bool>>, Option<(i64, i64)>), Error> {
        // Training reads: not bound by the request-path feature-store timeout.
        let fs = self.fs.for_training();
        let events = fs
            .scan(&[fpb::EventKind::Order], range.0, range.1, "")
            .await?;
        let orders: Vec<Order> = events
            .into_iter()
            .filter_map(|e| match e.payload {
                Some(Payload::Order(o)) => Some(o),
                _ => None,
            })
            .collect();
        let ex = orders::examples(orders);
        if ex.is_empty() {
            return Err(Error::NotEnoughData(
                "no orders in the feature store".into(),
            ));
        }
        let velocity = orders::device_velocity(&ex);
        let keys: Vec<(String, i64)> = ex
            .iter()
            .map(|e| {
                let us = micros(&e.order.ts).unwrap_or(e.ts * 1_000_000);
                (e.order.customer_id.clone(), us - 1)
            })
            .collect();
        let hist = fs.customers_at(&keys).await?;
        let rows: Vec<Vec<Cell>> = ex
            .iter()
            .zip(hist)
            .zip(&velocity)
            .map(|((e, h), v)| OrderFacts::new(&e.order, h, *v).cells())
            .collect();
        let labels = ex.iter().map(|e| Some(e.charged_back)).collect();
        let span = ex.first().zip(ex.last()).map(|(a, b)| (a.ts, b.ts));
        Ok((rows, labels, span))
    }

    /// Reviews (with labels and reviewer account age) from the feature store.
    pub async fn review_docs(
        &self,
        range: (Option<i64>, Option<i64>),
    ) -> Result<Vec<LabelledReview>, Error> {
        // Training reads: not bound by the request-path feature-store timeout.
        let fs = self.fs.for_training();
        let events = fs
            .scan(&[fpb::EventKind::Review], range.0, range.1, "")
            .await?;
        let mut by_id: HashMap<String, usize> = HashMap::new();
        let mut docs: Vec<(Review, Option<bool>)> = Vec::new();
        for e in events {
            let Some(Payload::Review(r)) = e.payload else {
                continue;
            };
            let label = match fpb::ReviewLabel::try_from(r.label) {
                Ok(fpb::ReviewLabel::Spam) => Some(true),
                Ok(fpb::ReviewLabel::Genuine) => Some(false),
                _ => None,
            };
            match by_id.get(&r.review_id) {
                Some(&i) => {
                    if label.is_some() {
                        docs[i].1 = label;
                    }
                }
                None => {
                    by_id.insert(r.review_id.clone(), docs.len());
                    docs.push((r, label));
                }
            }
        }
        let keys: Vec<(String, i64)> = docs
            .iter()
            .map(|(r, _)| (r.customer_id.clone(), micros(&r.ts).unwrap_or(0) - 1))
            .collect();
        let hist = fs.customers_at(&keys).await?;
        Ok(docs
            .into_iter()
            .zip(hist)
            .map(|((r, label), h)| LabelledReview {
                doc: ReviewDoc {
                    review_id: r.review_id.clone(),
                    customer_id: r.customer_id.clone(),
                    sku: r.sku.clone(),
                    rating: r.rating,
                    ts: micros(&r.ts).unwrap_or(0).div_euclid(1_000_000),
                    text: review_text(&r.title, &r.text),
                },
                label,
                account_age_hours: h.tenure_days.map(|d| d * 24.0),
            })
            .collect())
    }

    /// Saves (unless `evaluate_only`) and serves a trained order model.
    pub fn publish_order(
        &self,
        model: OrderModel,
        mut meta: ModelMeta,
        evaluate_only: bool,
    ) -> Result<ModelMeta, Error> {
        model.describe(&mut meta);
        if !evaluate_only {
            let store = ArtifactStore::new(&self.data_dir, ORDER_MODEL);
            save_order(&store, &meta, &model)?;
            store.prune(5)?;
            self.serve_order(Served {
                meta: meta.clone(),
                model,
            });
        }
        Ok(meta)
    }

    /// Saves (unless `evaluate_only`) and serves a trained review model.
    pub fn publish_review(
        &self,
        model: ReviewModel,
        mut meta: ModelMeta,
        evaluate_only: bool,
    ) -> Result<ModelMeta, Error> {
        meta.parameters.insert(
            "decision.review".into(),
            model.thresholds.review.to_string(),
        );
        meta.parameters.insert(
            "decision.reject".into(),
            model.thresholds.reject.to_string(),
        );
        meta.parameters
            .insert("features".into(), model.columns.join(","));
        meta.parameters.insert(
            "embedding".into(),
            "all-MiniLM-L6-v2 (BERT, mean pooling, L2 normalised)".into(),
        );
        meta.parameters.insert(
            "scorer".into(),
            model.classifier.as_ref().map_or(
                if model.anomaly_platt.is_some() {
                    "isolation_forest + platt (beat the supervised scorer on validation)".into()
                } else {
                    "isolation_forest (unsupervised)".into()
                },
                |m| format!("{} + platt", m.learner.name()),
            ),
        );
        meta.parameters
            .insert("corpus_reviews".into(), model.corpus.docs.len().to_string());
        if !evaluate_only {
            let store = ArtifactStore::new(&self.data_dir, REVIEW_MODEL);
            save_review(&store, &meta, &model)?;
            store.prune(5)?;
            self.serve_review(Served {
                meta: meta.clone(),
                model,
            });
        }
        Ok(meta)
    }
}

/// Seconds to a UTC time.
pub fn utc(secs: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(secs, 0)
}

/// The order feature columns (for ModelInfo and labelled tables).
pub fn default_order_columns() -> Vec<String> {
    order_columns()
}

pub use reviews::review_text;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hyperparameters_are_checked_by_name() {
        let ok: BTreeMap<String, String> = [
            ("decision.review", "0.4"),
            ("learners", "logistic,gbdt"),
            ("gbdt.trees", "10"),
            ("select_folds", "5"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let o = TrainOptions::parse(&ok, 0.3).unwrap();
        assert_eq!(o.thresholds.review, 0.4);
        assert_eq!(o.fit.learners, vec![Learner::Linear, Learner::Gbdt]);
        assert_eq!(o.fit.gbdt.trees, 10);
        assert_eq!(o.fit.select_folds, 5);
        assert_eq!(o.validation_fraction, 0.3);
        for (k, v, field) in [
            ("nope", "1", "hyperparameters[nope]"),
            ("gbdt.trees", "x", "hyperparameters[gbdt.trees]"),
            ("select_folds", "1", "hyperparameters[select_folds]"),
            ("decision.reject", "0.1", "hyperparameters[decision.review]"),
        ] {
            let m = BTreeMap::from([(k.to_string(), v.to_string())]);
            match TrainOptions::parse(&m, 0.0) {
                Err(Error::Invalid(f, _)) => assert_eq!(f, field),
                other => panic!("{k}: {other:?}"),
            }
        }
        assert!(matches!(
            TrainOptions::parse(&BTreeMap::new(), 0.9),
            Err(Error::Invalid(f, _)) if f == "validation_fraction"
        ));
    }

    #[test]
    fn order_model_round_trips_through_the_artifact_store() {
        let dir = tempfile::tempdir().unwrap();
        let columns = order_columns();
        let mut rows = Vec::new();
        let mut labels = Vec::new();
        for i in 0..200 {
            let fraud = i % 20 == 0;
            let mut r: Vec<Cell> = vec![Cell::Num(0.0); columns.len()];
            r[0] = Cell::Num(if fraud {
                6.5
            } else {
                3.5 + (i % 7) as f64 * 0.1
            });
            r[7] = Cell::Num(if fraud { 4.0 } else { 1.0 });
            r[10] = Cell::Cat("card".into());
            rows.push(r);
            labels.push(Some(fraud));
        }
        let o = TrainOptions {
            fit: FitOptions {
                learners: vec![Learner::Linear],
                epochs: 20,
                ..Default::default()
            },
            ..Default::default()
        };
        let fit = fit_table(&columns, &rows, &labels, &o).unwrap();
        // Chosen by cross-validation instead, the supervised scorer still serves (its
        // out-of-fold figure stands in for the validation split's against the anomaly model).
        let cv = TrainOptions {
            fit: FitOptions {
                select_folds: 5,
                ..o.fit.clone()
            },
            ..o.clone()
        };
        let cv_fit = fit_table(&columns, &rows, &labels, &cv).unwrap();
        assert!(cv_fit.model.supervised.is_some(), "{:?}", cv_fit.metrics);
        assert_eq!(cv_fit.metrics["cv_folds"], 5.0);
        assert_eq!(cv_fit.metrics.get("supervised_roc_auc"), None);
        assert_eq!(cv_fit.metrics["roc_auc"], cv_fit.metrics["oof_roc_auc"]);
        let store = ArtifactStore::new(dir.path(), ORDER_MODEL);
        let meta = ModelMeta::new(ORDER_MODEL);
        save_order(&store, &meta, &fit.model).unwrap();
        let loaded = load_order(&store.latest().unwrap().unwrap()).unwrap();
        // JSON may round the last bit of a float: compare behaviour, not bits.
        assert_eq!(loaded.columns, fit.model.columns);
        // The training distribution of the numeric columns comes back (payment_method, a
        // category, is not monitored).
        let (saved, restored) = (
            fit.model.reference.as_ref().unwrap(),
            loaded.reference.as_ref().unwrap(),
        );
        assert_eq!(restored.names, saved.names);
        assert!(!restored.names.contains(&"payment_method".to_string()));
        assert!(restored.names.contains(&"log_total".to_string()));
        assert_eq!(restored.edges.len(), saved.edges.len());
        let m = ModelMonitor::global(ORDER_MODEL, 100);
        m.set_reference(restored.clone());
        for r in &rows[..100] {
            m.features(&reference_values(restored, &loaded.columns, r));
        }
        let drift = m.drift();
        assert_eq!(drift.len(), restored.names.len());
        assert!(drift.iter().all(|(_, v)| *v < 0.1), "{drift:?}");
        for r in &rows[..20] {
            let (a, b) = (loaded.score_cells(r, None), fit.model.score_cells(r, None));
            assert!((a.score - b.score).abs() < 1e-6 && a.anomaly_score == b.anomaly_score);
        }
        let a = loaded.score_cells(&rows[0], None);
        let b = loaded.score_cells(&rows[1], None);
        assert!(
            a.score > b.score && a.anomaly_score > b.anomaly_score,
            "{a:?} {b:?}"
        );
    }

    fn scored_order() -> Order {
        Order {
            order_id: "o-1".into(),
            customer_id: "c-1".into(),
            ts: Some(prost_types::Timestamp {
                seconds: 1_704_067_200,
                nanos: 500_000_000,
            }),
            lines: vec![fpb::OrderLine {
                sku: "sku-1".into(),
                quantity: 2,
                unit_price: 10.0,
                promotion: false,
            }],
            currency: "EUR".into(),
            payment_method: "card".into(),
            shipping_country: "DE".into(),
            billing_country: "de".into(),
            status: fpb::OrderStatus::Placed as i32,
            ..Default::default()
        }
    }

    /// 2024-06-01T00:00:00Z in micros: the "server clock" of the validation tests.
    const NOW: i64 = 1_717_200_000_000_000;

    /// The field an invalid order is refused on (panics when it is accepted or refused otherwise).
    fn refused_on(f: impl Fn(&mut Order)) -> String {
        let mut o = scored_order();
        f(&mut o);
        match App::validate_order(&o, "orders[3]", NOW) {
            Err(Error::Invalid(field, reason)) => {
                assert!(!reason.is_empty());
                field
            }
            other => panic!("expected INVALID_ARGUMENT, got {other:?} for {o:?}"),
        }
    }

    fn at(seconds: i64, nanos: i32) -> Option<prost_types::Timestamp> {
        Some(prost_types::Timestamp { seconds, nanos })
    }

    #[test]
    fn a_good_order_passes_with_its_time_and_without_one_is_scored_now() {
        assert_eq!(
            App::validate_order(&scored_order(), "order", NOW).unwrap(),
            Some(1_704_067_200_500_000)
        );
        let mut o = scored_order();
        o.ts = None;
        assert_eq!(App::validate_order(&o, "order", NOW).unwrap(), None);
        // The epoch itself and a day ahead of the clock are still times the store accepts.
        o.ts = at(0, 0);
        assert_eq!(App::validate_order(&o, "order", NOW).unwrap(), Some(0));
        o.ts = at(NOW / 1_000_000 + 86_400, 0);
        assert!(App::validate_order(&o, "order", NOW).is_ok());
        // No lines but a total; every status the proto knows.
        o.lines.clear();
        o.total = Some(12.5);
        for s in 0..=5 {
            o.status = s;
            assert!(App::validate_order(&o, "order", NOW).is_ok(), "status {s}");
        }
    }

    #[test]
    fn order_timestamps_out_of_range_are_refused_never_overflowed() {
        for (secs, nanos) in [
            (i64::MAX, 0),
            (i64::MAX, 999_999_999),
            (i64::MAX / 1_000_000 + 1, 0),
            (253_402_300_799, 0), // 9999-12-31
            (NOW / 1_000_000 + 86_401, 0),
            (-1, 0),
            (i64::MIN, 0),
            (1_704_067_200, -1),
            (1_704_067_200, 1_000_000_000),
            (1_704_067_200, i32::MIN),
        ] {
            assert_eq!(
                refused_on(|o| o.ts = at(secs, nanos)),
                "orders[3].ts",
                "{secs} s {nanos} ns"
            );
        }
        assert!(checked_micros(&at(i64::MAX, 0).unwrap()).is_err());
        assert_eq!(checked_micros(&at(1, 999_999_999).unwrap()), Ok(1_999_999));
        // Stored times go through the same check: unrepresentable is absent, not garbage.
        assert_eq!(micros(&at(i64::MAX, 0)), None);
        assert_eq!(micros(&at(2, 1_000)), Some(2_000_001));
    }

    #[test]
    fn bad_order_fields_are_named() {
        type Edit = Box<dyn Fn(&mut Order)>;
        let cases: Vec<(&str, Edit)> = vec![
            ("order_id", Box::new(|o| o.order_id.clear())),
            ("order_id", Box::new(|o| o.order_id = "x".repeat(129))),
            ("order_id", Box::new(|o| o.order_id = "a\u{0}b".into())),
            ("customer_id", Box::new(|o| o.customer_id = " ".into())),
            (
                "customer_id",
                Box::new(|o| o.customer_id = "y".repeat(10_000)),
            ),
            ("status", Box::new(|o| o.status = 6)),
            ("status", Box::new(|o| o.status = -1)),
            (
                "lines",
                Box::new(|o| o.lines = vec![o.lines[0].clone(); 1_001]),
            ),
            ("lines[0].quantity", Box::new(|o| o.lines[0].quantity = -1)),
            (
                "lines[0].quantity",
                Box::new(|o| o.lines[0].quantity = i64::MAX),
            ),
            (
                "lines[0].unit_price",
                Box::new(|o| o.lines[0].unit_price = f64::NAN),
            ),
            (
                "lines[0].unit_price",
                Box::new(|o| o.lines[0].unit_price = f64::INFINITY),
            ),
            (
                "lines[0].unit_price",
                Box::new(|o| o.lines[0].unit_price = -0.01),
            ),
            (
                "lines[0].unit_price",
                Box::new(|o| o.lines[0].unit_price = 1e300),
            ),
            (
                "lines[0].sku",
                Box::new(|o| o.lines[0].sku = "s".repeat(200)),
            ),
            ("total", Box::new(|o| o.total = Some(f64::NAN))),
            ("total", Box::new(|o| o.total = Some(f64::NEG_INFINITY))),
            ("total", Box::new(|o| o.total = Some(-1.0))),
            ("total", Box::new(|o| o.lines.clear())),
            ("currency", Box::new(|o| o.currency = "EURO".into())),
            (
                "shipping_country",
                Box::new(|o| o.shipping_country = "DEU".into()),
            ),
            (
                "billing_country",
                Box::new(|o| o.billing_country = "1".into()),
            ),
            (
                "payment_method",
                Box::new(|o| o.payment_method = "p".repeat(65)),
            ),
            (
                "device_fingerprint",
                Box::new(|o| o.device_fingerprint = "d".repeat(513)),
            ),
            ("store_id", Box::new(|o| o.store_id = "s".repeat(129))),
        ];
        for (field, f) in cases {
            assert_eq!(refused_on(f), format!("orders[3].{field}"));
        }
        // An order with 1,000 lines of the largest quantity and price is still finite.
        let mut o = scored_order();
        o.lines = vec![
            fpb::OrderLine {
                sku: "s".into(),
                quantity: MAX_QUANTITY,
                unit_price: MAX_AMOUNT,
                promotion: false,
            };
            MAX_LINES
        ];
        assert!(App::validate_order(&o, "order", NOW).is_ok());
        assert!(orders::order_total(&o).is_finite());
    }

    #[test]
    fn request_timestamps_name_the_field_and_absent_is_none() {
        assert_eq!(ts_field("review.ts", &None, NOW).unwrap(), None);
        let e = ts_field("review.ts", &at(i64::MIN, 0), NOW).unwrap_err();
        assert!(
            matches!(&e, Error::Invalid(f, r) if f == "review.ts" && r.contains("before 1970")),
            "{e:?}"
        );
        let e = ts_field("review.ts", &at(253_402_300_799, 0), NOW).unwrap_err();
        assert!(
            matches!(&e, Error::Invalid(f, r) if f == "review.ts" && r.contains("future")),
            "{e:?}"
        );
        assert_eq!(
            tonic::Status::from(e).code(),
            tonic::Code::InvalidArgument,
            "mapped to INVALID_ARGUMENT"
        );
    }
}
