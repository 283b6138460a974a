//! What an operator needs to see that a model goes stale, exported as OpenTelemetry metrics
//! (through the global meter provider that `augur_runtime::telemetry::init` installs):
//!
//! - `model.inference.duration` (histogram, ms) by `model`;
//! - `model.prediction.score` (histogram over [0, 1] in tenths) by `model`: the served score
//!   distribution, to compare with the validation one;
//! - `model.feature.psi` (gauge) by `model` and `feature`: the population stability index of each
//!   input feature over the last `window` requests against its training distribution (deciles of
//!   the training data). Rule of thumb: < 0.1 stable, 0.1-0.25 drifting, > 0.25 retrain.
//!
//! [`ModelMonitor::span`] / [`ModelMonitor::infer`] also open the `model.inference` tracing span
//! (fields `model.name`, `model.version`, `batch.size`) around the model computation, so a request's
//! trace shows the inference.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Histogram, Meter};
use serde::{Deserialize, Serialize};

/// Training distribution of the input features: decile edges per feature and the share of
/// training rows in each bin (bins are `(-inf, e0], (e0, e1], ..., (e_last, inf)`; missing
/// values have a bin of their own at the end).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureReference {
    pub names: Vec<String>,
    pub edges: Vec<Vec<f64>>,
    pub shares: Vec<Vec<f64>>,
}

fn bin(edges: &[f64], v: f64) -> usize {
    if !v.is_finite() {
        return edges.len() + 1;
    }
    edges.partition_point(|&e| e < v)
}

impl FeatureReference {
    /// From training rows (`rows[i][j]` = feature j of row i; NaN = missing).
    pub fn fit(names: Vec<String>, rows: &[Vec<f64>]) -> Self {
        let mut edges = Vec::with_capacity(names.len());
        let mut shares = Vec::with_capacity(names.len());
        for j in 0..names.len() {
            let mut col: Vec<f64> = rows
                .iter()
                .filter_map(|r| r.get(j).copied())
                .filter(|v| v.is_finite())
                .collect();
            col.sort_by(f64::total_cmp);
            let mut e: Vec<f64> = (1..10)
                .filter_map(|q| col.get(q * col.len() / 10).copied())
                .collect();
            e.dedup();
            let mut counts = vec![0.0; e.len() + 2];
            for r in rows {
                counts[bin(&e, r.get(j).copied().unwrap_or(f64::NAN))] += 1.0;
            }
            let n = rows.len().max(1) as f64;
            shares.push(counts.into_iter().map(|c| c / n).collect());
            edges.push(e);
        }
        FeatureReference {
            names,
            edges,
            shares,
        }
    }
}

impl FeatureReference {
    /// Whether the shapes agree (one edge list and one share list per name, two more shares
    /// than edges): a reference read from a file is checked before use.
    pub fn is_consistent(&self) -> bool {
        self.edges.len() == self.names.len()
            && self.shares.len() == self.names.len()
            && self
                .edges
                .iter()
                .zip(&self.shares)
                .all(|(e, s)| s.len() == e.len() + 2 && e.len() < 250)
    }
}

/// Population stability index of observed bin counts against expected shares.
pub fn psi(expected: &[f64], observed: &[u64]) -> f64 {
    let n: u64 = observed.iter().sum();
    if n == 0 {
        return 0.0;
    }
    const EPS: f64 = 1e-4;
    expected
        .iter()
        .zip(observed)
        .map(|(&e, &o)| {
            let a = (o as f64 / n as f64).max(EPS);
            let e = e.max(EPS);
            (a - e) * (a / e).ln()
        })
        .sum()
}

struct Window {
    /// Ring buffer of per-request bin indices (one per feature).
    rows: Vec<Vec<u8>>,
    next: usize,
    counts: Vec<Vec<u64>>,
}

