//! The thin tonic layer: validate, call the domain, map errors.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use augur_model::monitor::ModelMonitor;
use augur_model::{ArtifactStore, ModelSlot, TrainGate};
use augur_proto::churn as pb;
use augur_proto::churn::churn_server::Churn;
use augur_proto::common::{Factor, Money, TrainProgress};
use augur_proto::featurestore::Segment;
use tonic::{Request, Response, Status};

use crate::error::{Error, Result};
use crate::features;
use crate::fs::{FeatureStore, ts};
use crate::model::{ChurnModel, MODEL_NAME, Prediction, Tier};
use crate::train::{self, TrainParams};
use augur_runtime::error::MAX_ID_BYTES;

/// Most customers per PredictChurn call.
pub const MAX_BATCH: usize = 10_000;
/// Most customers per ListAtRisk answer.
pub const MAX_LIST: u32 = 10_000;
/// PredictChurn customers the input drift statistics look back over.
pub const DRIFT_WINDOW: usize = 1_000;

type BoxStream<T> = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send>>;

/// Shared state of the service.
#[derive(Debug)]
pub struct State {
    pub slot: ModelSlot<ChurnModel>,
    pub gate: TrainGate,
    pub fs: FeatureStore,
    pub store: ArtifactStore,
    /// Inference latency, served probabilities and input drift of the served model.
    pub monitor: ModelMonitor,
}

impl State {
    /// The state serving `model` (if any).
    pub fn new(model: Option<ChurnModel>, fs: FeatureStore, store: ArtifactStore) -> State {
        let state = State {
            slot: ModelSlot::new(None),
            gate: TrainGate::default(),
            fs,
            store,
            monitor: ModelMonitor::global(MODEL_NAME, DRIFT_WINDOW),
        };
        if let Some(m) = model {
            state.serve(m);
        }
        state
    }

    pub fn model(&self) -> Result<Arc<ChurnModel>> {
        self.slot.get().ok_or(Error::NoModel)
    }

    /// Serves `model` and compares the served inputs with its training distribution from now on.
    pub fn serve(&self, model: ChurnModel) {
        match &model.reference {
            Some(r) => self.monitor.set_reference(r.clone()),
            None => {
                tracing::info!(
                    version = %model.meta.version,
                    "churn model saved without a feature reference: no input drift statistics until the next Train"
                );
                self.monitor.clear_reference();
            }
        }
        self.slot.swap(model);
    }

    /// Trains, saves and swaps in a model; reports progress through `report`.
    pub async fn train<R>(&self, p: &TrainParams, mut report: R) -> Result<Arc<ChurnModel>>
    where
        R: FnMut(&str, f64, String) + Send + Clone + 'static,
    {
        let ds = train::load(&self.fs, p, &mut report).await?;
        report(
            "training",
            0.45,
            format!(
                "{} examples at {} cutoffs",
                ds.examples.len(),
                ds.cutoffs.len()
            ),
        );
        let p2 = p.clone();
        let mut r2 = report.clone();
        let (ds, model) = tokio::task::spawn_blocking(move || {
            let m = train::fit(&ds, &p2, &mut r2);
            (ds, m)
        })
        .await
        .map_err(|e| Error::Internal(format!("training task: {e}")))?;
        let mut model = model?;
        train::add_horizon_stretch(&self.fs, p, &ds, &mut model, &mut report).await?;
        report("saving", 0.95, format!("saving {}", model.meta.version));
        let store = self.store.clone();
        let m2 = model.clone();
        tokio::task::spawn_blocking(move || m2.save(&store))
            .await
            .map_err(|e| Error::Internal(format!("save task: {e}")))??;
        self.serve(model);
        self.model()
    }

    /// Predictions (or NOT_FOUND) for `ids`, as of `as_of` (seconds) or now; the served
    /// probabilities and inputs count in the score distribution and the drift statistics.
    pub async fn predict(
        &self,
        model: &Arc<ChurnModel>,
        ids: &[String],
        as_of: Option<i64>,
        described: usize,
    ) -> Result<Vec<(String, Option<(features::Record, Prediction)>)>> {
        let out = self.predict_quietly(model, ids, as_of, described).await?;
        self.observe(model, &out);
        Ok(out)
    }

