//! The thin tonic layer: validate, convert, call the domain, map errors.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;

use augur_model::ModelMeta;
use augur_proto::common::TrainProgress;
use augur_proto::featurestore::feature_value::Value;
use augur_proto::risk as pb;
use augur_proto::risk::risk_server::Risk;
use augur_runtime::ApiError;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status};

use crate::app::{App, LabelledReview, TrainOptions, review_text, utc};
use crate::error::Error;
use crate::orders::OrderScore;
use crate::reviews::ReviewDoc;
use crate::tabular::Cell;

type BoxStream<T> = Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The gRPC service.
#[derive(Debug, Clone)]
pub struct Service {
    pub app: Arc<App>,
}

fn order_response(order_id: String, s: OrderScore, version: String) -> pb::ScoreOrderResponse {
    pb::ScoreOrderResponse {
        order_id,
        score: s.score,
        decision: s.decision.to_proto(),
        factors: s.factors,
        rules: s.rules,
        anomaly_score: s.anomaly_score,
        model_version: version,
    }
}

async fn score_one(app: &App, req: pb::ScoreOrderRequest) -> Result<pb::ScoreOrderResponse, Error> {
    let pb::ScoreOrderRequest { target } = req;
    let (order, id) = match target {
        Some(pb::score_order_request::Target::Order(o)) => (Some(o), None),
        Some(pb::score_order_request::Target::OrderId(id)) => (None, Some(id)),
        None => (None, None),
    };
    let (o, s, v) = app.score_order(order, id).await?;
    Ok(order_response(o.order_id, s, v))
}

/// Columns, rows and labels of a table.
pub type TableParts = (Vec<String>, Vec<Vec<Cell>>, Vec<Option<bool>>);

/// A labelled table from the request, validated.
pub fn table_from_proto(t: pb::LabelledTable) -> Result<TableParts, Error> {
    let pb::LabelledTable { columns, rows } = t;
    if columns.is_empty() {
        return Err(Error::invalid(
            "table.columns",
            "at least one column is required",
        ));
    }
    let mut seen = HashSet::new();
    for (i, c) in columns.iter().enumerate() {
        if c.trim().is_empty() {
            return Err(Error::invalid(
                format!("table.columns[{i}]"),
                "empty column name",
            ));
        }
        if !seen.insert(c.as_str()) {
            return Err(Error::invalid(
                format!("table.columns[{i}]"),
                format!("duplicate column {c:?}"),
            ));
        }
    }
    if rows.is_empty() {
        return Err(Error::invalid("table.rows", "at least one row is required"));
    }
    // 0 unknown, 1 number, 2 string
    let mut kinds = vec![0u8; columns.len()];
    let mut out = Vec::with_capacity(rows.len());
    let mut labels = Vec::with_capacity(rows.len());
    for (r, row) in rows.into_iter().enumerate() {
        if row.values.len() != columns.len() {
            return Err(Error::invalid(
                format!("table.rows[{r}].values"),
                format!("{} values for {} columns", row.values.len(), columns.len()),
            ));
        }
        let mut cells = Vec::with_capacity(columns.len());
        for (c, v) in row.values.into_iter().enumerate() {
            let (cell, kind) = match v.value {
                Some(Value::DoubleValue(d)) if d.is_finite() => (Cell::Num(d), 1),
                Some(Value::DoubleValue(_)) => {
                    return Err(Error::invalid(
                        format!("table.rows[{r}].values[{c}]"),
                        "not a finite number",
                    ));
                }
                Some(Value::Int64Value(i)) => (Cell::Num(i as f64), 1),
                Some(Value::BoolValue(b)) => (Cell::Num(if b { 1.0 } else { 0.0 }), 1),
                Some(Value::StringValue(s)) => (Cell::Cat(s), 2),
                Some(Value::Missing(_)) | None => (Cell::Missing, 0),
            };
            if kind != 0 {
                if kinds[c] != 0 && kinds[c] != kind {
                    return Err(Error::invalid(
                        format!("table.rows[{r}].values[{c}]"),
                        format!("column {:?} mixes numbers and strings", columns[c]),
                    ));
                }
                kinds[c] = kind;
            }
            cells.push(cell);
        }
        out.push(cells);
        labels.push(row.label);
    }
    Ok((columns, out, labels))
}

