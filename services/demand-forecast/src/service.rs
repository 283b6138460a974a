//! The gRPC surface: request validation, series resolution (inline or from the feature store),
//! and thin handlers over the model.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use augur_model::monitor::ModelMonitor;
use augur_model::{ArtifactStore, ModelMeta, ModelSlot, ReloadWatcher, TrainGate};
use augur_proto::featurestore as fs;
use augur_proto::featurestore::feature_store_client::FeatureStoreClient;
use augur_proto::forecast as pb;
use augur_proto::forecast::demand_forecast_server::DemandForecast;
use augur_runtime::client::ServiceChannel;
use candle_core::{Device, Tensor};
use chrono::{DateTime, Months, TimeZone, Utc};
use tonic::{Request, Response, Status};

use crate::error::{Error, from_feature_store};
use crate::metrics::{Pooled, mase, msis, naive_scale, smape};
use crate::model::{self, Model, SeriesIn, TrainOptions};

/// Largest horizon a model may be trained for (and so the largest Forecast horizon).
pub const MAX_HORIZON: usize = 366;
/// Horizon of a Train request that leaves it at 0.
pub const DEFAULT_TRAIN_HORIZON: usize = 28;
/// Most series in one Forecast / Backtest / ReorderAdvice request.
pub const MAX_SERIES: usize = 10_000;
/// Static numeric descriptors one inline series may carry (each can become a feature of the
/// global trees).
pub const MAX_STATIC_FEATURES: usize = 64;
pub const MODEL_NAME: &str = "demand-forecast";
const MODEL_FILE: &str = "model.json";

type BoxStream<T> = Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send + 'static>>;

/// A model being served with its metadata.
#[derive(Debug)]
pub struct Served {
    pub model: Model,
    pub meta: ModelMeta,
}

/// The DemandForecast service.
#[derive(Clone)]
pub struct Service {
    inner: Arc<Inner>,
    /// Bound of a request-path feature-store call (`feature_store_timeout_ms`).
    feature_store_timeout: Duration,
    /// Longest wait for any feature-store answer, training's series read included
    /// (`training_read_idle_timeout_ms`).
    training_read_idle_timeout: Duration,
}

struct Inner {
    slot: ModelSlot<Served>,
    store: ArtifactStore,
    gate: TrainGate,
    feature_store: Option<FeatureStoreClient<ServiceChannel>>,
    feature_store_error: String,
    /// Inference latency of Forecast and ReorderAdvice (forecasts are quantities: no score
    /// distribution, no drift statistics).
    monitor: ModelMonitor,
}

/// Loads the newest saved model, if any.
pub fn load_latest(store: &ArtifactStore) -> Result<Option<Served>, Error> {
    let versions = store
        .versions()
        .map_err(|e| Error::Internal(e.to_string()))?;
    versions.last().map(|v| load_version(store, v)).transpose()
}

/// Loads one saved version.
pub fn load_version(store: &ArtifactStore, version: &str) -> Result<Served, Error> {
    let artifact = store
        .load(version)
        .map_err(|e| Error::Internal(e.to_string()))?;
    let bytes = artifact
        .extra(MODEL_FILE)
        .map_err(|e| Error::Internal(e.to_string()))?;
    let mut model: Model =
        serde_json::from_slice(&bytes).map_err(|e| Error::Internal(e.to_string()))?;
    if let Some((input, hidden, horizon)) = model.gru_shape {
        let g = crate::gru::GlobalGru::load(&artifact.tensors, input, hidden, horizon)
            .map_err(|e| Error::Internal(format!("GRU weights: {e}")))?;
        model.gru = Some(Arc::new(g));
    }
    Ok(Served {
        model,
        meta: artifact.meta,
    })
}

fn save(
    store: &ArtifactStore,
    model: &Model,
    gru: HashMap<String, Tensor>,
    meta: &ModelMeta,
) -> Result<(), Error> {
    let internal = |e: candle_core::Error| Error::Internal(e.to_string());
    let mut tensors = gru;
    let flat: Vec<f64> = model.err_q.iter().flatten().copied().collect();
    tensors.insert(
        "interval_error_quantiles".to_string(),
        Tensor::from_vec(flat, (model.err_q.len(), model::GRID), &Device::Cpu).map_err(internal)?,
    );
    if let Some(cov) = &model.cov {
        tensors.insert(
            "covariate_coefficients".to_string(),
            Tensor::from_vec(cov.coef.clone(), cov.coef.len(), &Device::Cpu).map_err(internal)?,
        );
    }
    let json = serde_json::to_vec(model).map_err(|e| Error::Internal(e.to_string()))?;
    store
        .save(meta, &tensors, &[(MODEL_FILE, &json)])
        .map_err(|e| Error::Internal(e.to_string()))?;
    if let Err(e) = store.prune(5) {
        tracing::warn!(error = %e, "could not prune old models");
    }
    Ok(())
}

