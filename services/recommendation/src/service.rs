//! The tonic handlers: validate, call the domain code, map errors.

use augur_runtime::error::MAX_ID_BYTES;
use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::Arc;

use augur_model::monitor::ModelMonitor;
use augur_model::{ArtifactStore, ModelMeta, ModelSlot, TrainGate, progress};
use augur_proto::featurestore as fs;
use augur_proto::featurestore::InteractionKind;
use augur_proto::featurestore::feature_store_client::FeatureStoreClient;
use augur_proto::recommendation as pb;
use augur_proto::recommendation::recommendation_server::Recommendation;
use augur_runtime::client::ServiceChannel;
use chrono::{TimeZone, Utc};
use tonic::{Request, Response, Status};

use crate::catalog::CatalogCache;
use crate::data::{Dataset, RawInteraction};
use crate::error::Error;
use crate::recommender::Recommender;
use crate::serve::{self, Options, check_k};
use crate::train::{TrainOptions, fit};

type BoxStream<T> = Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Shared state of the service.
#[derive(Debug)]
pub struct App {
    pub slot: ModelSlot<Recommender>,
    pub store: ArtifactStore,
    pub gate: TrainGate,
    pub catalog: Arc<CatalogCache>,
    pub feature_store: FeatureStoreClient<ServiceChannel>,
    /// Longest silence of the feature store during training's interaction scan
    /// (`training_read_idle_timeout_ms`).
    pub training_read_idle_timeout: std::time::Duration,
    /// Inference latency (`model.inference.duration`). The scores are blend / popularity values,
    /// not probabilities, so no score distribution; no input drift either.
    pub monitor: ModelMonitor,
}

impl App {
    /// Loads the newest saved model, if any.
    pub fn new(store: ArtifactStore, feature_store: FeatureStoreClient<ServiceChannel>) -> Self {
        let model = match store.latest() {
            Ok(Some(a)) => match Recommender::from_artifact(&a) {
                Ok(m) => {
                    tracing::info!(version = %m.meta.version, "loaded recommendation model");
                    Some(m)
                }
                Err(e) => {
                    tracing::error!(error = %e, "saved model unreadable; waiting for Train");
                    None
                }
            },
            Ok(None) => None,
            Err(e) => {
                tracing::error!(error = %e, "model store unreadable; waiting for Train");
                None
            }
        };
        App {
            slot: ModelSlot::new(model),
            store,
            gate: TrainGate::default(),
            catalog: Arc::new(CatalogCache::new(feature_store.clone())),
            feature_store,
            training_read_idle_timeout: augur_runtime::config::DEFAULT_TRAINING_READ_IDLE_TIMEOUT,
            monitor: ModelMonitor::global("recommendation", 1),
        }
    }

    /// Fails a Train whose interaction scan hears nothing from the feature store for `limit`
    /// (`training_read_idle_timeout_ms`; the opening and every message of the scan).
    pub fn with_training_read_idle_timeout(mut self, limit: std::time::Duration) -> Self {
        self.training_read_idle_timeout = limit;
        self
    }

    /// Bounds each feature-store call of a catalogue refresh by `limit`
    /// (`feature_store_timeout_ms`); training's interaction scan has the idle timeout instead.
    pub fn with_feature_store_timeout(mut self, limit: std::time::Duration) -> Self {
        self.catalog =
            Arc::new(CatalogCache::new(self.feature_store.clone()).with_call_timeout(limit));
        self
    }
}

/// The gRPC service.
#[derive(Debug, Clone)]
pub struct Service {
    pub app: Arc<App>,
}

/// Default weight of each interaction kind (`weight.<kind>` overrides); 0 drops the kind.
pub fn default_kind_weights() -> HashMap<InteractionKind, f32> {
    use InteractionKind as K;
    HashMap::from([
        (K::Purchase, 1.0),
        (K::AddToCart, 0.6),
        (K::Wishlist, 0.5),
        (K::Rate, 1.0),
        (K::Click, 0.3),
        (K::View, 0.2),
        (K::Unspecified, 0.2),
        (K::Search, 0.0),
        (K::RemoveFromCart, 0.0),
    ])
}

