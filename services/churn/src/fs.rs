//! Reads from the feature store: customer ids, online and point-in-time historical customer
//! features, customer attribute keys and RFM segments.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use augur_proto::common::{PageRequest, TimeRange};
use augur_proto::featurestore as fpb;
use augur_proto::featurestore::feature_store_client::FeatureStoreClient;
use augur_proto::featurestore::feature_value::Value;
use augur_runtime::client::ServiceChannel;
use prost_types::Timestamp;

use crate::error::{Error, Result};

/// One feature value.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Num(f64),
    Str(String),
    Missing,
}

/// Feature rows of one response, values in the order of `names`.
#[derive(Debug, Clone, Default)]
pub struct Rows {
    pub names: Vec<String>,
    /// `None` for an entity unknown (at that time).
    pub rows: Vec<Option<Vec<Cell>>>,
}

impl Rows {
    /// Position of a feature in `names`.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }
}

pub fn ts(secs: i64) -> Timestamp {
    Timestamp {
        seconds: secs,
        nanos: 0,
    }
}

fn fs_error(e: tonic::Status) -> Error {
    Error::FeatureStore(augur_runtime::error::from_feature_store(&e))
}

fn cell(v: fpb::FeatureValue) -> Cell {
    match v.value {
        Some(Value::DoubleValue(d)) if d.is_finite() => Cell::Num(d),
        Some(Value::Int64Value(i)) => Cell::Num(i as f64),
        Some(Value::BoolValue(b)) => Cell::Num(f64::from(u8::from(b))),
        Some(Value::StringValue(s)) => Cell::Str(s),
        _ => Cell::Missing,
    }
}

fn convert(resp: fpb::GetHistoricalFeaturesResponse, out: &mut Rows) {
    if out.names.is_empty() {
        out.names = resp.feature_names;
    }
    out.rows.extend(resp.rows.into_iter().map(|r| {
        r.found
            .then(|| r.values.into_iter().map(cell).collect::<Vec<_>>())
    }));
}

/// A feature-store client. Each call waits at most the call timeout (request path: a hung
/// feature store answers [`Error::FeatureStoreTimeout`] well before the server's deadline);
/// [`FeatureStore::for_training`] drops it for training's long reads. Every answer (a reply,
/// a scan's opening and each of its messages) must also come within the idle timeout
/// (`training_read_idle_timeout_ms`), so a hung feature store cannot hold a Train.
#[derive(Debug, Clone)]
pub struct FeatureStore {
    client: FeatureStoreClient<ServiceChannel>,
    call_timeout: Option<Duration>,
    idle_timeout: Duration,
}

const HISTORICAL_BATCH: usize = 4_000;

impl FeatureStore {
    pub fn new(channel: ServiceChannel) -> Self {
        FeatureStore {
            client: FeatureStoreClient::new(channel)
                .max_decoding_message_size(256 << 20)
                .max_encoding_message_size(64 << 20),
            call_timeout: Some(augur_runtime::config::DEFAULT_FEATURE_STORE_TIMEOUT),
            idle_timeout: augur_runtime::config::DEFAULT_TRAINING_READ_IDLE_TIMEOUT,
        }
    }

    /// The same client, each answer due within `limit` (`training_read_idle_timeout_ms`).
    pub fn with_idle_timeout(mut self, limit: Duration) -> Self {
        self.idle_timeout = limit;
        self
    }

    /// The same client, each call bounded by `limit` (`feature_store_timeout_ms`).
    pub fn with_call_timeout(mut self, limit: Duration) -> Self {
        self.call_timeout = Some(limit);
        self
    }

    /// The same client without the per-call bound, for training reads (long scans); the idle
    /// timeout still applies to every answer.
    pub fn for_training(&self) -> Self {
        FeatureStore {
            client: self.client.clone(),
            call_timeout: None,
            idle_timeout: self.idle_timeout,
        }
    }