    /// Counts served predictions in the score distribution and their inputs in the drift window.
    pub fn observe(
        &self,
        model: &ChurnModel,
        served: &[(String, Option<(features::Record, Prediction)>)],
    ) {
        let names = model.reference.as_ref().map(|r| &r.names);
        // Positions of the monitored features, resolved once per feature-store answer.
        let mut positions = features::PerAnswer::default();
        for (r, p) in served.iter().filter_map(|(_, p)| p.as_ref()) {
            self.monitor.score(p.probability);
            if let Some(names) = names {
                let at = positions.get(r, |s| s.positions(names));
                self.monitor.features(&r.values_at(at));
            }
        }
    }

    /// [`Self::predict`] recording only the inference (span and latency): for scans over every
    /// customer (ListAtRisk), which would swamp the request-driven statistics.
    pub async fn predict_quietly(
        &self,
        model: &Arc<ChurnModel>,
        ids: &[String],
        as_of: Option<i64>,
        described: usize,
    ) -> Result<Vec<(String, Option<(features::Record, Prediction)>)>> {
        let rows = self
            .fs
            .features(ids, as_of, &model.needed_features())
            .await?;
        let recs = features::records(rows);
        let span = self.monitor.span(&model.meta.version, ids.len());
        let started = std::time::Instant::now();
        let preds = predict_records(model, recs, described, &span).await?;
        self.monitor.inference(started.elapsed());
        Ok(ids.iter().cloned().zip(preds).collect())
    }
}

/// Batches at least this large are scored off the async workers, split over the cores.
const PARALLEL_BATCH: usize = 128;