fn kind_name(k: InteractionKind) -> &'static str {
    use InteractionKind as K;
    match k {
        K::Unspecified => "unspecified",
        K::View => "view",
        K::Click => "click",
        K::AddToCart => "add_to_cart",
        K::Purchase => "purchase",
        K::Search => "search",
        K::Wishlist => "wishlist",
        K::Rate => "rate",
        K::RemoveFromCart => "remove_from_cart",
    }
}

/// A validated Train request.
#[derive(Debug)]
pub struct TrainJob {
    pub source: Source,
    pub opts: TrainOptions,
    pub weights: HashMap<InteractionKind, f32>,
}

#[derive(Debug)]
pub enum Source {
    FeatureStore(fs::ScanInteractionsRequest),
    Inline(Vec<fs::Interaction>),
}

fn parse_f32(key: &str, v: &str, min: f32) -> Result<f32, Error> {
    match v.trim().parse::<f32>() {
        Ok(x) if x.is_finite() && x >= min => Ok(x),
        _ => Err(Error::invalid(
            format!("hyperparameters[{key}]"),
            format!("expected a number >= {min}, got {v:?}"),
        )),
    }
}

fn parse_usize(key: &str, v: &str, min: usize) -> Result<usize, Error> {
    match v.trim().parse::<usize>() {
        Ok(x) if x >= min => Ok(x),
        _ => Err(Error::invalid(
            format!("hyperparameters[{key}]"),
            format!("expected an integer >= {min}, got {v:?}"),
        )),
    }
}

impl TryFrom<pb::TrainRequest> for TrainJob {
    type Error = Error;
    fn try_from(r: pb::TrainRequest) -> Result<Self, Error> {
        let pb::TrainRequest {
            source,
            validation_fraction,
            hyperparameters,
        } = r;
        let mut opts = TrainOptions::default();
        if validation_fraction != 0.0 {
            if !(validation_fraction > 0.0 && validation_fraction <= 0.5) {
                return Err(Error::invalid(
                    "validation_fraction",
                    format!("must be in (0, 0.5], got {validation_fraction}"),
                ));
            }
            opts.validation_fraction = validation_fraction;
        }
        let mut weights = default_kind_weights();
        let kinds: Vec<InteractionKind> = weights.keys().copied().collect();
        for (key, v) in &hyperparameters {
            let h = &mut opts.hyper;
            let fb = &mut opts.fixed_blend;
            match key.as_str() {
                "ease.lambda" => opts.lambda_grid = vec![parse_f32(key, v, 1e-3)?],
                "ease.min_count" => h.ease_min_count = parse_usize(key, v, 1)?,
                "knn.neighbours" => h.knn_k = parse_usize(key, v, 1)?,
                "seq.dim" => h.seq.dim = parse_usize(key, v, 2)?,
                "seq.max_len" => h.seq.max_len = parse_usize(key, v, 1)?,
                "seq.steps" => h.seq.steps = parse_usize(key, v, 0)?,
                "seq.batch" => h.seq.batch = parse_usize(key, v, 1)?,
                "seq.lr" => h.seq.lr = parse_f32(key, v, 0.0)? as f64,
                "seq.enabled" => {
                    opts.neural = match v.as_str() {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => {
                            return Err(Error::invalid(
                                format!("hyperparameters[{key}]"),
                                "expected true or false",
                            ));
                        }
                    }
                }
                "seed" => h.seq.seed = parse_usize(key, v, 0)? as u64,
                "blend.tau" => fb.tau = Some(parse_f32(key, v, 0.0)?),
                "blend.ease" => fb.ease = Some(parse_f32(key, v, 0.0)?),
                "blend.knn" => fb.knn = Some(parse_f32(key, v, 0.0)?),
                "blend.trans" => fb.trans = Some(parse_f32(key, v, 0.0)?),
                "blend.seq" => fb.seq = Some(parse_f32(key, v, 0.0)?),
                "blend.pop" => fb.pop = Some(parse_f32(key, v, 0.0)?),
                k if k.starts_with("weight.") => {
                    let name = &k["weight.".len()..];
                    let Some(kind) = kinds.iter().find(|x| kind_name(**x) == name) else {
                        return Err(Error::invalid(
                            format!("hyperparameters[{key}]"),
                            "unknown interaction kind",
                        ));
                    };
                    weights.insert(*kind, parse_f32(key, v, 0.0)?);
                }
                _ => {
                    return Err(Error::invalid(
                        format!("hyperparameters[{key}]"),
                        "unknown hyper-parameter",
                    ));
                }
            }
        }
        if opts.neural && opts.hyper.seq.steps == 0 {
            opts.neural = false;
        }
        let source = match source {
            None => Source::FeatureStore(scan_request(None, Vec::new())),
            Some(pb::train_request::Source::FeatureStore(f)) => {
                Source::FeatureStore(scan_request(f.range, f.kinds))
            }
            Some(pb::train_request::Source::Inline(i)) => {
                let mut v = augur_runtime::error::Violations::new();
                let latest = Utc::now().timestamp() + 86_400;
                for (n, x) in i.interactions.iter().enumerate() {
                    let f = |s: &str| format!("source.inline.interactions[{n}].{s}");
                    for (name, id) in [("customer_id", &x.customer_id), ("sku", &x.sku)] {
                        if id.is_empty() {
                            v.add(f(name), "required");
                        } else if id.len() > MAX_ID_BYTES {
                            v.add(f(name), format!("longer than {MAX_ID_BYTES} bytes"));
                        }
                    }
                    if x.kind == 0 || InteractionKind::try_from(x.kind).is_err() {
                        v.add(f("kind"), "required (a known interaction kind)");
                    }
                    match &x.ts {
                        None => v.add(f("ts"), "required"),
                        Some(t) if !(0..=latest).contains(&t.seconds) => v.add(
                            f("ts"),
                            "out of range (1970 to a day after the server's clock)",
                        ),
                        Some(_) => {}
                    }
                    if !x.value.is_finite() {
                        v.add(f("value"), "must be finite");
                    }
                }
                if i.interactions.is_empty() {
                    v.add("source.inline.interactions", "no interactions");
                }
                if !v.is_empty() {
                    return Err(v.into());
                }
                Source::Inline(i.interactions)
            }
        };
        Ok(TrainJob {
            source,
            opts,
            weights,
        })
    }
}