/// Records served predictions of one model.
#[derive(Clone)]
pub struct ModelMonitor {
    name: Arc<str>,
    attrs: Arc<[KeyValue]>,
    latency: Histogram<f64>,
    scores: Histogram<f64>,
    reference: Arc<Mutex<Option<(FeatureReference, Window)>>>,
    window: usize,
}

impl std::fmt::Debug for ModelMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelMonitor")
            .field("attrs", &self.attrs)
            .finish()
    }
}

impl ModelMonitor {
    /// A monitor for `model` on the global meter; PSI over the last `window` requests.
    pub fn global(model: &str, window: usize) -> Self {
        Self::new(&opentelemetry::global::meter("augur"), model, window)
    }

    pub fn new(meter: &Meter, model: &str, window: usize) -> Self {
        let attrs: Arc<[KeyValue]> = Arc::from(vec![KeyValue::new("model", model.to_string())]);
        let reference: Arc<Mutex<Option<(FeatureReference, Window)>>> = Arc::default();
        let r = reference.clone();
        let model_name = model.to_string();
        let _gauge = meter
            .f64_observable_gauge("model.feature.psi")
            .with_description(
                "Population stability index of an input feature, recent requests vs training",
            )
            .with_callback(move |obs| {
                let Ok(guard) = r.lock() else { return };
                if let Some((reference, w)) = guard.as_ref() {
                    for (j, name) in reference.names.iter().enumerate() {
                        obs.observe(
                            psi(&reference.shares[j], &w.counts[j]),
                            &[
                                KeyValue::new("model", model_name.clone()),
                                KeyValue::new("feature", name.clone()),
                            ],
                        );
                    }
                }
            })
            .build();
        ModelMonitor {
            name: Arc::from(model),
            attrs,
            latency: meter
                .f64_histogram("model.inference.duration")
                .with_unit("ms")
                .with_description("Model inference time per request")
                .with_boundaries(vec![
                    0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 1000.0,
                ])
                .build(),
            scores: meter
                .f64_histogram("model.prediction.score")
                .with_description("Served prediction scores (probabilities)")
                .with_boundaries((1..10).map(|i| f64::from(i) / 10.0).collect())
                .build(),
            reference,
            window: window.max(1),
        }
    }

    /// The model name the metrics carry.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The `model.inference` span (a child of the current span) for one batch of `batch` inputs
    /// of model version `version`. Enter it where the computation runs (see [`Self::timed`]).
    pub fn span(&self, version: &str, batch: usize) -> tracing::Span {
        tracing::info_span!(
            "model.inference",
            model.name = %self.name,
            model.version = %version,
            batch.size = batch as u64,
        )
    }

    /// Runs the model computation `f` inside `span` and records its duration.
    pub fn timed<T>(&self, span: &tracing::Span, f: impl FnOnce() -> T) -> T {
        span.in_scope(|| {
            let started = Instant::now();
            let out = f();
            self.inference(started.elapsed());
            out
        })
    }

    /// [`Self::timed`] in a new [`Self::span`]: for computations on the request's own task.
    pub fn infer<T>(&self, version: &str, batch: usize, f: impl FnOnce() -> T) -> T {
        self.timed(&self.span(version, batch), f)
    }

    /// Sets the training distribution the served inputs are compared with (on a model swap).
    pub fn set_reference(&self, reference: FeatureReference) {
        if !reference.is_consistent() {
            tracing::warn!(model = %self.name, "inconsistent feature reference ignored: no drift");
            self.clear_reference();
            return;
        }
        let counts = reference.shares.iter().map(|s| vec![0; s.len()]).collect();
        if let Ok(mut g) = self.reference.lock() {
            *g = Some((
                reference,
                Window {
                    rows: Vec::with_capacity(self.window.min(4096)),
                    next: 0,
                    counts,
                },
            ));
        }
    }

    /// No training distribution (a model saved without one): no drift is reported.
    pub fn clear_reference(&self) {
        if let Ok(mut g) = self.reference.lock() {
            *g = None;
        }
    }