fn reviews_from_proto(r: pb::LabelledReviews) -> Result<Vec<LabelledReview>, Error> {
    let mut out = Vec::with_capacity(r.reviews.len());
    for (i, x) in r.reviews.into_iter().enumerate() {
        if x.text.trim().is_empty() && x.title.trim().is_empty() {
            return Err(Error::invalid(
                format!("reviews.reviews[{i}].text"),
                "required",
            ));
        }
        if !(1..=5).contains(&x.rating) {
            return Err(Error::invalid(
                format!("reviews.reviews[{i}].rating"),
                "must be 1..5",
            ));
        }
        let label = match augur_proto::featurestore::ReviewLabel::try_from(x.label) {
            Ok(augur_proto::featurestore::ReviewLabel::Spam) => Some(true),
            Ok(augur_proto::featurestore::ReviewLabel::Genuine) => Some(false),
            _ => None,
        };
        out.push(LabelledReview {
            doc: ReviewDoc {
                review_id: if x.review_id.is_empty() {
                    format!("req-{i}")
                } else {
                    x.review_id.clone()
                },
                customer_id: x.customer_id.clone(),
                sku: x.sku.clone(),
                rating: x.rating,
                ts: x.ts.map_or(0, |t| t.seconds),
                text: review_text(&x.title, &x.text),
            },
            label,
            account_age_hours: None,
        });
    }
    Ok(out)
}

enum Job {
    OrdersFromStore((Option<i64>, Option<i64>)),
    Table(Vec<String>, Vec<Vec<Cell>>, Vec<Option<bool>>),
    ReviewsFromStore((Option<i64>, Option<i64>)),
    Reviews(Vec<LabelledReview>),
}

async fn run_job(
    app: &App,
    job: Job,
    o: &TrainOptions,
    evaluate_only: bool,
    progress: &augur_model::progress::Progress,
) -> Result<ModelMeta, Error> {
    match job {
        Job::OrdersFromStore(range) => {
            progress
                .stage(
                    "fetch",
                    0.05,
                    "reading orders and point-in-time customer features",
                )
                .await;
            let (rows, labels, span) = app.order_table(range).await?;
            progress
                .stage("fit", 0.3, format!("fitting on {} orders", rows.len()))
                .await;
            let columns = crate::app::default_order_columns();
            let o2 = o.clone();
            let fit = tokio::task::spawn_blocking(move || {
                crate::app::fit_table(&columns, &rows, &labels, &o2)
            })
            .await
            .map_err(|e| Error::Internal(e.to_string()))??;
            let mut meta = ModelMeta::new(crate::app::ORDER_MODEL);
            meta.training_examples = fit.examples as i64;
            meta.validation_metrics = fit.metrics;
            meta.validation_metrics
                .insert("positives".into(), fit.positives as f64);
            if let Some((a, b)) = span {
                meta.data_start = utc(a);
                meta.data_end = utc(b);
            }
            meta.description = "order fraud: calibrated supervised scorer on charge-backs (when labelled) with an isolation-forest anomaly model; rules for country mismatch, value vs usual, device velocity, new account + high value".into();
            progress.stage("save", 0.95, "saving").await;
            app.publish_order(fit.model, meta, evaluate_only)
        }
        Job::Table(columns, rows, labels) => {
            progress
                .stage(
                    "fit",
                    0.1,
                    format!("fitting on {} rows x {} columns", rows.len(), columns.len()),
                )
                .await;
            let o2 = o.clone();
            let fit = tokio::task::spawn_blocking(move || {
                crate::app::fit_table(&columns, &rows, &labels, &o2)
            })
            .await
            .map_err(|e| Error::Internal(e.to_string()))??;
            let mut meta = ModelMeta::new(crate::app::ORDER_MODEL);
            meta.training_examples = fit.examples as i64;
            meta.validation_metrics = fit.metrics;
            meta.validation_metrics
                .insert("positives".into(), fit.positives as f64);
            meta.description =
                "tabular risk model trained on a labelled table from the request".into();
            app.publish_order(fit.model, meta, evaluate_only)
        }
        Job::ReviewsFromStore(_) | Job::Reviews(_) => {
            let (docs, span) = match job {
                Job::ReviewsFromStore(range) => {
                    progress.stage("fetch", 0.05, "reading reviews").await;
                    let d = app.review_docs(range).await?;
                    let span = d
                        .iter()
                        .map(|r| r.doc.ts)
                        .min()
                        .zip(d.iter().map(|r| r.doc.ts).max());
                    (d, span)
                }
                Job::Reviews(d) => (d, None),
                _ => (Vec::new(), None),
            };
            if docs.len() < 10 {
                return Err(Error::NotEnoughData(format!(
                    "{} reviews (at least 10 are needed)",
                    docs.len()
                )));
            }
            let embedder = app.embedder()?;
            progress
                .stage(
                    "embed",
                    0.2,
                    format!("embedding {} reviews with all-MiniLM-L6-v2", docs.len()),
                )
                .await;
            let o2 = o.clone();
            let n = docs.len();
            let (model, metrics, positives) = tokio::task::spawn_blocking(move || {
                let texts: Vec<&str> = docs.iter().map(|d| d.doc.text.as_str()).collect();
                let emb = embedder.embed(&texts)?;
                crate::app::fit_reviews(&docs, emb, &o2)
            })
            .await
            .map_err(|e| Error::Internal(e.to_string()))??;
            let mut meta = ModelMeta::new(crate::app::REVIEW_MODEL);
            meta.training_examples = n as i64;
            meta.validation_metrics = metrics;
            meta.validation_metrics
                .insert("positives".into(), positives as f64);
            if let Some((a, b)) = span {
                meta.data_start = utc(a);
                meta.data_end = utc(b);
            }
            meta.description = "review spam: calibrated classifier over MiniLM near-duplicate similarity, bursts, rating vs sentiment, links, reviewer behaviour; unlabelled reviews count as genuine".into();
            progress.stage("save", 0.95, "saving").await;
            app.publish_review(model, meta, evaluate_only)
        }
    }
}