impl Service {
    /// The service over `data_dir`, reading series from the feature store at `feature_store`.
    pub fn new(data_dir: &Path, feature_store: Result<ServiceChannel, String>) -> Self {
        let store = ArtifactStore::new(data_dir, MODEL_NAME);
        let loaded = match load_latest(&store) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(error = %e, "could not load the saved model; serving none");
                None
            }
        };
        if let Some(s) = &loaded {
            tracing::info!(version = %s.meta.version, "demand-forecast model loaded");
        }
        let (feature_store, feature_store_error) = match feature_store {
            Ok(c) => (
                Some(FeatureStoreClient::new(c).max_decoding_message_size(512 << 20)),
                String::new(),
            ),
            Err(e) => (None, e),
        };
        Service {
            inner: Arc::new(Inner {
                slot: ModelSlot::new(loaded),
                store,
                gate: TrainGate::default(),
                feature_store,
                feature_store_error,
                monitor: ModelMonitor::global(MODEL_NAME, 1),
            }),
            feature_store_timeout: augur_runtime::config::DEFAULT_FEATURE_STORE_TIMEOUT,
            training_read_idle_timeout: augur_runtime::config::DEFAULT_TRAINING_READ_IDLE_TIMEOUT,
        }
    }

    /// The same service, failing a training read of series when the feature store sends
    /// nothing for `limit` (`training_read_idle_timeout_ms`).
    pub fn with_training_read_idle_timeout(mut self, limit: Duration) -> Self {
        self.training_read_idle_timeout = limit;
        self
    }

    /// The same service, each request-path feature-store call bounded by `limit`.
    pub fn with_feature_store_timeout(mut self, limit: Duration) -> Self {
        self.feature_store_timeout = limit;
        self
    }

    fn served(&self) -> Result<Arc<Served>, Error> {
        self.inner.slot.get().ok_or(Error::NoModel)
    }

    /// Loads versions of the shared model store newer than the served one (trained by another
    /// replica) and swaps them in, as `Train` does.
    pub fn reload_watcher(&self) -> ReloadWatcher<Served> {
        let (served, swap) = (self.inner.clone(), self.inner.clone());
        ReloadWatcher::new(
            self.inner.store.clone(),
            move || served.slot.get().map(|s| s.meta.version.clone()),
            load_version,
            move |model| {
                swap.slot.swap(model);
            },
        )
    }

    fn fs_client(&self) -> Result<FeatureStoreClient<ServiceChannel>, Error> {
        self.inner
            .feature_store
            .clone()
            .ok_or_else(|| Error::Unavailable(self.inner.feature_store_error.clone()))
    }

    /// Series from the feature store; with a `limit`, a feature store that does not answer
    /// within it gives [`Error::FeatureStoreTimeout`]. Without one (training) the answer is
    /// still due within the idle timeout (`training_read_idle_timeout_ms`).
    async fn get_series(
        &self,
        req: fs::GetSeriesRequest,
        limit: Option<Duration>,
    ) -> Result<Vec<fs::Series>, Error> {
        let mut client = self.fs_client()?;
        let call = augur_runtime::client::answer_within(
            self.training_read_idle_timeout,
            client.get_series(req),
        );
        let r = match limit {
            Some(limit) => tokio::time::timeout(limit, call)
                .await
                .map_err(|_| Error::FeatureStoreTimeout(limit))?,
            None => call.await,
        };
        Ok(r.map_err(from_feature_store)?.into_inner().series)
    }
}

/// A series ready for the model, with what the response needs.
struct Resolved {
    id: String,
    key: Option<pb::SeriesKey>,
    input: SeriesIn,
    /// Start of each period, when known.
    timestamps: Vec<DateTime<Utc>>,
    step: Step,
    future: BTreeMap<String, Vec<f64>>,
    stock: Option<i64>,
}

/// The calendar step between periods.
#[derive(Debug, Clone, Copy)]
enum Step {
    None,
    Days(i64),
    Months(u32),
}

fn ts_of(t: &prost_types::Timestamp) -> Option<DateTime<Utc>> {
    Utc.timestamp_opt(t.seconds, t.nanos.clamp(0, 999_999_999) as u32)
        .single()
}

