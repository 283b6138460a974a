//! The gRPC surface: thin handlers that convert protobuf to domain calls and back.

use augur_runtime::error::MAX_ID_BYTES;
use std::pin::Pin;
use std::sync::Arc;

use augur_proto::common;
use augur_proto::featurestore as pb;
use augur_proto::featurestore::feature_store_server::FeatureStore;
use tokio_stream::Stream;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::app::{App, FeatureTable, IngestOutcome, now_micros};
use crate::error::Error;
use crate::features::{CUSTOMER_FEATURES, FeatureType, PRODUCT_FEATURES, Value};
use crate::model::{self, EventKind, InteractionKind, Micros, timestamp};
use crate::series::{Granularity, SeriesQuery};

/// Default and largest batch of a streamed scan.
const SCAN_BATCH: u32 = 1_000;
const MAX_SCAN_BATCH: u32 = 10_000;
const DEFAULT_PAGE: u32 = 1_000;
const MAX_PAGE: u32 = 10_000;

#[derive(Clone)]
pub struct FeatureStoreService {
    app: Arc<App>,
}

impl FeatureStoreService {
    pub fn new(app: Arc<App>) -> Self {
        Self { app }
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

fn to_pb_value(v: Value) -> pb::FeatureValue {
    use pb::feature_value::Value as V;
    pb::FeatureValue {
        value: Some(match v {
            Value::F64(x) => V::DoubleValue(x),
            Value::I64(x) => V::Int64Value(x),
            Value::Str(x) => V::StringValue(x),
            Value::Bool(x) => V::BoolValue(x),
            Value::Missing => V::Missing(pb::Missing::NoData as i32),
        }),
    }
}

fn to_pb_rows(
    table: FeatureTable,
    ids: impl Iterator<Item = (String, Option<Micros>)>,
) -> (Vec<String>, Vec<pb::FeatureRow>) {
    let width = table.names.len();
    let rows = table
        .rows
        .into_iter()
        .zip(ids)
        .map(|(row, (id, as_of))| match row {
            Some(values) => pb::FeatureRow {
                entity_id: id,
                found: true,
                values: values.into_iter().map(to_pb_value).collect(),
                as_of: as_of.map(timestamp),
            },
            None => pb::FeatureRow {
                entity_id: id,
                found: false,
                values: (0..width)
                    .map(|_| pb::FeatureValue {
                        value: Some(pb::feature_value::Value::Missing(
                            pb::Missing::UnknownEntity as i32,
                        )),
                    })
                    .collect(),
                as_of: as_of.map(timestamp),
            },
        })
        .collect();
    (table.names, rows)
}

fn to_pb_outcome(o: IngestOutcome) -> pb::IngestResponse {
    pb::IngestResponse {
        accepted: o.accepted,
        duplicates: o.duplicates,
        rejected: o
            .rejected
            .into_iter()
            .map(|r| pb::Rejection {
                index: r.index,
                event_id: r.event_id,
                field: r.field,
                reason: r.reason,
            })
            .collect(),
        watermark: o.watermark,
    }
}

/// Validates an optional timestamp field.
fn ts_field(field: &str, t: Option<&prost_types::Timestamp>) -> Result<Option<Micros>, Error> {
    match t {
        None => Ok(None),
        Some(t) if !(0..1_000_000_000).contains(&t.nanos) => {
            Err(Error::invalid(field, "nanos out of range"))
        }
        Some(t) if t.seconds < 0 || t.seconds > 253_402_300_799 => Err(Error::invalid(
            field,
            "timestamp out of range (1970 to 9999)",
        )),
        Some(t) => Ok(Some(model::micros_of(t))),
    }
}

fn range(field: &str, r: Option<&common::TimeRange>) -> Result<(Micros, Micros), Error> {
    let (s, e) = match r {
        None => (None, None),
        Some(r) => (
            ts_field(&format!("{field}.start"), r.start.as_ref())?,
            ts_field(&format!("{field}.end"), r.end.as_ref())?,
        ),
    };
    let (s, e) = (s.unwrap_or(0), e.unwrap_or(i64::MAX));
    if e <= s {
        return Err(Error::invalid(
            format!("{field}.end"),
            "must be after start",
        ));
    }
    Ok((s, e))
}

fn batch_size(field: &str, v: u32) -> Result<u64, Error> {
    match v {
        0 => Ok(u64::from(SCAN_BATCH)),
        v if v > MAX_SCAN_BATCH => Err(Error::invalid(
            field,
            format!("must be at most {MAX_SCAN_BATCH}"),
        )),
        v => Ok(u64::from(v)),
    }
}

#[tonic::async_trait]
impl FeatureStore for FeatureStoreService {
    async fn ingest(
        &self,
        req: Request<pb::IngestRequest>,
    ) -> Result<Response<pb::IngestResponse>, Status> {
        let pb::IngestRequest { events } = req.into_inner();
        let out = self.app.ingest(&events, 0, "events").await?;
        Ok(Response::new(to_pb_outcome(out)))
    }

    async fn ingest_stream(
        &self,
        req: Request<Streaming<pb::IngestRequest>>,
    ) -> Result<Response<pb::IngestResponse>, Status> {
        let mut stream = req.into_inner();
        let mut total = IngestOutcome::default();
        let mut offset = 0u64;
        while let Some(msg) = stream.next().await {
            let pb::IngestRequest { events } = msg?;
            let n = events.len() as u64;
            let out = self.app.ingest(&events, offset, "events").await?;
            total.merge(out);
            offset += n;
        }
        Ok(Response::new(to_pb_outcome(total)))
    }

    async fn get_online_features(
        &self,
        req: Request<pb::GetOnlineFeaturesRequest>,
    ) -> Result<Response<pb::GetOnlineFeaturesResponse>, Status> {
        let pb::GetOnlineFeaturesRequest {
            view,
            entity_ids,
            features,
        } = req.into_inner();
        let table = self.app.online_features(&view, &entity_ids, &features)?;
        let now = now_micros();
        let (feature_names, rows) =
            to_pb_rows(table, entity_ids.into_iter().map(|id| (id, Some(now))));
        Ok(Response::new(pb::GetOnlineFeaturesResponse {
            feature_names,
            rows,
        }))
    }

    async fn get_historical_features(
        &self,
        req: Request<pb::GetHistoricalFeaturesRequest>,
    ) -> Result<Response<pb::GetHistoricalFeaturesResponse>, Status> {
        let pb::GetHistoricalFeaturesRequest {
            view,
            rows,
            features,
        } = req.into_inner();
        let mut parsed = Vec::with_capacity(rows.len());
        for (i, r) in rows.into_iter().enumerate() {
            let pb::EntityAt { entity_id, as_of } = r;
            let field = format!("rows[{i}].as_of");
            let t = ts_field(&field, as_of.as_ref())?
                .ok_or_else(|| Error::invalid(field, "missing timestamp"))?;
            parsed.push((entity_id, t));
        }
        let table = self
            .app
            .historical_features(&view, &parsed, &features)
            .await?;
        let (feature_names, rows) =
            to_pb_rows(table, parsed.into_iter().map(|(id, t)| (id, Some(t))));
        Ok(Response::new(pb::GetHistoricalFeaturesResponse {
            feature_names,
            rows,
        }))
    }

    async fn list_feature_views(
        &self,
        _req: Request<pb::ListFeatureViewsRequest>,
    ) -> Result<Response<pb::ListFeatureViewsResponse>, Status> {
        let spec = |d: &crate::features::FeatureDef| pb::FeatureSpec {
            name: d.name.to_string(),
            r#type: match d.ty {
                FeatureType::F64 => pb::FeatureType::Double,
                FeatureType::I64 => pb::FeatureType::Int64,
                FeatureType::Str => pb::FeatureType::String,
                FeatureType::Bool => pb::FeatureType::Bool,
            } as i32,
            description: d.description.to_string(),
        };
        let mut customer: Vec<pb::FeatureSpec> = CUSTOMER_FEATURES.iter().map(spec).collect();
        customer.push(pb::FeatureSpec {
            name: "attr_<key>".into(),
            r#type: pb::FeatureType::String as i32,
            description: "Any attribute of the customer record, e.g. attr_tier; request it by name (not part of the whole-view default).".into(),
        });
        Ok(Response::new(pb::ListFeatureViewsResponse {
            views: vec![
                pb::FeatureView {
                    name: "customer".into(),
                    entity: "customer".into(),
                    description: "Behaviour of a customer: RFM, purchase rhythm, interactions, cart abandonment, reviews, refunds.".into(),
                    features: customer,
                },
                pb::FeatureView {
                    name: "product".into(),
                    entity: "product".into(),
                    description: "Catalogue facts and demand of a product: price, stock, sales, views, conversion, ratings.".into(),
                    features: PRODUCT_FEATURES.iter().map(spec).collect(),
                },
            ],
        }))
    }

    async fn get_series(
        &self,
        req: Request<pb::GetSeriesRequest>,
    ) -> Result<Response<pb::GetSeriesResponse>, Status> {
        let pb::GetSeriesRequest {
            skus,
            granularity,
            start,
            end,
            by_store,
            by_channel,
        } = req.into_inner();
        let granularity = match pb::Granularity::try_from(granularity) {
            Ok(pb::Granularity::Unspecified | pb::Granularity::Day) => Granularity::Day,
            Ok(pb::Granularity::Week) => Granularity::Week,
            Err(_) => {
                return Err(
                    Error::invalid("granularity", format!("unknown value {granularity}")).into(),
                );
            }
        };
        for (i, s) in skus.iter().enumerate() {
            if s.is_empty() || s.len() > MAX_ID_BYTES {
                return Err(Error::invalid(
                    format!("skus[{i}]"),
                    format!("must be 1 to {MAX_ID_BYTES} bytes"),
                )
                .into());
            }
        }
        let q = SeriesQuery {
            skus,
            granularity,
            start: ts_field("start", start.as_ref())?,
            end: ts_field("end", end.as_ref())?,
            by_store,
            by_channel,
        };
        let series = crate::series::build(self.app.store(), self.app.online(), &q).await?;
        let g = match granularity {
            Granularity::Day => pb::Granularity::Day,
            Granularity::Week => pb::Granularity::Week,
        } as i32;
        Ok(Response::new(pb::GetSeriesResponse {
            series: series
                .into_iter()
                .map(|s| pb::Series {
                    sku: s.sku,
                    store_id: s.store_id,
                    channel: s.channel,
                    granularity: g,
                    points: s
                        .points
                        .into_iter()
                        .map(|p| pb::SeriesPoint {
                            period_start: Some(timestamp(p.period_start)),
                            units: p.units,
                            revenue: p.revenue,
                            price: p.price,
                            promotion: p.promotion,
                        })
                        .collect(),
                    stock: s.stock,
                })
                .collect(),
        }))
    }

    type ScanInteractionsStream = BoxStream<pb::ScanInteractionsResponse>;

    async fn scan_interactions(
        &self,
        req: Request<pb::ScanInteractionsRequest>,
    ) -> Result<Response<Self::ScanInteractionsStream>, Status> {
        let pb::ScanInteractionsRequest {
            range: r,
            kinds,
            include_order_lines,
            batch_size: bs,
        } = req.into_inner();
        let (start, end) = range("range", r.as_ref())?;
        let mut wanted = Vec::new();
        for (i, k) in kinds.iter().enumerate() {
            match InteractionKind::from_proto(*k) {
                Some(k) => wanted.push(k),
                None => {
                    return Err(Error::invalid(
                        format!("kinds[{i}]"),
                        format!("unknown interaction kind {k}"),
                    )
                    .into());
                }
            }
        }
        let batch = batch_size("batch_size", bs)?;
        let app = self.app.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            if let Err(e) = crate::reads::interactions(
                &app,
                start,
                end,
                &wanted,
                include_order_lines,
                batch,
                &tx,
            )
            .await
            {
                let _ = tx.send(Err(e.into())).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type ScanEventsStream = BoxStream<pb::ScanEventsResponse>;

    async fn scan_events(
        &self,
        req: Request<pb::ScanEventsRequest>,
    ) -> Result<Response<Self::ScanEventsStream>, Status> {
        let pb::ScanEventsRequest {
            kinds,
            range: r,
            customer_id,
            batch_size: bs,
            order_id,
            device_fingerprint,
        } = req.into_inner();
        let (start, end) = range("range", r.as_ref())?;
        let mut wanted = Vec::new();
        for (i, k) in kinds.iter().enumerate() {
            match pb::EventKind::try_from(*k)
                .ok()
                .and_then(EventKind::from_proto)
            {
                Some(k) => wanted.push(k),
                None => {
                    return Err(Error::invalid(
                        format!("kinds[{i}]"),
                        format!("unknown event kind {k}"),
                    )
                    .into());
                }
            }
        }
        if wanted.is_empty() {
            wanted = vec![
                EventKind::Order,
                EventKind::Interaction,
                EventKind::Review,
                EventKind::Product,
                EventKind::Customer,
            ];
        }
        if customer_id.len() > MAX_ID_BYTES {
            return Err(Error::invalid(
                "customer_id",
                format!("id longer than {MAX_ID_BYTES} bytes"),
            )
            .into());
        }
        if order_id.len() > MAX_ID_BYTES {
            return Err(
                Error::invalid("order_id", format!("id longer than {MAX_ID_BYTES} bytes")).into(),
            );
        }
        if order_id.chars().any(char::is_control) {
            return Err(Error::invalid("order_id", "id contains control characters").into());
        }
        // Any fingerprint ingestion accepts can be looked up (it is hashed, never parsed).
        let max = crate::model::MAX_FINGERPRINT_BYTES;
        if device_fingerprint.len() > max {
            return Err(Error::invalid(
                "device_fingerprint",
                format!("fingerprint longer than {max} bytes"),
            )
            .into());
        }
        let batch = batch_size("batch_size", bs)?;
        let app = self.app.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            let filter = crate::reads::EventFilter {
                kinds: &wanted,
                start,
                end,
                customer: (!customer_id.is_empty()).then_some(customer_id.as_str()),
                order: (!order_id.is_empty()).then_some(order_id.as_str()),
                device: (!device_fingerprint.is_empty()).then_some(device_fingerprint.as_str()),
            };
            if let Err(e) = crate::reads::events(&app, filter, batch, &tx).await {
                let _ = tx.send(Err(e.into())).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn list_entities(
        &self,
        req: Request<pb::ListEntitiesRequest>,
    ) -> Result<Response<pb::ListEntitiesResponse>, Status> {
        let pb::ListEntitiesRequest { entity, page } = req.into_inner();
        let products = match entity.as_str() {
            "customer" => false,
            "product" => true,
            other => {
                return Err(Error::invalid(
                    "entity",
                    format!("unknown entity {other:?}; expected \"customer\" or \"product\""),
                )
                .into());
            }
        };
        let common::PageRequest {
            page_size,
            page_token,
        } = page.unwrap_or_default();
        let size = match page_size {
            0 => DEFAULT_PAGE,
            n if n > MAX_PAGE => {
                return Err(Error::invalid(
                    "page.page_size",
                    format!("must be at most {MAX_PAGE}"),
                )
                .into());
            }
            n => n,
        };
        let (ids, total) = self.app.online().list(products, &page_token, size as usize);
        let next_page_token = if ids.len() == size as usize {
            ids.last().cloned().unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListEntitiesResponse {
            entity_ids: ids,
            next_page_token,
            total: total as u64,
        }))
    }

    async fn get_customer_profile(
        &self,
        req: Request<pb::GetCustomerProfileRequest>,
    ) -> Result<Response<pb::GetCustomerProfileResponse>, Status> {
        let pb::GetCustomerProfileRequest { customer_id } = req.into_inner();
        if customer_id.is_empty() {
            return Err(Error::invalid("customer_id", "missing id").into());
        }
        if customer_id.len() > MAX_ID_BYTES {
            return Err(Error::invalid(
                "customer_id",
                format!("id longer than {MAX_ID_BYTES} bytes"),
            )
            .into());
        }
        let profile = crate::reads::profile(&self.app, &customer_id, now_micros())
            .ok_or_else(|| Error::NotFound(format!("customer {customer_id:?} not found")))?;
        Ok(Response::new(pb::GetCustomerProfileResponse {
            profile: Some(profile),
        }))
    }

    async fn list_segments(
        &self,
        _req: Request<pb::ListSegmentsRequest>,
    ) -> Result<Response<pb::ListSegmentsResponse>, Status> {
        Ok(Response::new(crate::reads::segments(
            &self.app,
            now_micros(),
        )))
    }

    async fn get_customer_segments(
        &self,
        req: Request<pb::GetCustomerSegmentsRequest>,
    ) -> Result<Response<pb::GetCustomerSegmentsResponse>, Status> {
        let pb::GetCustomerSegmentsRequest { customer_ids } = req.into_inner();
        let segments = self.app.customer_segments(&customer_ids)?;
        Ok(Response::new(pb::GetCustomerSegmentsResponse {
            segments: customer_ids
                .into_iter()
                .zip(segments)
                .map(|(customer_id, s)| pb::CustomerSegment {
                    customer_id,
                    found: s.is_some(),
                    segment: s.map_or(pb::Segment::Unspecified, |s| s.to_proto()) as i32,
                })
                .collect(),
        }))
    }

    async fn delete_customer(
        &self,
        req: Request<pb::DeleteCustomerRequest>,
    ) -> Result<Response<pb::DeleteCustomerResponse>, Status> {
        let pb::DeleteCustomerRequest { customer_id } = req.into_inner();
        let n = self.app.erase_customer(&customer_id).await?;
        Ok(Response::new(pb::DeleteCustomerResponse {
            events_erased: n,
        }))
    }
}