/// The model's prediction for each record (`None` stays `None`), in order. A small batch is
/// scored on the request's task; a large one (about 7 us a customer: 7 ms for 1,000) on the
/// blocking pool in one chunk per available core, so it neither stalls an async worker nor
/// waits for one core alone.
async fn predict_records(
    model: &Arc<ChurnModel>,
    recs: Vec<Option<features::Record>>,
    described: usize,
    span: &tracing::Span,
) -> Result<Vec<Option<(features::Record, Prediction)>>> {
    fn score(
        model: &ChurnModel,
        recs: Vec<Option<features::Record>>,
        described: usize,
    ) -> Vec<Option<(features::Record, Prediction)>> {
        model.predict_batch(recs, described)
    }
    if recs.len() < PARALLEL_BATCH {
        return Ok(span.in_scope(|| score(model, recs, described)));
    }
    // Read once: on Linux each call reads the cgroup's CPU quota from files.
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let cores = *CORES.get_or_init(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let per_task = recs.len().div_ceil(cores);
    let mut rest = recs;
    let mut tasks = Vec::with_capacity(cores);
    while !rest.is_empty() {
        let tail = rest.split_off(per_task.min(rest.len()));
        let chunk = std::mem::replace(&mut rest, tail);
        let (model, span) = (model.clone(), span.clone());
        tasks.push(tokio::task::spawn_blocking(move || {
            span.in_scope(|| score(&model, chunk, described))
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.extend(
            t.await
                .map_err(|e| Error::Internal(format!("prediction task: {e}")))?,
        );
    }
    Ok(out)
}

/// The gRPC service.
#[derive(Debug, Clone)]
pub struct Service {
    pub state: Arc<State>,
}

fn tier(t: Tier) -> pb::RiskTier {
    match t {
        Tier::Low => pb::RiskTier::Low,
        Tier::Medium => pb::RiskTier::Medium,
        Tier::High => pb::RiskTier::High,
        Tier::Critical => pb::RiskTier::Critical,
    }
}

fn money(amount: f64, currency: &str) -> Option<Money> {
    Some(Money {
        amount: if amount.is_finite() { amount } else { 0.0 },
        currency: currency.to_string(),
    })
}

/// The answer for one customer; the prediction's texts move into it (a 1,000-customer answer
/// has 5,000 factors).
pub fn to_proto(
    id: String,
    p: Prediction,
    max_factors: usize,
    currency: &str,
) -> pb::ChurnPrediction {
    pb::ChurnPrediction {
        customer_id: id,
        churn_probability: p.probability,
        tier: tier(p.tier) as i32,
        factors: p
            .factors
            .into_iter()
            .take(max_factors)
            .map(|f| Factor {
                name: f.name.to_string(),
                contribution: f.contribution,
                value: f.value,
                description: f.description,
                unit: "log_odds".into(),
            })
            .collect(),
        base_value: p.base,
        expected_purchases: p.expected_purchases,
        expected_value: money(p.expected_value, currency),
    }
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

fn secs(t: &prost_types::Timestamp) -> i64 {
    t.seconds
}

#[tonic::async_trait]
impl Churn for Service {
    type TrainStream = BoxStream<TrainProgress>;

    async fn predict_churn(
        &self,
        req: Request<pb::PredictChurnRequest>,
    ) -> Result<Response<pb::PredictChurnResponse>, Status> {
        let pb::PredictChurnRequest {
            customer_ids,
            as_of,
            max_factors,
        } = req.into_inner();
        let mut v = augur_runtime::error::Violations::new();
        if customer_ids.is_empty() {
            v.add("customer_ids", "at least one customer id is required");
        }
        if customer_ids.len() > MAX_BATCH {
            v.add(
                "customer_ids",
                format!("at most {MAX_BATCH} customers per call"),
            );
        }
        if let Some(i) = customer_ids.iter().position(|c| c.trim().is_empty()) {
            v.add(format!("customer_ids[{i}]"), "must not be empty");
        }
        if let Some(i) = customer_ids.iter().position(|c| c.len() > MAX_ID_BYTES) {
            v.add(
                format!("customer_ids[{i}]"),
                format!("longer than {MAX_ID_BYTES} bytes"),
            );
        }
        let now = now_secs();
        if let Some(t) = &as_of {
            if secs(t) > now + 60 {
                v.add("as_of", "must not be in the future");
            } else if secs(t) < 0 {
                v.add("as_of", "must not be before 1970");
            }
        }
        v.into_result().map_err(Status::from)?;
        let model = self.state.model()?;
        let mut seen = HashSet::new();
        let ids: Vec<String> = customer_ids
            .into_iter()
            .filter(|id| seen.insert(id.clone()))
            .collect();
        let at = as_of.as_ref().map(secs);
        let max_factors = if max_factors == 0 {
            5
        } else {
            max_factors as usize
        };
        let out = self.state.predict(&model, &ids, at, max_factors).await?;
        let currency = model.spec.currency.clone();
        let mut resp = pb::PredictChurnResponse {
            as_of: Some(as_of.unwrap_or(ts(now))),
            horizon_days: model.spec.horizon_days,
            model_version: model.meta.version.clone(),
            ..Default::default()
        };
        for (id, p) in out {
            match p {
                Some((_, p)) => resp
                    .predictions
                    .push(to_proto(id, p, max_factors, &currency)),
                None => resp.errors.push(pb::CustomerError {
                    message: format!("customer {id} is unknown to the feature store (at as_of)"),
                    customer_id: id,
                    code: tonic::Code::NotFound as i32,
                }),
            }
        }
        Ok(Response::new(resp))
    }

    async fn list_at_risk(
        &self,
        req: Request<pb::ListAtRiskRequest>,
    ) -> Result<Response<pb::ListAtRiskResponse>, Status> {
        let pb::ListAtRiskRequest {
            min_probability,
            limit,
            segment,
        } = req.into_inner();
        let mut v = augur_runtime::error::Violations::new();
        // An unknown enum value is a mistake, not "any segment".
        let segment = Segment::try_from(segment).unwrap_or_else(|_| {
            v.add("segment", format!("unknown value {segment}"));
            Segment::Unspecified
        });
        if !(0.0..=1.0).contains(&min_probability) {
            v.add("min_probability", "must be in [0, 1]");
        }
        if limit > MAX_LIST {
            v.add("limit", format!("at most {MAX_LIST}"));
        }
        v.into_result().map_err(Status::from)?;
        let limit = if limit == 0 { 100 } else { limit as usize };
        let model = self.state.model()?;
        let ids = self.state.fs.customers().await?;
        let now = now_secs();
        let mut scored: Vec<(String, Prediction)> = Vec::new();
        for chunk in ids.chunks(2_000) {
            for (id, p) in self.state.predict_quietly(&model, chunk, None, 5).await? {
                if let Some((_, p)) = p
                    && p.probability >= min_probability
                {
                    scored.push((id, p));
                }
            }
        }
        let var = |p: &Prediction| p.probability * p.value_if_retained;
        scored.sort_by(|a, b| {
            var(&b.1)
                .total_cmp(&var(&a.1))
                .then(b.1.probability.total_cmp(&a.1.probability))
                .then(a.0.cmp(&b.0))
        });
        // Segments in batches: of every candidate when filtering, else of the returned ones.
        let mut out = Vec::new();
        let mut total_matching = 0u64;
        let mut total_var = 0.0;
        let currency = model.spec.currency.clone();
        if segment == Segment::Unspecified {
            total_matching = scored.len() as u64;
            total_var = scored.iter().map(|(_, p)| var(p)).sum();
            scored.truncate(limit);
        }
        let ids: Vec<String> = scored.iter().map(|(id, _)| id.clone()).collect();
        let segments = self.state.fs.segments(&ids).await?;
        for ((id, p), seg) in scored.into_iter().zip(segments) {
            if segment == Segment::Unspecified {
                out.push((id, p, seg));
            } else if seg == segment {
                total_matching += 1;
                total_var += var(&p);
                if out.len() < limit {
                    out.push((id, p, segment));
                }
            }
        }
        let customers = out
            .into_iter()
            .map(|(id, p, seg)| pb::AtRiskCustomer {
                value_at_risk: money(var(&p), &currency),
                prediction: Some(to_proto(id, p, 5, &currency)),
                segment: seg as i32,
            })
            .collect();
        Ok(Response::new(pb::ListAtRiskResponse {
            customers,
            total_matching,
            total_value_at_risk: money(total_var, &currency),
            as_of: Some(ts(now)),
            horizon_days: model.spec.horizon_days,
            model_version: model.meta.version.clone(),
        }))
    }

    async fn train(
        &self,
        req: Request<pb::TrainRequest>,
    ) -> Result<Response<Self::TrainStream>, Status> {
        let pb::TrainRequest {
            cutoff,
            horizon_days,
            example_cutoffs,
            validation_fraction,
            hyperparameters,
        } = req.into_inner();
        let now = now_secs();
        let mut v = augur_runtime::error::Violations::new();
        let cutoff = cutoff.as_ref().map_or(now, secs);
        if cutoff > now + 60 {
            v.add("cutoff", "must not be in the future");
        }
        if cutoff < 0 {
            v.add("cutoff", "must not be before 1970");
        }
        if horizon_days > 3_650 {
            v.add("horizon_days", "at most 3650");
        }
        if validation_fraction != 0.0 && !(validation_fraction > 0.0 && validation_fraction <= 0.5)
        {
            v.add("validation_fraction", "must be in (0, 0.5]");
        }
        for (i, c) in example_cutoffs.iter().enumerate() {
            if secs(c) >= cutoff {
                v.add(format!("example_cutoffs[{i}]"), "must be before the cutoff");
            } else if secs(c) < 0 {
                v.add(format!("example_cutoffs[{i}]"), "must not be before 1970");
            }
        }
        v.into_result().map_err(Status::from)?;
        let mut p = TrainParams::new(cutoff);
        if horizon_days > 0 {
            p.horizon_days = horizon_days;
        }
        p.example_cutoffs = example_cutoffs.iter().map(secs).collect();
        if validation_fraction > 0.0 {
            p.validation_fraction = validation_fraction;
        }
        let hp: BTreeMap<String, String> = hyperparameters.into_iter().collect();
        p.apply_hyperparameters(&hp)?;
        let permit = self.state.gate.try_start().ok_or(Error::Busy)?;
        let (progress, stream) = augur_model::progress::channel();
        let state = self.state.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, f64, String)>();
            let fwd = {
                let progress = progress.clone();
                tokio::spawn(async move {
                    while let Some((s, f, m)) = rx.recv().await {
                        progress.stage(&s, f, m).await;
                    }
                })
            };
            let report = move |s: &str, f: f64, m: String| {
                let _ = tx.send((s.to_string(), f, m));
            };
            let res = state.train(&p, report).await;
            let _ = fwd.await;
            match res {
                Ok(m) => progress.done(m.meta.to_proto()).await,
                Err(e) => progress.fail(e.into()).await,
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_model_info(
        &self,
        _req: Request<pb::GetModelInfoRequest>,
    ) -> Result<Response<pb::GetModelInfoResponse>, Status> {
        let model = self.state.model()?;
        Ok(Response::new(pb::GetModelInfoResponse {
            model: Some(model.meta.to_proto()),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::Record;
    use crate::train::{Dataset, Example, fit_btyd, is_validation};

    /// Customers with a few behavioural features; `views_shift` is added to `views_30d`. No
    /// `days_since_first_order`, so no BTYD fit (maximum likelihood is slow unoptimised).
    fn record(i: usize, views_shift: f64) -> Record {
        let orders = 1.0 + (i % 7) as f64;
        let recency = ((i * 37) % 59) as f64 * 3.0;
        Record::from_values(
            &[
                ("frequency_lifetime", orders),
                ("recency_days", recency),
                ("monetary_lifetime", orders * (20.0 + (i % 13) as f64)),
                ("views_30d", (i % 23) as f64 + views_shift),
            ],
            &[],
        )
    }

    fn dataset(n: usize) -> Dataset {
        let examples: Vec<Example> = (0..n)
            .map(|i| {
                let record = record(i, 0.0);
                let churned = record.get("recency_days").unwrap_or(0.0) > 30.0;
                let id = format!("c{i}");
                Example {
                    validation: is_validation(&id, 0.2),
                    customer_id: id,
                    at: 0,
                    window_weeks: 90.0 / 7.0,
                    record,
                    churned,
                    purchases: if churned { 0.0 } else { 1.0 },
                }
            })
            .collect();
        let recs: Vec<&Record> = examples.iter().map(|e| &e.record).collect();
        let btyd = fit_btyd(&recs);
        Dataset {
            at_cutoff: examples.iter().map(|e| e.record.clone()).collect(),
            at_cutoff_ids: examples.iter().map(|e| e.customer_id.clone()).collect(),
            examples,
            cutoffs: vec![0],
            btyd_at: vec![btyd],
            names: [
                "frequency_lifetime",
                "recency_days",
                "monetary_lifetime",
                "views_30d",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            data_start: None,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_large_batch_scored_over_the_cores_matches_one_by_one_in_order() {
        let mut p = TrainParams::new(90 * 86_400);
        p.nam.epochs = 2;
        p.variants = vec!["nam_no_btyd".into()];
        let model =
            Arc::new(train::fit(&dataset(600), &p, &mut |_: &str, _: f64, _: String| {}).unwrap());
        // Unknown customers (None) interleaved, so order and gaps both matter.
        let recs: Vec<Option<Record>> = (0..3 * PARALLEL_BATCH + 7)
            .map(|i| (i % 11 != 3).then(|| record(i, 0.0)))
            .collect();
        let span = tracing::Span::none();
        let split = predict_records(&model, recs.clone(), 5, &span)
            .await
            .unwrap();
        assert_eq!(split.len(), recs.len());
        for (i, (r, got)) in recs.iter().zip(&split).enumerate() {
            match (r, got) {
                (None, None) => {}
                (Some(r), Some((echo, p))) => {
                    assert_eq!(echo, r, "record {i} out of place");
                    assert_eq!(*p, model.predict_top(r, 5), "prediction {i}");
                }
                _ => panic!("record {i}: known/unknown mixed up"),
            }
        }
        // A small batch takes the inline path and gives the same.
        let small = predict_records(&model, recs[..5].to_vec(), 5, &span)
            .await
            .unwrap();
        assert_eq!(small, split[..5].to_vec());
    }

    #[test]
    fn a_batch_sharing_one_plan_scores_as_records_with_their_own_names() {
        let mut p = TrainParams::new(90 * 86_400);
        p.nam.epochs = 2;
        p.variants = vec!["nam_no_btyd".into()];
        let model = train::fit(&dataset(600), &p, &mut |_: &str, _: f64, _: String| {}).unwrap();
        // One feature-store answer: names in another order than the training records, an extra
        // numeric and a string feature the model does not use, gaps.
        let names: Vec<String> = [
            "views_30d",
            "country",
            "monetary_lifetime",
            "unused",
            "recency_days",
            "frequency_lifetime",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let rows = crate::fs::Rows {
            names,
            rows: (0..40)
                .map(|i| {
                    let r = record(i, 0.0);
                    let num = |n: &str| match r.get(n) {
                        // Every fifth customer has no views.
                        Some(_) if n == "views_30d" && i % 5 == 0 => crate::fs::Cell::Missing,
                        Some(v) => crate::fs::Cell::Num(v),
                        None => crate::fs::Cell::Missing,
                    };
                    (i % 9 != 4).then(|| {
                        vec![
                            num("views_30d"),
                            crate::fs::Cell::Str("DE".into()),
                            num("monetary_lifetime"),
                            crate::fs::Cell::Num(7.0),
                            num("recency_days"),
                            num("frequency_lifetime"),
                        ]
                    })
                })
                .collect(),
        };
        let mut recs = features::records(rows);
        // A record of another answer in the middle: the plan must not carry over.
        recs.insert(20, Some(record(99, 3.0)));
        let batch = model.predict_batch(recs.clone(), 5);
        assert_eq!(batch.len(), recs.len());
        let mut missing = 0;
        for (i, (r, got)) in recs.iter().zip(&batch).enumerate() {
            match (r, got) {
                (None, None) => {}
                (Some(r), Some((echo, p))) => {
                    assert_eq!(echo, r);
                    assert_eq!(*p, model.predict_top(r, 5), "record {i}");
                    // The same customer with its own names, as one record alone.
                    let j = if i == 20 {
                        99
                    } else if i > 20 {
                        i - 1
                    } else {
                        i
                    };
                    let mut own = vec![
                        ("frequency_lifetime", r.get("frequency_lifetime").unwrap()),
                        ("recency_days", r.get("recency_days").unwrap()),
                        ("monetary_lifetime", r.get("monetary_lifetime").unwrap()),
                    ];
                    if let Some(v) = r.get("views_30d") {
                        own.push(("views_30d", v));
                    } else {
                        missing += 1;
                    }
                    let alone = model.predict_top(&Record::from_values(&own, &[]), 5);
                    assert_eq!(
                        p.probability, alone.probability,
                        "record {i} (customer {j})"
                    );
                    assert_eq!(p.factors, alone.factors, "record {i}");
                }
                _ => panic!("record {i}: known/unknown mixed up"),
            }
        }
        assert!(missing > 0, "the test should include missing values");
    }

    #[tokio::test]
    async fn saved_model_restores_its_feature_reference_and_shifted_inputs_drift() {
        let mut p = TrainParams::new(90 * 86_400);
        p.nam.epochs = 2;
        p.variants = vec!["nam_no_btyd".into()];
        let model = train::fit(&dataset(1_500), &p, &mut |_: &str, _: f64, _: String| {}).unwrap();
        let reference = model.reference.clone().unwrap();
        assert!(reference.names.contains(&"views_30d".to_string()));
        assert!(reference.names.contains(&"recency_days".to_string()));

        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::new(dir.path(), MODEL_NAME);
        model.save(&store).unwrap();
        let loaded = crate::load_latest(&store).unwrap();
        let restored = loaded.reference.clone().unwrap();
        assert_eq!(restored.names, reference.names);
        // JSON may round the last bit of a float.
        let close = |a: &[Vec<f64>], b: &[Vec<f64>]| {
            a.len() == b.len()
                && a.iter().zip(b).all(|(x, y)| {
                    x.len() == y.len() && x.iter().zip(y).all(|(u, v)| (u - v).abs() < 1e-12)
                })
        };
        assert!(close(&restored.edges, &reference.edges), "{restored:?}");
        assert!(close(&restored.shares, &reference.shares), "{restored:?}");

        let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:9").connect_lazy();
        let state = State::new(
            Some(loaded),
            FeatureStore::new(augur_runtime::client::intercepted(channel)),
            store,
        );
        let model = state.model().unwrap();
        let serve = |shift: f64| -> Vec<(String, Option<(Record, Prediction)>)> {
            (0..DRIFT_WINDOW)
                .map(|i| {
                    let r = record(i, shift);
                    let p = model.predict(&r);
                    (format!("c{i}"), Some((r, p)))
                })
                .collect()
        };
        state.observe(&model, &serve(0.0));
        let drift = state.monitor.drift();
        assert_eq!(drift.len(), reference.names.len());
        assert!(drift.iter().all(|(_, v)| *v < 0.1), "{drift:?}");

        state.observe(&model, &serve(100.0));
        let drift = state.monitor.drift();
        for (name, psi) in &drift {
            if name == "views_30d" {
                assert!(*psi > 0.25, "{drift:?}");
            } else {
                assert!(*psi < 0.1, "{drift:?}");
            }
        }
    }

    #[tokio::test]
    async fn a_model_saved_without_a_reference_serves_without_drift() {
        let mut p = TrainParams::new(90 * 86_400);
        p.nam.epochs = 1;
        p.variants = vec!["nam_no_btyd".into()];
        let mut model =
            train::fit(&dataset(300), &p, &mut |_: &str, _: f64, _: String| {}).unwrap();
        model.reference = None;
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::new(dir.path(), MODEL_NAME);
        model.save(&store).unwrap();
        let loaded = crate::load_latest(&store).unwrap();
        assert!(loaded.reference.is_none());
        let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:9").connect_lazy();
        let state = State::new(
            Some(loaded),
            FeatureStore::new(augur_runtime::client::intercepted(channel)),
            store,
        );
        let model = state.model().unwrap();
        let r = record(1, 0.0);
        let p = model.predict(&r);
        state.observe(&model, &[("c1".into(), Some((r, p)))]);
        assert!(state.monitor.drift().is_empty());
    }

    #[tokio::test]
    async fn a_model_another_replica_saved_is_reloaded_with_its_feature_reference() {
        let mut p = TrainParams::new(90 * 86_400);
        p.nam.epochs = 1;
        p.variants = vec!["nam_no_btyd".into()];
        let model = train::fit(&dataset(300), &p, &mut |_: &str, _: f64, _: String| {}).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::new(dir.path(), MODEL_NAME);
        let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:9").connect_lazy();
        // This replica started before any model existed.
        let state = Arc::new(State::new(
            None,
            FeatureStore::new(augur_runtime::client::intercepted(channel)),
            store.clone(),
        ));
        let mut watcher = crate::reload_watcher(state.clone());
        assert_eq!(watcher.poll().await, augur_model::reload::Polled::UpToDate);
        // Another replica saves a model to the shared store.
        model.save(&store).unwrap();
        let version = model.meta.version.clone();
        assert_eq!(
            watcher.poll().await,
            augur_model::reload::Polled::Reloaded(version.clone())
        );
        let served = state.model().unwrap();
        assert_eq!(served.meta.version, version);
        // Served the way Train serves: the drift monitor compares against its reference.
        let r = record(1, 0.0);
        let p = served.predict(&r);
        state.observe(&served, &[("c1".into(), Some((r, p)))]);
        assert_eq!(
            state.monitor.drift().len(),
            model.reference.as_ref().unwrap().names.len()
        );
        assert_eq!(watcher.poll().await, augur_model::reload::Polled::UpToDate);
    }
}