fn to_ts(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

impl Step {
    fn add(self, t: DateTime<Utc>, k: usize) -> Option<DateTime<Utc>> {
        match self {
            Step::None => None,
            Step::Days(d) => Some(t + chrono::Duration::days(d * k as i64)),
            Step::Months(m) => t.checked_add_months(Months::new(m * k as u32)),
        }
    }
}

fn granularity(g: i32, field: &str) -> Result<(fs::Granularity, usize, Step), Error> {
    match fs::Granularity::try_from(g) {
        Ok(fs::Granularity::Unspecified | fs::Granularity::Day) => {
            Ok((fs::Granularity::Day, 7, Step::Days(1)))
        }
        Ok(fs::Granularity::Week) => Ok((fs::Granularity::Week, 52, Step::Days(7))),
        Err(_) => Err(Error::invalid(field, format!("unknown granularity {g}"))),
    }
}

/// Validates an inline series.
fn resolve_inline(
    field: &str,
    s: pb::InlineSeries,
) -> Result<(SeriesIn, Vec<DateTime<Utc>>, Step), Error> {
    let pb::InlineSeries {
        values,
        frequency,
        timestamps,
        season_length,
        covariates,
        attributes,
        static_features,
    } = s;
    if values.is_empty() {
        return Err(Error::invalid(
            format!("{field}.values"),
            "must not be empty",
        ));
    }
    if !values.iter().any(|v| v.is_finite()) {
        return Err(Error::invalid(
            format!("{field}.values"),
            "needs at least one finite value",
        ));
    }
    let (default_season, step) = match pb::Frequency::try_from(frequency) {
        Ok(pb::Frequency::Unspecified) => (1, Step::None),
        Ok(pb::Frequency::Day) => (7, Step::Days(1)),
        Ok(pb::Frequency::Week) => (52, Step::Days(7)),
        Ok(pb::Frequency::Month) => (12, Step::Months(1)),
        Ok(pb::Frequency::Quarter) => (4, Step::Months(3)),
        Ok(pb::Frequency::Year) => (1, Step::Months(12)),
        Err(_) => {
            return Err(Error::invalid(
                format!("{field}.frequency"),
                format!("unknown frequency {frequency}"),
            ));
        }
    };
    let mut ts = Vec::with_capacity(timestamps.len());
    if !timestamps.is_empty() {
        if matches!(step, Step::None) {
            return Err(Error::invalid(
                format!("{field}.timestamps"),
                "must be empty when frequency is unspecified",
            ));
        }
        if timestamps.len() != values.len() {
            return Err(Error::invalid(
                format!("{field}.timestamps"),
                format!(
                    "has {} entries for {} values",
                    timestamps.len(),
                    values.len()
                ),
            ));
        }
        for (i, t) in timestamps.iter().enumerate() {
            let t = ts_of(t).ok_or_else(|| {
                Error::invalid(format!("{field}.timestamps[{i}]"), "not a valid time")
            })?;
            if let Some(prev) = ts.last()
                && step.add(*prev, 1) != Some(t)
            {
                return Err(Error::invalid(
                    format!("{field}.timestamps[{i}]"),
                    "must be exactly one period after the previous timestamp",
                ));
            }
            ts.push(t);
        }
    }
    let season = match season_length {
        0 => default_season,
        s => s as usize,
    };
    let mut covs = BTreeMap::new();
    for (name, c) in covariates {
        if c.values.len() != values.len() {
            return Err(Error::invalid(
                format!("{field}.covariates[{name}]"),
                format!(
                    "has {} values for {} observations",
                    c.values.len(),
                    values.len()
                ),
            ));
        }
        covs.insert(name, c.values);
    }
    if static_features.len() > MAX_STATIC_FEATURES {
        return Err(Error::invalid(
            format!("{field}.static_features"),
            format!(
                "has {} entries, at most {MAX_STATIC_FEATURES}",
                static_features.len()
            ),
        ));
    }
    for (name, v) in &static_features {
        if name.is_empty() || name.len() > augur_runtime::error::MAX_ID_BYTES {
            return Err(Error::invalid(
                format!("{field}.static_features"),
                format!(
                    "names must be 1 to {} bytes",
                    augur_runtime::error::MAX_ID_BYTES
                ),
            ));
        }
        if !v.is_finite() {
            return Err(Error::invalid(
                format!("{field}.static_features[{name}]"),
                format!("must be finite, got {v}"),
            ));
        }
    }
    Ok((
        SeriesIn {
            values,
            season,
            covariates: covs,
            attributes: attributes.into_iter().collect(),
            statics: static_features.into_iter().collect(),
        },
        ts,
        step,
    ))
}

/// A feature-store series as model input.
fn from_fs_series(s: &fs::Series, season: usize) -> (SeriesIn, Vec<DateTime<Utc>>) {
    let values = s.points.iter().map(|p| p.units).collect();
    let price = s
        .points
        .iter()
        .map(|p| p.price.unwrap_or(f64::NAN))
        .collect();
    let promo = s
        .points
        .iter()
        .map(|p| if p.promotion { 1.0 } else { 0.0 })
        .collect();
    let ts = s
        .points
        .iter()
        .filter_map(|p| p.period_start.as_ref().and_then(ts_of))
        .collect();
    (
        SeriesIn {
            values,
            season,
            covariates: BTreeMap::from([
                ("price".to_string(), price),
                ("promotion".to_string(), promo),
            ]),
            attributes: BTreeMap::new(),
            statics: BTreeMap::new(),
        },
        ts,
    )
}

impl Service {
    /// Resolves the request series: inline ones are checked, SKUs are read from the feature
    /// store. `horizon` is the number of future covariate values required (0 = none allowed).
    async fn resolve(
        &self,
        series: Vec<pb::SeriesInput>,
        horizon: usize,
        forbid_future: bool,
        gran: i32,
    ) -> Result<Vec<Resolved>, Error> {
        if series.is_empty() {
            return Err(Error::invalid("series", "at least one series is required"));
        }
        if series.len() > MAX_SERIES {
            return Err(Error::invalid(
                "series",
                format!("at most {MAX_SERIES} series per request"),
            ));
        }
        let (g, fs_season, fs_step) = granularity(gran, "granularity")?;
        let mut out = Vec::with_capacity(series.len());
        for (i, s) in series.into_iter().enumerate() {
            let field = format!("series[{i}]");
            let pb::SeriesInput {
                id,
                source,
                future_covariates,
            } = s;
            if forbid_future && !future_covariates.is_empty() {
                return Err(Error::invalid(
                    format!("{field}.future_covariates"),
                    "must be empty in a backtest (recorded covariates are used)",
                ));
            }
            let mut r = match source {
                None => {
                    return Err(Error::invalid(
                        format!("{field}.source"),
                        "set feature_store or inline",
                    ));
                }
                Some(pb::series_input::Source::Inline(s)) => {
                    let (input, timestamps, step) = resolve_inline(&format!("{field}.inline"), s)?;
                    Resolved {
                        id,
                        key: None,
                        input,
                        timestamps,
                        step,
                        future: BTreeMap::new(),
                        stock: None,
                    }
                }
                Some(pb::series_input::Source::FeatureStore(key)) => {
                    let (input, timestamps, stock) = self
                        .fs_series(&format!("{field}.feature_store"), &key, g, fs_season)
                        .await?;
                    Resolved {
                        id,
                        key: Some(key),
                        input,
                        timestamps,
                        step: fs_step,
                        future: BTreeMap::new(),
                        stock,
                    }
                }
            };
            for (name, c) in future_covariates {
                let f = format!("{field}.future_covariates[{name}]");
                if !r.input.covariates.contains_key(&name) {
                    return Err(Error::invalid(
                        f,
                        "unknown covariate: the history does not carry it",
                    ));
                }
                if c.values.len() < horizon {
                    return Err(Error::invalid(
                        f,
                        format!(
                            "has {} values, shorter than the horizon {horizon}",
                            c.values.len()
                        ),
                    ));
                }
                r.future.insert(name, c.values);
            }
            out.push(r);
        }
        Ok(out)
    }

    async fn fs_series(
        &self,
        field: &str,
        key: &pb::SeriesKey,
        g: fs::Granularity,
        season: usize,
    ) -> Result<(SeriesIn, Vec<DateTime<Utc>>, Option<i64>), Error> {
        if key.sku.is_empty() {
            return Err(Error::invalid(format!("{field}.sku"), "required"));
        }
        if key.sku.len() > augur_runtime::error::MAX_ID_BYTES {
            return Err(Error::invalid(
                format!("{field}.sku"),
                format!("longer than {} bytes", augur_runtime::error::MAX_ID_BYTES),
            ));
        }
        let all = self
            .get_series(
                fs::GetSeriesRequest {
                    skus: vec![key.sku.clone()],
                    granularity: g as i32,
                    by_store: !key.store_id.is_empty(),
                    by_channel: !key.channel.is_empty(),
                    ..Default::default()
                },
                Some(self.feature_store_timeout),
            )
            .await?;
        let found = all.iter().find(|s| {
            s.sku == key.sku
                && (key.store_id.is_empty() || s.store_id == key.store_id)
                && (key.channel.is_empty() || s.channel == key.channel)
        });
        let Some(s) = found.filter(|s| s.points.iter().any(|p| p.units != 0.0)) else {
            return Err(Error::NotFound(format!(
                "{field}: no sales of SKU {:?} (store {:?}, channel {:?}) in the feature store",
                key.sku, key.store_id, key.channel
            )));
        };
        let (input, ts) = from_fs_series(s, season);
        Ok((input, ts, s.stock))
    }
}

fn check_horizon(field: &str, horizon: u32, served: &Served) -> Result<usize, Error> {
    let h = horizon as usize;
    if h == 0 {
        return Err(Error::invalid(field, "must be at least 1"));
    }
    let max = served.model.horizon.min(MAX_HORIZON);
    if h > max {
        return Err(Error::invalid(
            field,
            format!("{h} is above the maximum {max} the model was trained for"),
        ));
    }
    Ok(h)
}

fn check_levels(quantiles: &[f64]) -> Result<Vec<f64>, Error> {
    if quantiles.is_empty() {
        return Ok(vec![0.1, 0.5, 0.9]);
    }
    for (i, q) in quantiles.iter().enumerate() {
        if !(q.is_finite() && *q > 0.0 && *q < 1.0) {
            return Err(Error::invalid(
                format!("quantiles[{i}]"),
                "must be in (0, 1)",
            ));
        }
    }
    let mut q = quantiles.to_vec();
    q.sort_by(f64::total_cmp);
    q.dedup();
    Ok(q)
}

fn forecast_one(model: &Model, r: &Resolved, h: usize, levels: &[f64]) -> pb::SeriesForecast {
    let out = model.forecast(&r.input, &r.future, h, levels);
    let last = r.timestamps.last().copied();
    pb::SeriesForecast {
        id: r.id.clone(),
        key: r.key.clone(),
        points: (0..h)
            .map(|i| pb::ForecastPoint {
                step: i as u32 + 1,
                period_start: last.and_then(|t| r.step.add(t, i + 1)).map(to_ts),
                point: out.point[i],
                quantiles: levels
                    .iter()
                    .zip(&out.quantiles)
                    .map(|(q, row)| pb::QuantileValue {
                        quantile: *q,
                        value: row[i],
                    })
                    .collect(),
            })
            .collect(),
        method: out.method,
    }
}

fn metrics_pb(smape: f64, mase: f64, msis: f64, pooled: &Pooled) -> pb::BacktestMetrics {
    pb::BacktestMetrics {
        smape,
        mase,
        msis,
        wape: pooled.wape(),
        coverage: pooled.coverage(),
        points: pooled.points,
    }
}

/// Rolling-origin backtest of one series.
/// Settings of a backtest, after defaults.
#[derive(Debug, Clone, Copy)]
struct BacktestPlan {
    h: usize,
    windows: usize,
    step: usize,
    interval: f64,
    mase_m: usize,
}

fn backtest_one(
    model: &Model,
    r: &Resolved,
    field: &str,
    plan: BacktestPlan,
) -> Result<(pb::SeriesBacktest, Pooled), Error> {
    let BacktestPlan {
        h,
        windows,
        step,
        interval,
        mase_m,
    } = plan;
    let n = r.input.values.len();
    let span = h + step * (windows - 1);
    if n < span + 3 {
        return Err(Error::invalid(
            field,
            format!(
                "{n} periods are too few for {windows} windows of {h} (need {})",
                span + 3
            ),
        ));
    }
    let levels = [(1.0 - interval) / 2.0, (1.0 + interval) / 2.0];
    let values = model::fill(&r.input.values);
    let m = if mase_m == 0 {
        r.input.season.max(1)
    } else {
        mase_m
    };
    let mut out = Vec::with_capacity(windows);
    let (mut s_sum, mut m_sum, mut i_sum) = (0.0, 0.0, 0.0);
    let mut pooled = Pooled::default();
    for w in 0..windows {
        let origin = n - h - step * (windows - 1 - w);
        let prefix = SeriesIn {
            values: r.input.values[..origin].to_vec(),
            season: r.input.season,
            covariates: r
                .input
                .covariates
                .iter()
                .map(|(k, v)| (k.clone(), v[..origin].to_vec()))
                .collect(),
            attributes: r.input.attributes.clone(),
            statics: r.input.statics.clone(),
        };
        let future = r
            .input
            .covariates
            .iter()
            .map(|(k, v)| (k.clone(), v[origin..origin + h].to_vec()))
            .collect();
        let f = model.forecast(&prefix, &future, h, &levels);
        let actual = &values[origin..origin + h];
        let mut p = Pooled::default();
        p.add(actual, &f.point, &f.quantiles[0], &f.quantiles[1]);
        let s = smape(actual, &f.point);
        let scale = naive_scale(&values[..origin], m);
        let ms = mase(actual, &f.point, scale);
        let is = msis(
            actual,
            &f.quantiles[0],
            &f.quantiles[1],
            1.0 - interval,
            scale,
        );
        s_sum += s;
        m_sum += ms;
        i_sum += is;
        pooled.merge(&p);
        out.push(pb::BacktestWindow {
            origin_index: origin as u32,
            origin: r.timestamps.get(origin).copied().map(to_ts),
            metrics: Some(metrics_pb(s, ms, is, &p)),
        });
    }
    let k = windows as f64;
    Ok((
        pb::SeriesBacktest {
            id: r.id.clone(),
            key: r.key.clone(),
            windows: out,
            metrics: Some(metrics_pb(s_sum / k, m_sum / k, i_sum / k, &pooled)),
        },
        pooled,
    ))
}

/// Reorder advice from the per-period forecast: the lead-time demand is the sum of the point
/// forecasts; the per-period spread between the service-level quantile and the median is turned
/// into a standard deviation, summed over the lead time as independent errors.
fn advice(model: &Model, r: &Resolved, lead: usize, service_level: f64) -> pb::ReorderAdviceItem {
    let out = model.forecast(&r.input, &r.future, lead, &[0.5, service_level]);
    let demand: f64 = out.point.iter().sum();
    let z = crate::stats::normal_quantile(service_level);
    let var: f64 = (0..lead)
        .map(|i| {
            let spread = (out.quantiles[1][i] - out.quantiles[0][i]).max(0.0);
            if z > 0.0 { (spread / z).powi(2) } else { 0.0 }
        })
        .sum();
    let safety = (z * var.sqrt()).max(0.0);
    let safety = if safety.is_finite() { safety } else { 0.0 };
    let reorder_point = demand + safety;
    let (reorder_now, order_quantity) = match r.stock {
        Some(s) => (
            (s as f64) <= reorder_point,
            (reorder_point - s as f64).max(0.0),
        ),
        None => (false, 0.0),
    };
    pb::ReorderAdviceItem {
        key: r.key.clone(),
        lead_time_demand: demand,
        safety_stock: safety,
        reorder_point,
        stock: r.stock,
        reorder_now,
        order_quantity,
    }
}

/// Training data and settings, validated.
struct TrainJob {
    source: TrainSource,
    opts: TrainOptions,
}

enum TrainSource {
    Inline(Vec<SeriesIn>, Vec<DateTime<Utc>>),
    FeatureStore(fs::GetSeriesRequest, usize),
}

/// Most validation windows a Train request may ask for.
const MAX_VALIDATION_WINDOWS: usize = 52;

fn parse_train(req: pb::TrainRequest) -> Result<TrainJob, Error> {
    let pb::TrainRequest {
        source,
        horizon,
        validation_windows,
        hyperparameters,
    } = req;
    let horizon = match horizon as usize {
        0 => DEFAULT_TRAIN_HORIZON,
        h if h > MAX_HORIZON => {
            return Err(Error::invalid("horizon", format!("at most {MAX_HORIZON}")));
        }
        h => h,
    };
    let mut opts = TrainOptions {
        horizon,
        windows: match validation_windows as usize {
            0 => TrainOptions::default().windows,
            w if w > MAX_VALIDATION_WINDOWS => {
                return Err(Error::invalid(
                    "validation_windows",
                    format!("at most {MAX_VALIDATION_WINDOWS}"),
                ));
            }
            w => w,
        },
        ..Default::default()
    };
    for (k, v) in &hyperparameters {
        let field = format!("hyperparameters[{k}]");
        let bad = || Error::invalid(field.clone(), format!("cannot parse {v:?}"));
        let weight = || {
            v.parse::<f64>()
                .ok()
                .filter(|w| (0.0..=1.0).contains(w))
                .ok_or_else(|| {
                    Error::invalid(field.clone(), format!("{v:?} is not a number in [0, 1]"))
                })
        };
        match k.as_str() {
            "ridge" => {
                opts.ridge = v
                    .parse::<f64>()
                    .ok()
                    .filter(|r| r.is_finite() && *r >= 0.0)
                    .ok_or_else(bad)?
            }
            "window" => opts.window = v.parse::<usize>().map_err(|_| bad())?,
            "max_members" => opts.max_members = v.parse::<u32>().map_err(|_| bad())?,
            "mase_weight" => opts.mase_weight = weight()?,
            "grid" => opts.grid = v.parse::<bool>().map_err(|_| bad())?,
            "lags" => opts.lags = v.parse::<bool>().map_err(|_| bad())?,
            "gru" => opts.gru = v.parse::<bool>().map_err(|_| bad())?,
            "gru.epochs" => opts.gru_epochs = v.parse::<usize>().map_err(|_| bad())?,
            "gbm" => opts.gbm = v.parse::<bool>().map_err(|_| bad())?,
            "gbm.statics" => opts.gbm_statics = v.parse::<bool>().map_err(|_| bad())?,
            "gbm.trees" => {
                opts.gbm_trees = v
                    .parse::<usize>()
                    .ok()
                    .filter(|t| (1..=5000).contains(t))
                    .ok_or_else(|| {
                        Error::invalid(field.clone(), format!("{v:?} is not a count in 1..=5000"))
                    })?
            }
            "gbm.rows" => {
                opts.gbm_rows = v
                    .parse::<usize>()
                    .ok()
                    .filter(|r| (1_000..=5_000_000).contains(r))
                    .ok_or_else(|| {
                        Error::invalid(
                            field.clone(),
                            format!("{v:?} is not a count in 1000..=5000000"),
                        )
                    })?
            }
            "interval.log" => opts.interval_log = v.parse::<bool>().map_err(|_| bad())?,
            "interval.own" => opts.interval_own = v.parse::<bool>().map_err(|_| bad())?,
            "blend.direct" => opts.direct_blend = v.parse::<bool>().map_err(|_| bad())?,
            "blend.quiet" => opts.direct_quiet = weight()?,
            "arima" => opts.arima = v.parse::<bool>().map_err(|_| bad())?,
            _ => {
                return Err(Error::invalid(
                    field,
                    "unknown hyper-parameter (known: ridge, window, max_members, mase_weight, grid, lags, gru, gru.epochs, gbm, gbm.statics, gbm.trees, gbm.rows, interval.log, interval.own, blend.direct, blend.quiet, arima)",
                ));
            }
        }
    }
    let source = match source {
        Some(pb::train_request::Source::Inline(set)) => {
            if set.series.is_empty() {
                return Err(Error::invalid("inline.series", "at least one series"));
            }
            let freq = set.series[0].frequency;
            let mut out = Vec::with_capacity(set.series.len());
            let mut first_ts = Vec::new();
            for (i, s) in set.series.into_iter().enumerate() {
                let field = format!("inline.series[{i}]");
                if s.frequency != freq {
                    return Err(Error::invalid(
                        format!("{field}.frequency"),
                        "differs from the first series",
                    ));
                }
                let (input, ts, _) = resolve_inline(&field, s)?;
                first_ts.extend(ts.first().copied());
                first_ts.extend(ts.last().copied());
                out.push(input);
            }
            TrainSource::Inline(out, first_ts)
        }
        Some(pb::train_request::Source::FeatureStore(f)) => {
            let pb::FeatureStoreSeries {
                skus,
                granularity: g,
                range,
                by_store,
                by_channel,
            } = f;
            let (g, season, _) = granularity(g, "feature_store.granularity")?;
            let (start, end) = range.map(|r| (r.start, r.end)).unwrap_or_default();
            TrainSource::FeatureStore(
                fs::GetSeriesRequest {
                    skus,
                    granularity: g as i32,
                    start,
                    end,
                    by_store,
                    by_channel,
                },
                season,
            )
        }
        None => TrainSource::FeatureStore(
            fs::GetSeriesRequest {
                granularity: fs::Granularity::Day as i32,
                ..Default::default()
            },
            7,
        ),
    };
    Ok(TrainJob { source, opts })
}

impl Service {
    async fn run_training(
        &self,
        job: TrainJob,
        progress: &augur_model::progress::Progress,
    ) -> Result<ModelMeta, Error> {
        let (series, stamps, source_desc) = match job.source {
            TrainSource::Inline(s, ts) => (s, ts, "inline".to_string()),
            TrainSource::FeatureStore(req, season) => {
                progress
                    .stage("fetch", 0.05, "reading series from the feature store")
                    .await;
                let g = req.granularity;
                // Training reads every series: not bound by the request-path timeout.
                let raw = self.get_series(req, None).await?;
                let mut stamps = Vec::new();
                let series: Vec<SeriesIn> = raw
                    .iter()
                    .filter(|s| s.points.iter().any(|p| p.units != 0.0))
                    .map(|s| {
                        let (input, ts) = from_fs_series(s, season);
                        stamps.extend(ts.first().copied());
                        stamps.extend(ts.last().copied());
                        input
                    })
                    .collect();
                let gname = if g == fs::Granularity::Week as i32 {
                    "week"
                } else {
                    "day"
                };
                (series, stamps, format!("feature_store by {gname}"))
            }
        };
        if series.is_empty() {
            return Err(Error::invalid("source", "no series with sales to train on"));
        }
        progress
            .stage(
                "fit",
                0.2,
                format!(
                    "choosing the combination on validation windows over {} series",
                    series.len()
                ),
            )
            .await;
        let opts = job.opts.clone();
        let n_series = series.len();
        let trained = tokio::task::spawn_blocking(move || model::train(&series, &opts))
            .await
            .map_err(|e| Error::Internal(e.to_string()))?;
        progress
            .metrics(
                "validate",
                0.9,
                "validation metrics",
                trained.validation.clone(),
            )
            .await;
        let mut meta = ModelMeta::new(MODEL_NAME);
        meta.data_start = stamps.iter().min().copied();
        meta.data_end = stamps.iter().max().copied();
        meta.training_examples = trained.examples as i64;
        meta.validation_metrics = trained.validation.clone();
        let m = &trained.model;
        meta.parameters = BTreeMap::from([
            ("horizon".to_string(), m.horizon.to_string()),
            ("max_horizon".to_string(), m.horizon.to_string()),
            ("combination".to_string(), crate::stats::combo_name(m.combo)),
            (
                "seasons".to_string(),
                m.seasons
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            (
                "combination_by_season".to_string(),
                m.season_combos
                    .iter()
                    .map(|(season, c)| format!("{season}: {}", crate::stats::combo_name(*c)))
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            (
                "fallback_combination".to_string(),
                format!(
                    "{} (series of another season length)",
                    crate::stats::combo_name(crate::model::FALLBACK_COMBO)
                ),
            ),
            ("log_scale".to_string(), m.log.to_string()),
            (
                "intervals".to_string(),
                if !m.own_q.is_empty() {
                    "validation errors over each series' own smoothing spread"
                } else if m.interval_log {
                    "validation log ratios ln(1 + actual) - ln(1 + forecast)"
                } else {
                    "validation errors over each series' naive MAE"
                }
                .to_string(),
            ),
            (
                "direct_blend".to_string(),
                if m.direct_blend {
                    format!(
                        "the point blends the combination with the direct per-step trees, \
                         which weigh {} in promotion periods and {} in the others",
                        model::DIRECT_PROMO,
                        m.direct_quiet
                    )
                } else {
                    "off".to_string()
                },
            ),
            ("global_gru".to_string(), format!("{:?}", m.gru_shape)),
            (
                "global_gbm".to_string(),
                m.gbm.as_ref().map_or_else(
                    || "none".to_string(),
                    |g| {
                        format!(
                            "{} trees over {} covariates",
                            g.trees.trees.len(),
                            g.covariates.len()
                        )
                    },
                ),
            ),
            (
                "covariates".to_string(),
                m.cov
                    .as_ref()
                    .map(|c| c.names.join(","))
                    .unwrap_or_default(),
            ),
            ("series".to_string(), n_series.to_string()),
            ("source".to_string(), source_desc),
            (
                "validation_windows".to_string(),
                job.opts.windows.to_string(),
            ),
            ("ridge".to_string(), trained.ridge.to_string()),
            ("window".to_string(), trained.window.to_string()),
            ("lagged_covariates".to_string(), trained.lags.to_string()),
        ]);
        meta.description =
            "Equal-weight combination of statistical models and a global GRU (chosen on validation windows), \
             a global covariate model on log units, empirical interval quantiles per step"
                .to_string();
        let store = self.inner.store.clone();
        let (model, meta2) = (trained.model, meta.clone());
        let gru = trained.gru_tensors;
        let model =
            tokio::task::spawn_blocking(move || save(&store, &model, gru, &meta2).map(|_| model))
                .await
                .map_err(|e| Error::Internal(e.to_string()))??;
        self.inner.slot.swap(Served {
            model,
            meta: meta.clone(),
        });
        Ok(meta)
    }
}

#[tonic::async_trait]
impl DemandForecast for Service {
    type TrainStream = BoxStream<augur_proto::common::TrainProgress>;

    async fn forecast(
        &self,
        req: Request<pb::ForecastRequest>,
    ) -> Result<Response<pb::ForecastResponse>, Status> {
        let pb::ForecastRequest {
            series,
            horizon,
            quantiles,
            granularity,
        } = req.into_inner();
        let served = self.served()?;
        let h = check_horizon("horizon", horizon, &served)?;
        let levels = check_levels(&quantiles)?;
        let resolved = self.resolve(series, h, false, granularity).await?;
        let n_series = resolved.len();
        let model = served.clone();
        let monitor = self.inner.monitor.clone();
        let span = monitor.span(&served.meta.version, n_series);
        let run = move || {
            monitor.timed(&span, || {
                resolved
                    .iter()
                    .map(|r| forecast_one(&model.model, r, h, &levels))
                    .collect::<Vec<_>>()
            })
        };
        // One or two series are answered on the request task (a few hundred microseconds); larger
        // batches on the blocking pool.
        let forecasts = if n_series <= 2 {
            run()
        } else {
            tokio::task::spawn_blocking(run)
                .await
                .map_err(|e| Status::internal(e.to_string()))?
        };
        Ok(Response::new(pb::ForecastResponse {
            forecasts,
            model_version: served.meta.version.clone(),
        }))
    }

    async fn backtest(
        &self,
        req: Request<pb::BacktestRequest>,
    ) -> Result<Response<pb::BacktestResponse>, Status> {
        let pb::BacktestRequest {
            series,
            horizon,
            windows,
            step,
            interval,
            mase_season_length,
            granularity,
        } = req.into_inner();
        let served = self.served()?;
        let h = check_horizon("horizon", horizon, &served)?;
        let windows = (windows as usize).max(1);
        let step = if step == 0 { h } else { step as usize };
        let interval = if interval == 0.0 { 0.8 } else { interval };
        if !(interval > 0.0 && interval < 1.0) {
            return Err(Error::invalid("interval", "must be in (0, 1)").into());
        }
        let resolved = self.resolve(series, 0, true, granularity).await?;
        let plan = BacktestPlan {
            h,
            windows,
            step,
            interval,
            mase_m: mase_season_length as usize,
        };
        let model = served.clone();
        let results = tokio::task::spawn_blocking(move || {
            resolved
                .iter()
                .enumerate()
                .map(|(i, r)| backtest_one(&model.model, r, &format!("series[{i}]"), plan))
                .collect::<Result<Vec<_>, Error>>()
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))??;
        let k = results.len().max(1) as f64;
        let mut pooled = Pooled::default();
        let (mut s, mut m, mut i) = (0.0, 0.0, 0.0);
        for (r, p) in &results {
            if let Some(x) = &r.metrics {
                s += x.smape;
                m += x.mase;
                i += x.msis;
            }
            pooled.merge(p);
        }
        let overall = metrics_pb(s / k, m / k, i / k, &pooled);
        let results: Vec<pb::SeriesBacktest> = results.into_iter().map(|(r, _)| r).collect();
        Ok(Response::new(pb::BacktestResponse {
            series: results,
            overall: Some(overall),
            interval,
            model_version: served.meta.version.clone(),
        }))
    }

    async fn reorder_advice(
        &self,
        req: Request<pb::ReorderAdviceRequest>,
    ) -> Result<Response<pb::ReorderAdviceResponse>, Status> {
        let pb::ReorderAdviceRequest {
            items,
            lead_time,
            service_level,
            granularity,
        } = req.into_inner();
        let served = self.served()?;
        let lead = check_horizon("lead_time", lead_time, &served)?;
        let service_level = if service_level == 0.0 {
            0.95
        } else {
            service_level
        };
        if !(service_level > 0.0 && service_level < 1.0) {
            return Err(Error::invalid("service_level", "must be in (0, 1)").into());
        }
        if items.is_empty() {
            return Err(Error::invalid("items", "at least one item is required").into());
        }
        let series = items
            .into_iter()
            .map(|k| pb::SeriesInput {
                source: Some(pb::series_input::Source::FeatureStore(k)),
                ..Default::default()
            })
            .collect();
        let resolved = self
            .resolve(series, 0, false, granularity)
            .await
            .map_err(|e| match e {
                Error::InvalidArgument(v) => Error::InvalidArgument(
                    v.into_iter()
                        .map(|f| {
                            augur_runtime::FieldViolation::new(
                                f.field
                                    .replacen("series[", "items[", 1)
                                    .replace(".feature_store", ""),
                                f.description,
                            )
                        })
                        .collect(),
                ),
                e => e,
            })?;
        let items = self
            .inner
            .monitor
            .infer(&served.meta.version, resolved.len(), || {
                resolved
                    .iter()
                    .map(|r| advice(&served.model, r, lead, service_level))
                    .collect()
            });
        Ok(Response::new(pb::ReorderAdviceResponse {
            items,
            service_level,
            model_version: served.meta.version.clone(),
        }))
    }

    async fn train(
        &self,
        req: Request<pb::TrainRequest>,
    ) -> Result<Response<Self::TrainStream>, Status> {
        let job = parse_train(req.into_inner())?;
        let permit = self.inner.gate.try_start().ok_or(Error::Busy)?;
        let (progress, stream) = augur_model::progress::channel();
        let this = self.clone();
        tokio::spawn(async move {
            let _permit = permit;
            progress.stage("start", 0.0, "training started").await;
            match this.run_training(job, &progress).await {
                Ok(meta) => progress.done(meta.to_proto()).await,
                Err(e) => progress.fail(e.into()).await,
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_model_info(
        &self,
        _req: Request<pb::GetModelInfoRequest>,
    ) -> Result<Response<pb::GetModelInfoResponse>, Status> {
        let served = self.served()?;
        Ok(Response::new(pb::GetModelInfoResponse {
            model: Some(served.meta.to_proto()),
        }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn windows_of(validation_windows: u32) -> Result<usize, Error> {
        let req = pb::TrainRequest {
            validation_windows,
            ..Default::default()
        };
        parse_train(req).map(|job| job.opts.windows)
    }

    #[test]
    fn validation_windows_default_to_two_and_too_many_name_the_field() {
        assert_eq!(TrainOptions::default().windows, 2);
        assert_eq!(windows_of(0).ok(), Some(2));
        assert_eq!(windows_of(1).ok(), Some(1));
        assert_eq!(windows_of(52).ok(), Some(52));
        let Err(e) = windows_of(53) else {
            panic!("53 validation windows were accepted");
        };
        let status = tonic::Status::from(e);
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(
            status.message().contains("validation_windows"),
            "{}",
            status.message()
        );
    }

    #[test]
    fn inline_static_features_reach_the_model_input() {
        let s = pb::InlineSeries {
            values: vec![3.0, 4.0, 5.0],
            static_features: [("income".to_string(), 10.5)].into(),
            ..Default::default()
        };
        let (input, _, _) = resolve_inline("series[0].inline", s).unwrap();
        assert_eq!(input.statics.get("income"), Some(&10.5));
    }
}