fn scan_request(
    range: Option<augur_proto::common::TimeRange>,
    kinds: Vec<i32>,
) -> fs::ScanInteractionsRequest {
    fs::ScanInteractionsRequest {
        range,
        kinds,
        include_order_lines: true,
        batch_size: 5000,
    }
}

/// Turns interactions into training rows; returns them and which rows are purchases.
pub fn to_raw(
    xs: &[fs::Interaction],
    weights: &HashMap<InteractionKind, f32>,
) -> (Vec<RawInteraction>, Vec<bool>) {
    let mut raw = Vec::with_capacity(xs.len());
    let mut bought = Vec::with_capacity(xs.len());
    for x in xs {
        let kind = InteractionKind::try_from(x.kind).unwrap_or(InteractionKind::Unspecified);
        let base = weights.get(&kind).copied().unwrap_or(0.0);
        if base <= 0.0 || x.sku.is_empty() || x.customer_id.is_empty() {
            continue;
        }
        let w = match kind {
            InteractionKind::Rate => base,
            _ if x.value > 0.0 => base * x.value as f32,
            _ => base,
        };
        raw.push(RawInteraction {
            user: x.customer_id.clone(),
            item: x.sku.clone(),
            ts: x.ts.as_ref().map(|t| t.seconds).unwrap_or(0),
            weight: w,
        });
        bought.push(kind == InteractionKind::Purchase);
    }
    (raw, bought)
}

/// Which events of each user's (time-sorted) history are purchases.
fn bought_flags(d: &Dataset, raw: &[RawInteraction], bought: &[bool]) -> Vec<Vec<bool>> {
    let mut purchased: std::collections::HashSet<(&str, &str)> = Default::default();
    for (r, &b) in raw.iter().zip(bought) {
        if b {
            purchased.insert((&r.user, &r.item));
        }
    }
    d.seqs
        .iter()
        .zip(&d.users)
        .map(|(s, u)| {
            s.iter()
                .map(|e| purchased.contains(&(u.as_str(), d.items[e.item as usize].as_str())))
                .collect()
        })
        .collect()
}