fn range_secs(r: Option<augur_proto::common::TimeRange>) -> (Option<i64>, Option<i64>) {
    r.map_or((None, None), |r| {
        (r.start.map(|t| t.seconds), r.end.map(|t| t.seconds))
    })
}

#[tonic::async_trait]
impl Risk for Service {
    type ScoreOrderStreamStream = BoxStream<pb::ScoreOrderStreamResponse>;
    type TrainStream = BoxStream<TrainProgress>;

    async fn score_order(
        &self,
        req: Request<pb::ScoreOrderRequest>,
    ) -> Result<Response<pb::ScoreOrderResponse>, Status> {
        Ok(Response::new(score_one(&self.app, req.into_inner()).await?))
    }

    async fn score_order_stream(
        &self,
        req: Request<tonic::Streaming<pb::ScoreOrderRequest>>,
    ) -> Result<Response<Self::ScoreOrderStreamStream>, Status> {
        let mut input = req.into_inner();
        let app = self.app.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            let mut index = 0u64;
            while let Some(msg) = input.next().await {
                let msg = match msg {
                    Ok(m) => m,
                    Err(s) => {
                        let _ = tx.send(Err(s)).await;
                        break;
                    }
                };
                let mut order_id = match &msg.target {
                    Some(pb::score_order_request::Target::Order(o)) => o.order_id.clone(),
                    Some(pb::score_order_request::Target::OrderId(id)) => id.clone(),
                    None => String::new(),
                };
                // An id over the limit is refused, and not echoed back (it may be megabytes).
                if order_id.len() > crate::app::MAX_ID_BYTES {
                    order_id.clear();
                }
                let out = match score_one(&app, msg).await {
                    Ok(r) => Ok(pb::ScoreOrderStreamResponse {
                        index,
                        order_id,
                        outcome: Some(pb::score_order_stream_response::Outcome::Result(r)),
                    }),
                    // What no later message could get past ends the stream; a value the
                    // feature store refused is this message's own error.
                    Err(e @ (Error::NoModel(_) | Error::FeatureStoreTimeout(_))) => {
                        Err(Status::from(e))
                    }
                    Err(Error::FeatureStore(a))
                        if !matches!(
                            a.code(),
                            tonic::Code::InvalidArgument | tonic::Code::NotFound
                        ) =>
                    {
                        Err(Status::from(Error::FeatureStore(a)))
                    }
                    Err(e) => {
                        let field = match &e {
                            Error::Invalid(f, _) => f.clone(),
                            Error::FeatureStore(ApiError::InvalidArgument(v)) => {
                                v.first().map(|v| v.field.clone()).unwrap_or_default()
                            }
                            _ => String::new(),
                        };
                        Ok(pb::ScoreOrderStreamResponse {
                            index,
                            order_id,
                            outcome: Some(pb::score_order_stream_response::Outcome::Error(
                                pb::ScoreError {
                                    code: e.code() as i32,
                                    field,
                                    message: e.to_string(),
                                },
                            )),
                        })
                    }
                };
                let fatal = out.is_err();
                if tx.send(out).await.is_err() || fatal {
                    break;
                }
                index += 1;
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn score_review(
        &self,
        req: Request<pb::ScoreReviewRequest>,
    ) -> Result<Response<pb::ScoreReviewResponse>, Status> {
        let pb::ScoreReviewRequest { review } = req.into_inner();
        let review = review.ok_or_else(|| Error::invalid("review", "required"))?;
        let (s, version) = self.app.score_review(&review).await?;
        Ok(Response::new(pb::ScoreReviewResponse {
            review_id: review.review_id,
            spam_probability: s.probability,
            decision: s.decision.to_proto(),
            factors: s.factors,
            rules: s.rules,
            model_version: version,
        }))
    }

    async fn train(
        &self,
        req: Request<pb::TrainRequest>,
    ) -> Result<Response<Self::TrainStream>, Status> {
        let pb::TrainRequest {
            kind,
            source,
            validation_fraction,
            hyperparameters,
            evaluate_only,
        } = req.into_inner();
        let kind = pb::ModelKind::try_from(kind)
            .map_err(|_| Error::invalid("kind", format!("unknown model kind {kind}")))?;
        let review = kind == pb::ModelKind::Review;
        let options = TrainOptions::parse(&hyperparameters, validation_fraction)?;
        use pb::train_request::Source;
        let job = match (review, source) {
            (false, None) => Job::OrdersFromStore((None, None)),
            (false, Some(Source::FeatureStore(f))) => Job::OrdersFromStore(range_secs(f.range)),
            (false, Some(Source::Table(t))) => {
                let (c, r, l) = table_from_proto(t)?;
                Job::Table(c, r, l)
            }
            (false, Some(Source::Reviews(_))) => {
                return Err(Error::invalid(
                    "reviews",
                    "reviews train the REVIEW model (kind = MODEL_KIND_REVIEW)",
                )
                .into());
            }
            (true, None) => Job::ReviewsFromStore((None, None)),
            (true, Some(Source::FeatureStore(f))) => Job::ReviewsFromStore(range_secs(f.range)),
            (true, Some(Source::Reviews(r))) => Job::Reviews(reviews_from_proto(r)?),
            (true, Some(Source::Table(_))) => {
                return Err(Error::invalid("table", "a labelled table trains the ORDER model (or any tabular task with evaluate_only)").into());
            }
        };
        if review {
            // Fail fast when the text model is missing.
            self.app.embedder()?;
        }
        let permit = self.app.gate.try_start().ok_or(Error::Busy)?;
        let (progress, stream) = augur_model::progress::channel();
        let app = self.app.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match run_job(&app, job, &options, evaluate_only, &progress).await {
                Ok(meta) => progress.done(meta.to_proto()).await,
                Err(e) => progress.fail(e.into()).await,
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_model_info(
        &self,
        req: Request<pb::GetModelInfoRequest>,
    ) -> Result<Response<pb::GetModelInfoResponse>, Status> {
        let kind = pb::ModelKind::try_from(req.into_inner().kind)
            .map_err(|_| Error::invalid("kind", "unknown model kind"))?;
        let meta = if kind == pb::ModelKind::Review {
            self.app.reviews.get().map(|s| s.meta.to_proto())
        } else {
            self.app.orders.get().map(|s| s.meta.to_proto())
        };
        let model =
            meta.ok_or_else(|| Error::NoModel("no model trained yet: call Train".into()))?;
        Ok(Response::new(pb::GetModelInfoResponse {
            model: Some(model),
        }))
    }
}
