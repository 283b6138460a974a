//! End-to-end over real gRPC on 127.0.0.1:0: a feature store with ingested orders (promotion days
//! with a real lift), the demand-forecast service trained from it, forecasts of a SKU and of an
//! inline series, a promotion covariate that raises the forecast, backtest, reorder advice,
//! bad input, and a restart that serves the saved model.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::field_reassign_with_default
)]

use std::collections::BTreeMap;

use augur_proto::featurestore as fs;
use augur_proto::featurestore::feature_store_client::FeatureStoreClient;
use augur_proto::forecast as pb;
use augur_proto::forecast::demand_forecast_client::DemandForecastClient;
use augur_runtime::{Secret, ServerConfig};
use tonic::Code;
use tonic::transport::Channel;

const DAY: i64 = 86_400;
/// 2024-01-01T00:00:00Z (a Monday).
const T0: i64 = 1_704_067_200;
const DAYS: i64 = 280;
const SKUS: [&str; 4] = ["sku-a", "sku-b", "sku-c", "sku-d"];

fn ts(secs: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: secs,
        nanos: 0,
    })
}

/// Deterministic pseudo-random numbers in [0, 1).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) as f64 / (1u64 << 31) as f64
    }
}

/// Orders over DAYS days: a weekly pattern, promotion weeks (every 5th week) that double sales at
/// a 20% lower price.
fn events() -> Vec<fs::Event> {
    let mut rng = Lcg(7);
    let mut out = vec![fs::Event {
        payload: Some(fs::event::Payload::Customer(fs::Customer {
            customer_id: "c1".into(),
            signup_ts: ts(T0 - DAY),
            country: "DE".into(),
            ..Default::default()
        })),
    }];
    for (k, sku) in SKUS.iter().enumerate() {
        out.push(fs::Event {
            payload: Some(fs::event::Payload::Product(fs::Product {
                sku: sku.to_string(),
                title: format!("Product {sku}"),
                category_path: vec!["food".into()],
                price: 10.0,
                stock: 40 + 30 * k as i64,
                ts: ts(T0 - DAY),
                ..Default::default()
            })),
        });
    }
    for d in 0..DAYS {
        let week = d / 7;
        for (k, sku) in SKUS.iter().enumerate() {
            let promo = (week + k as i64) % 5 == 0;
            let base = 8.0 + 2.0 * k as f64 + if d % 7 >= 5 { 4.0 } else { 0.0 };
            let lift = if promo { 2.0 } else { 1.0 };
            let q = (base * lift * (0.8 + 0.4 * rng.next())).round().max(1.0) as i64;
            out.push(fs::Event {
                payload: Some(fs::event::Payload::Order(fs::Order {
                    order_id: format!("o-{sku}-{d}"),
                    customer_id: "c1".into(),
                    ts: ts(T0 + d * DAY + 3600 * 12),
                    lines: vec![fs::OrderLine {
                        sku: sku.to_string(),
                        quantity: q,
                        unit_price: if promo { 8.0 } else { 10.0 },
                        promotion: promo,
                    }],
                    currency: "EUR".into(),
                    status: fs::OrderStatus::Paid as i32,
                    ..Default::default()
                })),
            });
        }
    }
    out
}

async fn start_feature_store(dir: &std::path::Path) -> (augur_runtime::ServerHandle, String) {
    let mut c = augur_feature_store::Config::default();
    c.server = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..ServerConfig::default()
    };
    c.hash_key = Secret::new("test-hash-key-0123456789");
    c.data_dir = dir.to_path_buf();
    let (server, _app) = augur_feature_store::build(&c).await.expect("feature store");
    let handle = server.spawn().await.expect("spawn");
    let url = handle.url();
    let mut client = FeatureStoreClient::<Channel>::connect(url.clone())
        .await
        .expect("connect");
    let resp = client
        .ingest(fs::IngestRequest { events: events() })
        .await
        .expect("ingest")
        .into_inner();
    assert!(resp.rejected.is_empty(), "{:?}", resp.rejected);
    (handle, url)
}