    /// One reply within the idle timeout, feature-store errors mapped.
    async fn answer<T>(
        &self,
        call: impl Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T> {
        augur_runtime::client::answer_within(self.idle_timeout, call)
            .await
            .map(tonic::Response::into_inner)
            .map_err(fs_error)
    }

    /// Runs one feature-store call within the call timeout, if any.
    async fn within<T>(&self, call: impl Future<Output = Result<T>>) -> Result<T> {
        match self.call_timeout {
            Some(limit) => tokio::time::timeout(limit, call)
                .await
                .unwrap_or(Err(Error::FeatureStoreTimeout(limit))),
            None => call.await,
        }
    }

    /// Every known customer id.
    pub async fn customers(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let mut client = self.client.clone();
            let call = client.list_entities(fpb::ListEntitiesRequest {
                entity: "customer".into(),
                page: Some(PageRequest {
                    page_size: 10_000,
                    page_token: token,
                }),
            });
            let r = self.within(self.answer(call)).await?;
            out.extend(r.entity_ids);
            if r.next_page_token.is_empty() {
                return Ok(out);
            }
            token = r.next_page_token;
        }
    }

    /// Customer features: current (`as_of = None`) or as of a moment (seconds), only events at
    /// or before it counting.
    pub async fn features(
        &self,
        ids: &[String],
        as_of: Option<i64>,
        names: &[String],
    ) -> Result<Rows> {
        let mut out = Rows::default();
        match as_of {
            None => {
                for chunk in ids.chunks(HISTORICAL_BATCH) {
                    let mut client = self.client.clone();
                    let call = client.get_online_features(fpb::GetOnlineFeaturesRequest {
                        view: "customer".into(),
                        entity_ids: chunk.to_vec(),
                        features: names.to_vec(),
                    });
                    let r = self.within(self.answer(call)).await?;
                    convert(
                        fpb::GetHistoricalFeaturesResponse {
                            feature_names: r.feature_names,
                            rows: r.rows,
                        },
                        &mut out,
                    );
                }
            }
            Some(t) => {
                for chunk in ids.chunks(HISTORICAL_BATCH) {
                    let mut client = self.client.clone();
                    let call = client.get_historical_features(fpb::GetHistoricalFeaturesRequest {
                        view: "customer".into(),
                        rows: chunk
                            .iter()
                            .map(|id| fpb::EntityAt {
                                entity_id: id.clone(),
                                as_of: Some(ts(t)),
                            })
                            .collect(),
                        features: names.to_vec(),
                    });
                    let r = self.within(self.answer(call)).await?;
                    convert(r, &mut out);
                }
            }
        }
        if out.names.is_empty() {
            out.names = names.to_vec();
        }
        Ok(out)
    }

    /// Keys of the customer attributes recorded at or before `until` (seconds). A training read:
    /// call it on a [`FeatureStore::for_training`] client.
    pub async fn attribute_keys(&self, until: i64) -> Result<BTreeSet<String>> {
        // A whole scan counts as one call.
        self.within(async {
            let mut client = self.client.clone();
            let mut stream = self
                .answer(client.scan_events(fpb::ScanEventsRequest {
                    kinds: vec![fpb::EventKind::Customer as i32],
                    range: Some(TimeRange {
                        start: None,
                        // Half-open range: everything at or before `until`.
                        end: Some(ts(until + 1)),
                    }),
                    batch_size: 5_000,
                    ..Default::default()
                }))
                .await?;
            let mut keys = BTreeSet::new();
            while let Some(batch) =
                augur_runtime::client::next_within(&mut stream, self.idle_timeout).await
            {
                for e in batch.map_err(fs_error)?.events {
                    if let Some(fpb::event::Payload::Customer(c)) = e.event.and_then(|e| e.payload)
                    {
                        keys.extend(c.attributes.into_keys());
                    }
                }
            }
            Ok(keys)
        })
        .await
    }

    /// The RFM segment the feature store assigns to each customer now, in order (UNSPECIFIED
    /// for a customer it no longer knows), a few thousand per call.
    pub async fn segments(&self, ids: &[String]) -> Result<Vec<fpb::Segment>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(HISTORICAL_BATCH) {
            let mut client = self.client.clone();
            let call = client.get_customer_segments(fpb::GetCustomerSegmentsRequest {
                customer_ids: chunk.to_vec(),
            });
            let r = self.within(self.answer(call)).await?;
            if r.segments.len() != chunk.len() {
                return Err(Error::Internal(format!(
                    "the feature store answered {} segments for {} customers",
                    r.segments.len(),
                    chunk.len()
                )));
            }
            out.extend(r.segments.iter().map(|s| s.segment()));
        }
        Ok(out)
    }
}