    /// The feature names of the current reference, in the order [`Self::features`] expects.
    pub fn reference_names(&self) -> Option<Vec<String>> {
        let g = self.reference.lock().ok()?;
        g.as_ref().map(|(r, _)| r.names.clone())
    }

    pub fn inference(&self, elapsed: Duration) {
        self.latency
            .record(elapsed.as_secs_f64() * 1000.0, &self.attrs);
    }

    pub fn score(&self, score: f64) {
        if score.is_finite() {
            self.scores.record(score, &self.attrs);
        }
    }

    /// One request's input features, in the reference's order.
    pub fn features(&self, values: &[f64]) {
        let Ok(mut g) = self.reference.lock() else {
            return;
        };
        let Some((reference, w)) = g.as_mut() else {
            return;
        };
        let bins: Vec<u8> = reference
            .edges
            .iter()
            .enumerate()
            .map(|(j, e)| bin(e, values.get(j).copied().unwrap_or(f64::NAN)) as u8)
            .collect();
        if w.rows.len() < self.window {
            w.rows.push(bins.clone());
        } else {
            let old = std::mem::replace(&mut w.rows[w.next], bins.clone());
            for (j, b) in old.iter().enumerate() {
                w.counts[j][*b as usize] -= 1;
            }
            w.next = (w.next + 1) % self.window;
        }
        for (j, b) in bins.iter().enumerate() {
            w.counts[j][*b as usize] += 1;
        }
    }

