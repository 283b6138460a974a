//! `augur train <service>`: start a model training on a running service and follow its progress.
//! `augur up --demo` uses the same code to train every model on the demo data.

use std::time::Duration;

use augur_proto::common::{ModelInfo, TrainProgress};
use indicatif::{ProgressBar, ProgressStyle};
use tokio_stream::StreamExt;
use tonic::{Code, Status, Streaming};

/// The model services that train.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    Recommendation,
    #[value(alias = "forecast")]
    DemandForecast,
    Churn,
    Risk,
}

impl Service {
    pub const ALL: [Service; 4] = [
        Service::Recommendation,
        Service::DemandForecast,
        Service::Churn,
        Service::Risk,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Service::Recommendation => "recommendation",
            Service::DemandForecast => "demand-forecast",
            Service::Churn => "churn",
            Service::Risk => "risk",
        }
    }

    pub fn default_port(self) -> u16 {
        match self {
            Service::Recommendation => 50052,
            Service::DemandForecast => 50053,
            Service::Churn => 50054,
            Service::Risk => 50055,
        }
    }
}

/// Which of the risk service's two models (ignored by the other services).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RiskModel {
    /// Order fraud scorer with its anomaly model.
    #[default]
    Order,
    /// Review spam / fake scorer (needs the MiniLM model: `make minilm`).
    Review,
}

impl RiskModel {
    fn kind(self) -> i32 {
        match self {
            RiskModel::Order => augur_proto::risk::ModelKind::Order as i32,
            RiskModel::Review => augur_proto::risk::ModelKind::Review as i32,
        }
    }
}

/// One trainable model: a service, and for the risk service which of its two models.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Model {
    pub service: Service,
    pub risk: RiskModel,
}

impl Model {
    /// Every model of the platform: one per service, two for risk.
    pub const ALL: [Model; 5] = [
        Model::of(Service::Recommendation),
        Model::of(Service::DemandForecast),
        Model::of(Service::Churn),
        Model::of(Service::Risk),
        Model {
            service: Service::Risk,
            risk: RiskModel::Review,
        },
    ];

    pub const fn of(service: Service) -> Self {
        Model {
            service,
            risk: RiskModel::Order,
        }
    }

