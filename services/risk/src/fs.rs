//! Reads from the feature store: events (ScanEvents), the customer's online features and
//! point-in-time historical features.

use std::future::Future;
use std::time::Duration;

use augur_proto::common::TimeRange;
use augur_proto::featurestore as fpb;
use augur_proto::featurestore::feature_store_client::FeatureStoreClient;
use augur_proto::featurestore::feature_value::Value;
use augur_runtime::client::ServiceChannel;
use prost_types::Timestamp;

use crate::error::Error;
use crate::orders::CustomerHistory;

/// Customer-view features the risk models read.
pub const CUSTOMER_FEATURES: &[&str] = &[
    "avg_order_value",
    "frequency_lifetime",
    "chargeback_count",
    "tenure_days",
    "country",
];

/// A feature-store client. Each call (a whole scan counting as one) waits at most the call
/// timeout, so a hung feature store answers [`Error::FeatureStoreTimeout`] well before the
/// server's deadline; [`FeatureStore::for_training`] drops it for training's long reads. Every
/// answer (a reply, a scan's opening and each of its messages) must also come within the idle
/// timeout (`training_read_idle_timeout_ms`), so a hung feature store cannot hold a Train.
#[derive(Debug, Clone)]
pub struct FeatureStore {
    client: FeatureStoreClient<ServiceChannel>,
    call_timeout: Option<Duration>,
    idle_timeout: Duration,
}

fn ts(secs: i64) -> Timestamp {
    Timestamp {
        seconds: secs,
        nanos: 0,
    }
}

fn fs_error(e: tonic::Status) -> Error {
    Error::FeatureStore(augur_runtime::error::from_feature_store(&e))
}

fn history(row: &fpb::FeatureRow, names: &[String]) -> CustomerHistory {
    let mut h = CustomerHistory {
        known: row.found,
        ..Default::default()
    };
    for (name, v) in names.iter().zip(&row.values) {
        let num = match &v.value {
            Some(Value::DoubleValue(d)) => Some(*d),
            Some(Value::Int64Value(i)) => Some(*i as f64),
            _ => None,
        };
        match name.as_str() {
            "avg_order_value" => h.avg_order_value = num,
            "frequency_lifetime" => h.orders = num,
            "chargeback_count" => h.chargebacks = num,
            "tenure_days" => h.tenure_days = num,
            "country" => {
                if let Some(Value::StringValue(s)) = &v.value {
                    h.country = Some(s.clone());
                }
            }
            _ => {}
        }
    }
    h
}

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
        call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, Error> {
        augur_runtime::client::answer_within(self.idle_timeout, call)
            .await
            .map(tonic::Response::into_inner)
            .map_err(fs_error)
    }

    /// Runs one feature-store call within the call timeout, if any.
    async fn within<T>(&self, call: impl Future<Output = Result<T, Error>>) -> Result<T, Error> {
        match self.call_timeout {
            Some(limit) => tokio::time::timeout(limit, call)
                .await
                .unwrap_or(Err(Error::FeatureStoreTimeout(limit))),
            None => call.await,
        }
    }

    /// The events a ScanEvents request streams, read to the end as one call.
    async fn events(&self, req: fpb::ScanEventsRequest) -> Result<Vec<fpb::Event>, Error> {
        self.within(async {
            let mut client = self.client.clone();
            let mut stream = self.answer(client.scan_events(req)).await?;
            let mut out = Vec::new();
            while let Some(batch) =
                augur_runtime::client::next_within(&mut stream, self.idle_timeout).await
            {
                let batch = batch.map_err(fs_error)?;
                out.extend(batch.events.into_iter().filter_map(|e| e.event));
            }
            Ok(out)
        })
        .await
    }

    /// Every event of `kinds` in `[start, end)` (seconds; `None` = unbounded), optionally of one
    /// customer.
    pub async fn scan(
        &self,
        kinds: &[fpb::EventKind],
        start: Option<i64>,
        end: Option<i64>,
        customer_id: &str,
    ) -> Result<Vec<fpb::Event>, Error> {
        let range = (start.is_some() || end.is_some()).then(|| TimeRange {
            start: start.map(ts),
            end: end.map(ts),
        });
        let req = fpb::ScanEventsRequest {
            kinds: kinds.iter().map(|k| *k as i32).collect(),
            range,
            customer_id: customer_id.to_string(),
            batch_size: 5000,
            ..Default::default()
        };
        self.events(req).await
    }

    /// Orders placed from one device in `[start, end)` (unix seconds): the feature store
    /// looks them up in its per-device index (`ScanEventsRequest.device_fingerprint`, raw or
    /// as stored), not by scanning every order of the range.
    pub async fn device_orders(
        &self,
        device_fingerprint: &str,
        start: i64,
        end: i64,
    ) -> Result<Vec<fpb::Event>, Error> {
        let req = fpb::ScanEventsRequest {
            kinds: vec![fpb::EventKind::Order as i32],
            range: Some(TimeRange {
                start: Some(ts(start)),
                end: Some(ts(end)),
            }),
            batch_size: 5000,
            device_fingerprint: device_fingerprint.to_string(),
            ..Default::default()
        };
        self.events(req).await
    }

    /// One order's events (placement, then status updates), by id: an indexed lookup in the
    /// feature store (`ScanEventsRequest.order_id`), not a scan of every order.
    pub async fn order_events(&self, order_id: &str) -> Result<Vec<fpb::Event>, Error> {
        let req = fpb::ScanEventsRequest {
            kinds: vec![fpb::EventKind::Order as i32],
            order_id: order_id.to_string(),
            ..Default::default()
        };
        self.events(req).await
    }

    /// The customer's online (current) features.
    pub async fn customer_now(&self, customer_id: &str) -> Result<CustomerHistory, Error> {
        let req = fpb::GetOnlineFeaturesRequest {
            view: "customer".into(),
            entity_ids: vec![customer_id.to_string()],
            features: CUSTOMER_FEATURES.iter().map(|s| s.to_string()).collect(),
        };
        let mut client = self.client.clone();
        let resp = self
            .within(self.answer(client.get_online_features(req)))
            .await?;
        Ok(resp
            .rows
            .first()
            .map(|r| history(r, &resp.feature_names))
            .unwrap_or_default())
    }

    /// Point-in-time customer features as of each `(customer, unix micros)`.
    pub async fn customers_at(
        &self,
        rows: &[(String, i64)],
    ) -> Result<Vec<CustomerHistory>, Error> {
        let mut out = Vec::with_capacity(rows.len());
        for chunk in rows.chunks(2000) {
            let req = fpb::GetHistoricalFeaturesRequest {
                view: "customer".into(),
                rows: chunk
                    .iter()
                    .map(|(id, micros)| fpb::EntityAt {
                        entity_id: id.clone(),
                        as_of: Some(Timestamp {
                            seconds: micros.div_euclid(1_000_000),
                            nanos: (micros.rem_euclid(1_000_000) * 1000) as i32,
                        }),
                    })
                    .collect(),
                features: CUSTOMER_FEATURES.iter().map(|s| s.to_string()).collect(),
            };
            let mut client = self.client.clone();
            let resp = self
                .within(self.answer(client.get_historical_features(req)))
                .await?;
            out.extend(resp.rows.iter().map(|r| history(r, &resp.feature_names)));
        }
        Ok(out)
    }
}
