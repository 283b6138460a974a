//! Replicas sharing one model volume over real gRPC on 127.0.0.1:0: two demand-forecast servers
//! on one `data_dir` with a 200 ms `model_reload_interval_ms`. A model trained through A's Train
//! is served by B without a restart (GetModelInfo and Forecast), and the other way round; a third
//! server with reloading off (0) keeps serving what it had.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use augur_proto::forecast as pb;
use augur_proto::forecast::demand_forecast_client::DemandForecastClient;
use augur_runtime::ServerHandle;
use tonic::Code;
use tonic::transport::Channel;

async fn start(
    dir: &std::path::Path,
    reload_ms: u64,
) -> (ServerHandle, DemandForecastClient<Channel>) {
    let mut config = augur_demand_forecast::default_config();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.data_dir = dir.to_path_buf();
    // No feature store: inline training and forecasting only.
    config.feature_store_url = "http://127.0.0.1:9".into();
    config.model_reload_interval_ms = reload_ms;
    let handle = augur_demand_forecast::build(&config)
        .spawn()
        .await
        .expect("spawn");
    let client = DemandForecastClient::connect(handle.url())
        .await
        .expect("connect");
    (handle, client)
}

fn series(k: usize) -> pb::InlineSeries {
    pb::InlineSeries {
        values: (0..48)
            .map(|t| 40.0 + k as f64 + 8.0 * ((t % 12) as f64).sin() + t as f64 * 0.3)
            .collect(),
        frequency: pb::Frequency::Month as i32,
        ..Default::default()
    }
}

/// Trains on inline series; returns the new version.
async fn train(client: &mut DemandForecastClient<Channel>) -> String {
    let mut stream = client
        .train(pb::TrainRequest {
            source: Some(pb::train_request::Source::Inline(pb::InlineSeriesSet {
                series: (0..4).map(series).collect(),
            })),
            horizon: 3,
            ..Default::default()
        })
        .await
        .expect("train")
        .into_inner();
    let mut last = None;
    while let Some(p) = stream.message().await.expect("progress") {
        last = Some(p);
    }
    last.and_then(|p| p.model)
        .expect("final progress carries the model")
        .model_version
}

async fn served_version(client: &mut DemandForecastClient<Channel>) -> Result<String, Code> {
    client
        .get_model_info(pb::GetModelInfoRequest {})
        .await
        .map(|r| r.into_inner().model.unwrap_or_default().model_version)
        .map_err(|s| s.code())
}

/// Waits (at most 10 s) until `client` serves `version`; returns how long that took.
async fn until_served(client: &mut DemandForecastClient<Channel>, version: &str) -> Duration {
    let start = Instant::now();
    loop {
        if served_version(client).await.as_deref() == Ok(version) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{version} not picked up within 10 s (serving {:?})",
            served_version(client).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn forecast_version(client: &mut DemandForecastClient<Channel>) -> String {
    let resp = client
        .forecast(pb::ForecastRequest {
            series: vec![pb::SeriesInput {
                source: Some(pb::series_input::Source::Inline(series(1))),
                ..Default::default()
            }],
            horizon: 3,
            ..Default::default()
        })
        .await
        .expect("forecast")
        .into_inner();
    assert_eq!(resp.forecasts.len(), 1);
    assert_eq!(resp.forecasts[0].points.len(), 3);
    resp.model_version
}

#[tokio::test]
async fn a_model_trained_by_one_replica_is_served_by_the_others_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (a_handle, mut a) = start(dir.path(), 200).await;
    let (b_handle, mut b) = start(dir.path(), 200).await;
    let (off_handle, mut off) = start(dir.path(), 0).await;
    assert_eq!(served_version(&mut b).await, Err(Code::FailedPrecondition));

    let v1 = train(&mut a).await;
    assert_eq!(served_version(&mut a).await.as_deref(), Ok(v1.as_str()));
    let took = until_served(&mut b, &v1).await;
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert_eq!(forecast_version(&mut b).await, v1);

    // The other way round: B trains, A moves on to B's newer version; B keeps its own.
    let v2 = train(&mut b).await;
    assert!(v2 > v1, "{v2} after {v1}");
    until_served(&mut a, &v2).await;
    assert_eq!(forecast_version(&mut a).await, v2);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(served_version(&mut b).await.as_deref(), Ok(v2.as_str()));
    assert_eq!(served_version(&mut a).await.as_deref(), Ok(v2.as_str()));

    // Reloading off: still no model, as at its start.
    assert_eq!(
        served_version(&mut off).await,
        Err(Code::FailedPrecondition)
    );

    for h in [a_handle, b_handle, off_handle] {
        tokio::time::timeout(Duration::from_secs(15), h.shutdown())
            .await
            .expect("shutdown in time")
            .unwrap();
    }
}