impl Service {
    async fn load(&self, source: &Source) -> Result<Vec<fs::Interaction>, Error> {
        match source {
            Source::Inline(v) => Ok(v.clone()),
            Source::FeatureStore(req) => {
                let idle = self.app.training_read_idle_timeout;
                let mut client = self.app.feature_store.clone();
                let mut stream = augur_runtime::client::answer_within(
                    idle,
                    client.scan_interactions(req.clone()),
                )
                .await
                .map_err(Error::feature_store)?
                .into_inner();
                let mut out = Vec::new();
                while let Some(batch) = augur_runtime::client::next_within(&mut stream, idle).await
                {
                    out.extend(batch.map_err(Error::feature_store)?.interactions);
                }
                Ok(out)
            }
        }
    }

    /// The whole training job; `report` receives progress.
    async fn run_train(&self, job: TrainJob, p: &progress::Progress) -> Result<ModelMeta, Error> {
        p.stage("loading", 0.0, "reading interactions").await;
        let xs = self.load(&job.source).await?;
        let (raw, bought) = to_raw(&xs, &job.weights);
        if raw.is_empty() {
            return Err(Error::invalid(
                "source",
                "no usable interactions to train on",
            ));
        }
        p.stage(
            "features",
            0.05,
            format!("{} interactions ({} usable)", xs.len(), raw.len()),
        )
        .await;
        let opts = job.opts;
        let fraction = opts.validation_fraction;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, f64, String)>();
        let fit_task = tokio::task::spawn_blocking(move || {
            let data = Dataset::from_raw(&raw);
            let flags = bought_flags(&data, &raw, &bought);
            let mut report = |stage: &str, f: f64, msg: String| {
                let _ = tx.send((stage.to_string(), 0.05 + 0.85 * f, msg));
            };
            let fitted = fit(&data, &opts, &mut report);
            (data, flags, fitted)
        });
        while let Some((stage, f, msg)) = rx.recv().await {
            p.stage(&stage, f, msg).await;
        }
        let (data, flags, fitted) = fit_task
            .await
            .map_err(|e| Error::Internal(format!("training task: {e}")))?;
        let fitted = fitted?;
        let mut meta = ModelMeta::new("ease+transitions+knn+neural-seq");
        if let Some((a, b)) = data.time_range() {
            meta.data_start = Utc.timestamp_opt(a, 0).single();
            meta.data_end = Utc.timestamp_opt(b, 0).single();
        }
        meta.training_examples = data.users.len() as i64;
        let mut metrics: BTreeMap<String, f64> = fitted.validation.blend.to_map();
        for (name, m) in &fitted.validation.components {
            metrics.insert(format!("ndcg@10.{name}"), m.ndcg10);
        }
        meta.validation_metrics = metrics;
        meta.parameters = Recommender::parameters(&fitted.hyper, &fitted.blend);
        meta.parameters
            .insert("validation_fraction".into(), fraction.to_string());
        meta.parameters
            .insert("items".into(), data.n_items().to_string());
        meta.parameters
            .insert("interactions".into(), data.n_interactions().to_string());
        meta.description = fitted.blend.describe();
        let model = Recommender::new(meta.clone(), &data, flags, fitted.blend, fitted.parts);
        p.stage("saving", 0.92, "saving the model").await;
        let store = self.app.store.clone();
        let model = tokio::task::spawn_blocking(move || -> Result<Recommender, Error> {
            let (tensors, ids) = model.to_artifact().map_err(Error::Internal)?;
            store.save(&model.meta, &tensors, &[("ids.json", &ids)])?;
            store.prune(3)?;
            Ok(model)
        })
        .await
        .map_err(|e| Error::Internal(format!("saving task: {e}")))??;
        self.app.slot.swap(model);
        self.app.catalog.refresh().await;
        Ok(meta)
    }
}

#[tonic::async_trait]
impl Recommendation for Service {
    type TrainStream = BoxStream<augur_proto::common::TrainProgress>;