    /// Current PSI per feature (also exported as `model.feature.psi`).
    pub fn drift(&self) -> Vec<(String, f64)> {
        let Ok(g) = self.reference.lock() else {
            return Vec::new();
        };
        match g.as_ref() {
            Some((r, w)) => r
                .names
                .iter()
                .enumerate()
                .map(|(j, n)| (n.clone(), psi(&r.shares[j], &w.counts[j])))
                .collect(),
            None => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(shift: f64, n: usize) -> Vec<Vec<f64>> {
        (0..n)
            .map(|i| {
                vec![
                    (i % 100) as f64 + shift,
                    if i % 10 == 0 { f64::NAN } else { 1.0 },
                ]
            })
            .collect()
    }

    #[test]
    fn psi_is_small_for_the_same_distribution_and_large_for_a_shift() {
        let reference = FeatureReference::fit(vec!["x".into(), "y".into()], &rows(0.0, 1000));
        assert_eq!(reference.shares[0].iter().sum::<f64>().round(), 1.0);
        let m = ModelMonitor::new(&opentelemetry::global::meter("test"), "t", 500);
        m.set_reference(reference);
        for r in rows(0.0, 500) {
            m.features(&r);
        }
        let d = m.drift();
        assert!(d[0].1 < 0.05, "{d:?}");
        assert!(d[1].1 < 0.05, "{d:?}");
        // The window slides: after 500 shifted rows only the shifted ones count.
        for r in rows(60.0, 500) {
            m.features(&r);
        }
        let d = m.drift();
        assert!(d[0].1 > 0.25, "{d:?}");
        assert!(d[1].1 < 0.05, "{d:?}");
        m.clear_reference();
        assert!(m.drift().is_empty());
    }

    #[test]
    fn an_inconsistent_reference_is_ignored() {
        let mut reference = FeatureReference::fit(vec!["x".into()], &rows(0.0, 100));
        reference.shares[0].pop();
        let m = ModelMonitor::new(&opentelemetry::global::meter("test"), "t", 10);
        m.set_reference(reference);
        m.features(&[1.0]);
        assert!(m.drift().is_empty());
    }

    /// The three instruments reach an exporter with the model (and feature) attributes, and the
    /// exported PSI rises when the served inputs shift.
    #[test]
    fn exports_latency_scores_and_psi_by_model_and_feature() {
        use opentelemetry::metrics::MeterProvider as _;
        use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
        use opentelemetry_sdk::metrics::{
            InMemoryMetricExporter, PeriodicReader, SdkMeterProvider,
        };

        let exporter = InMemoryMetricExporter::default();
        let provider = SdkMeterProvider::builder()
            .with_reader(PeriodicReader::builder(exporter.clone()).build())
            .build();
        let m = ModelMonitor::new(&provider.meter("test"), "churn", 200);
        m.set_reference(FeatureReference::fit(
            vec!["x".into(), "y".into()],
            &rows(0.0, 1000),
        ));
        let v = m.infer("v1", 3, || 42);
        assert_eq!(v, 42);
        m.inference(Duration::from_millis(3));
        for s in [0.05, 0.15, 0.95, f64::NAN] {
            m.score(s);
        }
        for r in rows(0.0, 200) {
            m.features(&r);
        }

        // (latency count, latency attrs, score count, score attrs, psi by feature)
        type Seen = (
            u64,
            Vec<String>,
            u64,
            Vec<String>,
            Vec<(String, String, f64)>,
        );
        fn collect(all: &[ResourceMetrics]) -> Seen {
            let mut seen: Seen = Default::default();
            let kv = |a: &mut dyn Iterator<Item = &KeyValue>| -> Vec<String> {
                a.map(|kv| format!("{}={}", kv.key, kv.value)).collect()
            };
            for rm in all {
                for sm in rm.scope_metrics() {
                    for metric in sm.metrics() {
                        match (metric.name(), metric.data()) {
                            (
                                "model.inference.duration",
                                AggregatedMetrics::F64(MetricData::Histogram(h)),
                            ) => {
                                for dp in h.data_points() {
                                    seen.0 = dp.count();
                                    seen.1 = kv(&mut dp.attributes());
                                }
                            }
                            (
                                "model.prediction.score",
                                AggregatedMetrics::F64(MetricData::Histogram(h)),
                            ) => {
                                for dp in h.data_points() {
                                    seen.2 = dp.count();
                                    seen.3 = kv(&mut dp.attributes());
                                }
                            }
                            ("model.feature.psi", AggregatedMetrics::F64(MetricData::Gauge(g))) => {
                                seen.4.clear();
                                for dp in g.data_points() {
                                    let a = kv(&mut dp.attributes());
                                    let get = |k: &str| {
                                        a.iter()
                                            .find_map(|s| s.strip_prefix(&format!("{k}=")))
                                            .unwrap_or_default()
                                            .to_string()
                                    };
                                    seen.4.push((get("model"), get("feature"), dp.value()));
                                }
                                seen.4.sort_by(|a, b| a.1.cmp(&b.1));
                            }
                            _ => {}
                        }
                    }
                }
            }
            seen
        }

        provider.force_flush().unwrap();
        let (n_lat, lat_attrs, n_scores, score_attrs, psi) =
            collect(&exporter.get_finished_metrics().unwrap());
        assert_eq!(n_lat, 2);
        assert_eq!(lat_attrs, vec!["model=churn".to_string()]);
        assert_eq!(n_scores, 3, "NaN is not recorded");
        assert_eq!(score_attrs, vec!["model=churn".to_string()]);
        assert_eq!(psi.len(), 2, "{psi:?}");
        assert_eq!((psi[0].0.as_str(), psi[0].1.as_str()), ("churn", "x"));
        assert_eq!((psi[1].0.as_str(), psi[1].1.as_str()), ("churn", "y"));
        assert!(psi.iter().all(|p| p.2 < 0.1), "{psi:?}");

        exporter.reset();
        for r in rows(60.0, 200) {
            m.features(&r);
        }
        provider.force_flush().unwrap();
        let psi = collect(&exporter.get_finished_metrics().unwrap()).4;
        assert!(psi[0].2 > 0.25, "shifted x: {psi:?}");
        assert!(psi[1].2 < 0.1, "unshifted y: {psi:?}");
    }
}