    pub fn name(self) -> String {
        match (self.service, self.risk) {
            (Service::Risk, RiskModel::Order) => "risk (orders)".into(),
            (Service::Risk, RiskModel::Review) => "risk (reviews)".into(),
            (s, _) => s.name().into(),
        }
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct TrainArgs {
    /// Which model to train.
    pub service: Service,
    /// For the risk service: the order (fraud) or the review (spam) model.
    #[arg(long, value_enum, default_value_t = RiskModel::Order)]
    pub model: RiskModel,
    /// Address of the service (default: 127.0.0.1 and the service's `augur up` port).
    #[arg(long)]
    pub addr: Option<String>,
}

/// Starts a default training (the service reads its data from the feature store) and returns the
/// server's progress stream.
async fn start(model: Model, addr: &str) -> Result<Streaming<TrainProgress>, Status> {
    let channel = augur_runtime::client::lazy_channel(addr, Duration::from_secs(3600))
        .map_err(|e| Status::invalid_argument(format!("addr: {e}")))?;
    let stream = match model.service {
        Service::Recommendation => {
            use augur_proto::recommendation as pb;
            pb::recommendation_client::RecommendationClient::new(channel)
                .train(pb::TrainRequest::default())
                .await?
        }
        Service::DemandForecast => {
            use augur_proto::forecast as pb;
            pb::demand_forecast_client::DemandForecastClient::new(channel)
                .train(pb::TrainRequest::default())
                .await?
        }
        Service::Churn => {
            use augur_proto::churn as pb;
            pb::churn_client::ChurnClient::new(channel)
                .train(pb::TrainRequest::default())
                .await?
        }
        Service::Risk => {
            use augur_proto::risk as pb;
            pb::risk_client::RiskClient::new(channel)
                .train(pb::TrainRequest {
                    kind: model.risk.kind(),
                    ..Default::default()
                })
                .await?
        }
    };
    Ok(stream.into_inner())
}

/// Whether the service has a model: `GetModelInfo` succeeds.
pub async fn has_model(model: Model, addr: &str) -> bool {
    let Ok(channel) = augur_runtime::client::lazy_channel(addr, Duration::from_secs(10)) else {
        return false;
    };
    match model.service {
        Service::Recommendation => {
            use augur_proto::recommendation as pb;
            pb::recommendation_client::RecommendationClient::new(channel)
                .get_model_info(pb::GetModelInfoRequest::default())
                .await
                .is_ok()
        }
        Service::DemandForecast => {
            use augur_proto::forecast as pb;
            pb::demand_forecast_client::DemandForecastClient::new(channel)
                .get_model_info(pb::GetModelInfoRequest::default())
                .await
                .is_ok()
        }
        Service::Churn => {
            use augur_proto::churn as pb;
            pb::churn_client::ChurnClient::new(channel)
                .get_model_info(pb::GetModelInfoRequest::default())
                .await
                .is_ok()
        }
        Service::Risk => {
            use augur_proto::risk as pb;
            pb::risk_client::RiskClient::new(channel)
                .get_model_info(pb::GetModelInfoRequest {
                    kind: model.risk.kind(),
                })
                .await
                .is_ok()
        }
    }
}

/// Trains `service` at `addr`, drawing a progress bar; returns the new model's info.
pub async fn train(model: Model, addr: &str) -> Result<ModelInfo, Status> {
    let bar = ProgressBar::new(1000);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>16} {bar:30} {percent:>3}% {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_prefix(model.name());
    bar.enable_steady_tick(Duration::from_millis(200));
    let result = follow(model, addr, &bar).await;
    match &result {
        Ok(m) => bar.finish_with_message(format!("model {} ready", m.model_version)),
        Err(s) => bar.abandon_with_message(format!("failed: {}", s.message())),
    }
    result
}

async fn follow(model: Model, addr: &str, bar: &ProgressBar) -> Result<ModelInfo, Status> {
    let mut stream = start(model, addr).await?;
    while let Some(msg) = stream.next().await {
        let p = msg?;
        bar.set_position((p.fraction.clamp(0.0, 1.0) * 1000.0) as u64);
        let mut text = format!("{}: {}", p.stage, p.message);
        for (k, v) in &p.metrics {
            text.push_str(&format!(" {k}={v:.4}"));
        }
        bar.set_message(text);
        if p.done {
            return p
                .model
                .ok_or_else(|| Status::internal("training finished without model info"));
        }
    }
    Err(Status::unknown(
        "the training stream ended before the model was ready",
    ))
}

pub async fn run(args: TrainArgs) -> anyhow::Result<()> {
    let addr = args
        .addr
        .unwrap_or_else(|| format!("http://127.0.0.1:{}", args.service.default_port()));
    let model = Model {
        service: args.service,
        risk: args.model,
    };
    let info = train(model, &addr).await?;
    println!(
        "{} model {} trained on {} examples",
        model.name(),
        info.model_version,
        info.training_examples
    );
    for (k, v) in &info.validation_metrics {
        println!("  validation {k}: {v:.4}");
    }
    Ok(())
}

/// Trains every model service of a running platform that has no model yet, one after another
/// (they share the CPU); a service that cannot train is reported and skipped.
pub async fn train_missing(urls: &[(Model, String)]) {
    for (model, url) in urls {
        if has_model(*model, url).await {
            continue;
        }
        match train(*model, url).await {
            Ok(_) => {}
            Err(s) if s.code() == Code::Unimplemented => {
                println!("{}: training not available ({})", model.name(), s.message());
            }
            Err(s) => {
                eprintln!(
                    "{}: training failed: {} ({:?}); it keeps serving its previous model if any",
                    model.name(),
                    s.message(),
                    s.code()
                );
            }
        }
    }
}
