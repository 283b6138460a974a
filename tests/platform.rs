//! The whole platform in one process: every service starts, reports SERVING on
//! grpc.health.v1, and the model services answer their RPCs before any training (bad input
//! named, FAILED_PRECONDITION for model info); shutdown is graceful.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use augur_proto::{churn, forecast, recommendation, risk};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_five_services_start_and_report_serving() {
    let (p, _dir) = augur_e2e::platform(false).await;
    let expected = [
        ("feature-store", "augur.featurestore.v1.FeatureStore"),
        ("recommendation", "augur.recommendation.v1.Recommendation"),
        ("demand-forecast", "augur.forecast.v1.DemandForecast"),
        ("churn", "augur.churn.v1.Churn"),
        ("risk", "augur.risk.v1.Risk"),
    ];
    for (name, service) in expected {
        let url = p.url(name).expect("url");
        let channel = tonic::transport::Endpoint::from_shared(url.clone())
            .expect("url")
            .connect()
            .await
            .expect("connect");
        let mut h = HealthClient::new(channel);
        for s in ["", service] {
            let r = h
                .check(HealthCheckRequest { service: s.into() })
                .await
                .expect("health")
                .into_inner();
            assert_eq!(r.status, ServingStatus::Serving as i32, "{name} {s:?}");
        }
        // A service hosted elsewhere is unknown here.
        let other = if name == "risk" {
            "augur.churn.v1.Churn"
        } else {
            "augur.risk.v1.Risk"
        };
        let err = h
            .check(HealthCheckRequest {
                service: other.into(),
            })
            .await
            .expect_err("not hosted");
        assert_eq!(
            err.code(),
            tonic::Code::NotFound,
            "{name} must not report {other}"
        );
    }

    // Model services answer before any training: an empty prediction request is either
    // FAILED_PRECONDITION (nothing to serve yet) or INVALID_ARGUMENT naming the field, and model
    // info is FAILED_PRECONDITION ("train first").
    let mut rec = recommendation::recommendation_client::RecommendationClient::connect(
        p.url("recommendation").expect("url"),
    )
    .await
    .expect("connect");
    let err = rec
        .recommend(recommendation::RecommendRequest::default())
        .await
        .expect_err("untrained");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err}");
    let err = rec
        .get_model_info(recommendation::GetModelInfoRequest::default())
        .await
        .expect_err("untrained");
    assert_untrained_or_invalid(&err);

    let mut fc = forecast::demand_forecast_client::DemandForecastClient::connect(
        p.url("demand-forecast").expect("url"),
    )
    .await
    .expect("connect");
    let err = fc
        .forecast(forecast::ForecastRequest::default())
        .await
        .expect_err("no sku");
    assert_untrained_or_invalid(&err);
    let err = fc
        .get_model_info(forecast::GetModelInfoRequest::default())
        .await
        .expect_err("untrained");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err}");

    let mut ch = churn::churn_client::ChurnClient::connect(p.url("churn").expect("url"))
        .await
        .expect("connect");
    let err = ch
        .predict_churn(churn::PredictChurnRequest::default())
        .await
        .expect_err("no customers");
    assert_untrained_or_invalid(&err);
    let err = ch
        .get_model_info(churn::GetModelInfoRequest::default())
        .await
        .expect_err("untrained");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err}");

    let mut rk = risk::risk_client::RiskClient::connect(p.url("risk").expect("url"))
        .await
        .expect("connect");
    let err = rk
        .score_order(risk::ScoreOrderRequest::default())
        .await
        .expect_err("no order");
    assert_untrained_or_invalid(&err);
    let err = rk
        .get_model_info(risk::GetModelInfoRequest::default())
        .await
        .expect_err("untrained");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err}");

    let fs_url = p.url("feature-store").expect("url");
    p.shutdown().await.expect("graceful shutdown");
    // After shutdown nothing listens any more.
    assert!(
        tonic::transport::Endpoint::from_shared(fs_url)
            .expect("url")
            .connect()
            .await
            .is_err()
    );
}

/// An untrained model service answers an empty request with a clear status, never UNIMPLEMENTED
/// or INTERNAL.
fn assert_untrained_or_invalid(err: &tonic::Status) {
    assert!(
        matches!(
            err.code(),
            tonic::Code::FailedPrecondition | tonic::Code::InvalidArgument
        ),
        "{err}"
    );
    assert!(!err.message().is_empty(), "{err}");
}