    async fn recommend(
        &self,
        req: Request<pb::RecommendRequest>,
    ) -> Result<Response<pb::RecommendResponse>, Status> {
        let pb::RecommendRequest {
            customer_id,
            k,
            options,
        } = req.into_inner();
        let k = check_k(k)?;
        if customer_id.len() > MAX_ID_BYTES {
            return Err(
                Error::invalid("customer_id", format!("longer than {MAX_ID_BYTES} bytes")).into(),
            );
        }
        let opts = Options::try_from(options)?;
        let model = self.app.slot.get().ok_or(Error::NoModel)?;
        let (cat, degraded) = self.app.catalog.snapshot().await;
        let (items, strategy) = self.app.monitor.infer(&model.meta.version, 1, || {
            serve::recommend(&model, &cat, &customer_id, k, &opts)
        });
        Ok(Response::new(pb::RecommendResponse {
            items,
            strategy: strategy as i32,
            model_version: model.meta.version.clone(),
            degraded,
        }))
    }

    async fn similar_items(
        &self,
        req: Request<pb::SimilarItemsRequest>,
    ) -> Result<Response<pb::SimilarItemsResponse>, Status> {
        let pb::SimilarItemsRequest { sku, k } = req.into_inner();
        let k = check_k(k)?;
        if sku.trim().is_empty() {
            return Err(Error::invalid("sku", "required").into());
        }
        if sku.len() > MAX_ID_BYTES {
            return Err(Error::invalid("sku", format!("longer than {MAX_ID_BYTES} bytes")).into());
        }
        let model = self.app.slot.get().ok_or(Error::NoModel)?;
        let (cat, _) = self.app.catalog.snapshot().await;
        let (items, strategy) = self.app.monitor.infer(&model.meta.version, 1, || {
            serve::similar(&model, &cat, &sku, k)
        })?;
        Ok(Response::new(pb::SimilarItemsResponse {
            items,
            strategy: strategy as i32,
            model_version: model.meta.version.clone(),
        }))
    }

    async fn train(
        &self,
        req: Request<pb::TrainRequest>,
    ) -> Result<Response<Self::TrainStream>, Status> {
        let job = TrainJob::try_from(req.into_inner())?;
        let permit = self.app.gate.try_start().ok_or(Error::Busy)?;
        let (p, stream) = progress::channel();
        let me = self.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match me.run_train(job, &p).await {
                Ok(meta) => p.done(meta.to_proto()).await,
                Err(e) => p.fail(e.into()).await,
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_model_info(
        &self,
        _req: Request<pb::GetModelInfoRequest>,
    ) -> Result<Response<pb::GetModelInfoResponse>, Status> {
        let model = self.app.slot.get().ok_or(Error::NoModel)?;
        Ok(Response::new(pb::GetModelInfoResponse {
            model: Some(model.meta.to_proto()),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inline(f: impl Fn(&mut fs::Interaction)) -> Result<TrainJob, Error> {
        let mut x = fs::Interaction {
            customer_id: "C1".into(),
            sku: "P1".into(),
            kind: InteractionKind::Purchase as i32,
            ts: Some(prost_types::Timestamp {
                seconds: 1_704_067_200,
                nanos: 0,
            }),
            ..Default::default()
        };
        f(&mut x);
        TrainJob::try_from(pb::TrainRequest {
            source: Some(pb::train_request::Source::Inline(pb::InlineInteractions {
                interactions: vec![x],
            })),
            ..Default::default()
        })
    }

    fn field(r: Result<TrainJob, Error>) -> String {
        match r {
            Err(Error::InvalidArgument(v)) => v[0].field.clone(),
            other => panic!("expected invalid argument, got {other:?}"),
        }
    }

    #[test]
    fn inline_training_rejects_out_of_range_times_and_huge_ids() {
        assert!(inline(|_| {}).is_ok());
        let f = "source.inline.interactions[0].";
        for t in [-1, 253_382_832_000, i64::MIN, i64::MAX] {
            let r = inline(|x| x.ts.as_mut().unwrap().seconds = t);
            assert_eq!(field(r), format!("{f}ts"), "{t}");
        }
        let long = "x".repeat(129);
        assert_eq!(
            field(inline(|x| x.customer_id = long.clone())),
            format!("{f}customer_id")
        );
        assert_eq!(field(inline(|x| x.sku = long.clone())), format!("{f}sku"));
    }
}