async fn start_forecast(
    data_dir: &std::path::Path,
    fs_url: &str,
) -> (augur_runtime::ServerHandle, DemandForecastClient<Channel>) {
    let mut config = augur_demand_forecast::default_config();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.data_dir = data_dir.to_path_buf();
    config.feature_store_url = fs_url.to_string();
    let handle = augur_demand_forecast::build(&config)
        .spawn()
        .await
        .expect("spawn");
    let client = DemandForecastClient::connect(handle.url())
        .await
        .expect("connect");
    (handle, client)
}

fn sku(s: &str) -> pb::SeriesInput {
    pb::SeriesInput {
        id: s.into(),
        source: Some(pb::series_input::Source::FeatureStore(pb::SeriesKey {
            sku: s.into(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn promo_future(v: f64, h: usize) -> BTreeMap<String, pb::Covariate> {
    BTreeMap::from([(
        "promotion".to_string(),
        pb::Covariate { values: vec![v; h] },
    )])
}

fn field_of(status: &tonic::Status) -> String {
    use tonic_types::StatusExt;
    status
        .get_details_bad_request()
        .and_then(|b| b.field_violations.first().map(|v| v.field.clone()))
        .unwrap_or_default()
}

#[tokio::test]
async fn train_forecast_promotions_backtest_reorder_and_restart() {
    let fs_dir = tempfile::tempdir().unwrap();
    let fc_dir = tempfile::tempdir().unwrap();
    let (fs_handle, fs_url) = start_feature_store(fs_dir.path()).await;
    let (handle, mut client) = start_forecast(fc_dir.path(), &fs_url).await;

    // No model yet.
    let err = client
        .forecast(pb::ForecastRequest {
            series: vec![sku("sku-a")],
            horizon: 7,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("call Train"));

    // Train with the default request (every SKU by day), as `augur up --demo` does.
    let mut stream = client
        .train(pb::TrainRequest::default())
        .await
        .expect("train")
        .into_inner();
    let mut last = None;
    let mut stages = Vec::new();
    while let Some(p) = stream.message().await.expect("progress") {
        stages.push(p.stage.clone());
        last = Some(p);
    }
    let last = last.expect("progress messages");
    assert!(last.done, "{stages:?}");
    let info = last.model.expect("model info");
    assert!(info.validation_metrics.contains_key("mase"));
    assert_eq!(info.parameters["covariates"], "price,promotion");
    let version = info.model_version.clone();

    // A second concurrent training is refused while... (the first is over: this one runs).
    let got = client
        .get_model_info(pb::GetModelInfoRequest {})
        .await
        .expect("info")
        .into_inner();
    assert_eq!(got.model.unwrap().model_version, version);

    // Forecast a SKU from the feature store, with and without a promotion in the horizon.
    let h = 14;
    let mut with = sku("sku-a");
    with.future_covariates = promo_future(1.0, h);
    let mut without = sku("sku-a");
    without.future_covariates = promo_future(0.0, h);
    let resp = client
        .forecast(pb::ForecastRequest {
            series: vec![with, without],
            horizon: h as u32,
            ..Default::default()
        })
        .await
        .expect("forecast")
        .into_inner();
    assert_eq!(resp.model_version, version);
    let sum = |f: &pb::SeriesForecast| f.points.iter().map(|p| p.point).sum::<f64>();
    let (on, off) = (sum(&resp.forecasts[0]), sum(&resp.forecasts[1]));
    assert!(on > 1.4 * off, "promotion {on} vs none {off}");
    // Plain daily level of sku-a is about 9 units; two weeks about 130.
    assert!((80.0..200.0).contains(&off), "{off}");
    for f in &resp.forecasts {
        assert_eq!(f.points.len(), h);
        for (i, p) in f.points.iter().enumerate() {
            assert_eq!(p.step as usize, i + 1);
            assert!(p.point.is_finite() && p.point >= 0.0);
            assert!(p.period_start.is_some());
            let q: Vec<f64> = p.quantiles.iter().map(|q| q.value).collect();
            assert_eq!(q.len(), 3);
            assert!(q[0] <= q[1] && q[1] <= q[2], "{q:?}");
        }
    }
    // Daily periods follow the history.
    let p1 = resp.forecasts[0].points[0].period_start.unwrap().seconds;
    assert_eq!(p1, T0 + DAYS * DAY);

    // An inline monthly series with trend and season.
    let values: Vec<f64> = (0..72)
        .map(|t| 100.0 + 2.0 * t as f64 + 20.0 * ((t % 12) as f64 * 0.5).sin())
        .collect();
    let resp = client
        .forecast(pb::ForecastRequest {
            series: vec![pb::SeriesInput {
                id: "inline".into(),
                source: Some(pb::series_input::Source::Inline(pb::InlineSeries {
                    values: values.clone(),
                    frequency: pb::Frequency::Month as i32,
                    ..Default::default()
                })),
                ..Default::default()
            }],
            horizon: 12,
            quantiles: vec![0.9, 0.05, 0.5],
            ..Default::default()
        })
        .await
        .expect("inline forecast")
        .into_inner();
    let f = &resp.forecasts[0];
    assert_eq!(f.id, "inline");
    // The model was trained on daily SKUs (season 7): a monthly series gets the fallback.
    assert_eq!(f.method, "comb_fallback");
    assert!(f.points[0].period_start.is_none());
    let first = f.points[0].point;
    assert!((230.0..270.0).contains(&first), "{first}");
    let levels: Vec<f64> = f.points[0].quantiles.iter().map(|q| q.quantile).collect();
    assert_eq!(levels, vec![0.05, 0.5, 0.9]);

    // Backtest of the SKUs.
    let resp = client
        .backtest(pb::BacktestRequest {
            series: SKUS.iter().map(|s| sku(s)).collect(),
            horizon: 7,
            windows: 3,
            ..Default::default()
        })
        .await
        .expect("backtest")
        .into_inner();
    assert_eq!(resp.series.len(), SKUS.len());
    assert_eq!(resp.series[0].windows.len(), 3);
    let overall = resp.overall.unwrap();
    assert_eq!(overall.points, (SKUS.len() * 21) as u64);
    assert!(overall.wape < 0.35, "{overall:?}");
    assert!(overall.coverage > 0.5, "{overall:?}");
    // The interval score: positive, and the mean of the series' as MASE is.
    let mean_msis = resp
        .series
        .iter()
        .map(|s| s.metrics.as_ref().map_or(f64::NAN, |m| m.msis))
        .sum::<f64>()
        / SKUS.len() as f64;
    assert!(
        overall.msis > 0.0 && overall.msis.is_finite(),
        "{overall:?}"
    );
    assert!(
        (overall.msis - mean_msis).abs() < 1e-9 * mean_msis,
        "{overall:?}"
    );

    // Reorder advice: stock of sku-a is 40, a week's demand is about 65.
    let resp = client
        .reorder_advice(pb::ReorderAdviceRequest {
            items: vec![pb::SeriesKey {
                sku: "sku-a".into(),
                ..Default::default()
            }],
            lead_time: 7,
            ..Default::default()
        })
        .await
        .expect("reorder")
        .into_inner();
    let item = &resp.items[0];
    assert_eq!(resp.service_level, 0.95);
    assert_eq!(item.stock, Some(40));
    assert!(
        item.lead_time_demand > 40.0 && item.safety_stock > 0.0,
        "{item:?}"
    );
    assert!(item.reorder_now);
    assert!((item.order_quantity - (item.reorder_point - 40.0)).abs() < 1e-9);

    // Bad input names the field.
    let bad = |req: pb::ForecastRequest| {
        let mut c = client.clone();
        async move { c.forecast(req).await.unwrap_err() }
    };
    let inline = |values: Vec<f64>| pb::SeriesInput {
        source: Some(pb::series_input::Source::Inline(pb::InlineSeries {
            values,
            ..Default::default()
        })),
        ..Default::default()
    };
    let cases = [
        (
            pb::ForecastRequest {
                series: vec![inline(vec![])],
                horizon: 3,
                ..Default::default()
            },
            "series[0].inline.values",
        ),
        (
            pb::ForecastRequest {
                series: vec![inline(vec![f64::NAN, f64::NAN])],
                horizon: 3,
                ..Default::default()
            },
            "series[0].inline.values",
        ),
        (
            pb::ForecastRequest {
                series: vec![inline(vec![1.0, 2.0])],
                horizon: 0,
                ..Default::default()
            },
            "horizon",
        ),
        (
            pb::ForecastRequest {
                series: vec![inline(vec![1.0, 2.0])],
                horizon: 1000,
                ..Default::default()
            },
            "horizon",
        ),
        (
            pb::ForecastRequest {
                series: vec![inline(vec![1.0, 2.0])],
                horizon: 3,
                quantiles: vec![0.5, 1.0],
                ..Default::default()
            },
            "quantiles[1]",
        ),
        (
            pb::ForecastRequest {
                series: vec![{
                    let mut s = sku("sku-a");
                    s.future_covariates = promo_future(1.0, 2);
                    s
                }],
                horizon: 3,
                ..Default::default()
            },
            "series[0].future_covariates[promotion]",
        ),
    ];
    for (req, field) in cases {
        let err = bad(req).await;
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert_eq!(field_of(&err), field, "{err:?}");
    }
    let err = client
        .forecast(pb::ForecastRequest {
            series: vec![sku("no-such-sku")],
            horizon: 3,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");

    // Restart: the saved model serves again.
    handle.shutdown().await.unwrap();
    let (handle, mut client) = start_forecast(fc_dir.path(), &fs_url).await;
    let got = client
        .get_model_info(pb::GetModelInfoRequest {})
        .await
        .expect("info after restart")
        .into_inner();
    assert_eq!(got.model.unwrap().model_version, version);
    handle.shutdown().await.unwrap();
    fs_handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn train_inline_and_hot_swap() {
    let dir = tempfile::tempdir().unwrap();
    // No feature store at all: inline training and forecasting still work.
    let (handle, mut client) = start_forecast(dir.path(), "http://127.0.0.1:9").await;
    let series = |k: usize| pb::InlineSeries {
        values: (0..60)
            .map(|t| 50.0 + k as f64 + 10.0 * ((t % 12) as f64).sin() + t as f64 * 0.5)
            .collect(),
        frequency: pb::Frequency::Month as i32,
        ..Default::default()
    };
    let mut versions = Vec::new();
    for _ in 0..2 {
        let mut stream = client
            .train(pb::TrainRequest {
                source: Some(pb::train_request::Source::Inline(pb::InlineSeriesSet {
                    series: (0..5).map(series).collect(),
                })),
                horizon: 6,
                ..Default::default()
            })
            .await
            .expect("train")
            .into_inner();
        let mut last = None;
        while let Some(p) = stream.message().await.expect("progress") {
            last = Some(p);
        }
        versions.push(last.unwrap().model.unwrap().model_version);
    }
    assert_ne!(versions[0], versions[1]);
    let resp = client
        .forecast(pb::ForecastRequest {
            series: vec![pb::SeriesInput {
                source: Some(pb::series_input::Source::Inline(series(1))),
                ..Default::default()
            }],
            horizon: 6,
            ..Default::default()
        })
        .await
        .expect("forecast")
        .into_inner();
    assert_eq!(resp.model_version, versions[1]);
    // Above the trained horizon.
    let err = client
        .forecast(pb::ForecastRequest {
            series: vec![pb::SeriesInput {
                source: Some(pb::series_input::Source::Inline(series(1))),
                ..Default::default()
            }],
            horizon: 7,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    // Feature-store training without a feature store: the stream ends with UNAVAILABLE.
    let mut stream = client
        .train(pb::TrainRequest::default())
        .await
        .expect("train")
        .into_inner();
    let err = loop {
        match stream.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("stream ended without an error"),
            Err(e) => break e,
        }
    };
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    // Unknown hyper-parameter.
    let err = client
        .train(pb::TrainRequest {
            hyperparameters: BTreeMap::from([("nope".to_string(), "1".to_string())]),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(field_of(&err), "hyperparameters[nope]");
    handle.shutdown().await.unwrap();
}
