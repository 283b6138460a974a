//! `augur train <service>`: start a model training on a running service and follow its progress.
//! `augur up --demo` uses the same code to train every model on the demo data.

use std::time::Duration;

use augur_proto::common::{ModelInfo, TrainProgress};
use augur_runtime::client::ServiceChannel;
use indicatif::{ProgressBar, ProgressStyle};
use tokio_stream::StreamExt;
use tonic::{Code, Status, Streaming};

use crate::connect::{ConnectArgs, Remote};

/// Request timeout of a training call (the progress stream is exempt on the server side).
const TRAIN_TIMEOUT: Duration = Duration::from_secs(3600);

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
    /// Address of the service: http://host:port, https://host:port, or host:port (https when
    /// a TLS flag is set). Default: 127.0.0.1 and the service's `augur up` port.
    #[arg(long)]
    pub addr: Option<String>,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// Starts a default training (the service reads its data from the feature store) and returns the
/// server's progress stream.
async fn start(model: Model, channel: ServiceChannel) -> Result<Streaming<TrainProgress>, Status> {
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

/// Whether the service at `addr` (plaintext, no token) has a model: `GetModelInfo` succeeds.
pub async fn has_model(model: Model, addr: &str) -> bool {
    has_model_on(model, &Remote::plain(addr)).await
}

/// Whether the service has a model: `GetModelInfo` succeeds.
pub async fn has_model_on(model: Model, remote: &Remote) -> bool {
    let Ok(channel) = remote.channel(Duration::from_secs(10)) else {
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

/// Trains `model` at `addr` (plaintext, no token), drawing a progress bar; returns the new
/// model's info.
pub async fn train(model: Model, addr: &str) -> Result<ModelInfo, Status> {
    train_on(model, &Remote::plain(addr)).await
}

/// Trains `model` on `remote`, drawing a progress bar; returns the new model's info. A channel
/// that cannot be set up (unreadable CA file, bad address) is `INVALID_ARGUMENT`.
pub async fn train_on(model: Model, remote: &Remote) -> Result<ModelInfo, Status> {
    let channel = remote
        .channel(TRAIN_TIMEOUT)
        .map_err(|e| Status::invalid_argument(format!("{e:#}")))?;
    train_over(model, channel).await
}

async fn train_over(model: Model, channel: ServiceChannel) -> Result<ModelInfo, Status> {
    let bar = ProgressBar::new(1000);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>16} {bar:30} {percent:>3}% {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_prefix(model.name());
    bar.enable_steady_tick(Duration::from_millis(200));
    let result = follow(model, channel, &bar).await;
    match &result {
        Ok(m) => bar.finish_with_message(format!("model {} ready", m.model_version)),
        Err(s) => bar.abandon_with_message(format!("failed: {}", s.message())),
    }
    result
}

async fn follow(
    model: Model,
    channel: ServiceChannel,
    bar: &ProgressBar,
) -> Result<ModelInfo, Status> {
    let mut stream = start(model, channel).await?;
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
        .unwrap_or_else(|| format!("127.0.0.1:{}", args.service.default_port()));
    let remote = args.connect.remote(&addr)?;
    let model = Model {
        service: args.service,
        risk: args.model,
    };
    let channel = remote.channel(TRAIN_TIMEOUT)?;
    let info = train_over(model, channel)
        .await
        .map_err(|s| remote.explain(&s))?;
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

/// [`train_missing_on`] over plaintext without a token.
pub async fn train_missing(urls: &[(Model, String)]) {
    let remotes: Vec<(Model, Remote)> = urls.iter().map(|(m, u)| (*m, Remote::plain(u))).collect();
    train_missing_on(&remotes).await
}

/// Trains every model service of a running platform that has no model yet, one after another
/// (they share the CPU); a service that cannot train is reported and skipped.
pub async fn train_missing_on(remotes: &[(Model, Remote)]) {
    for (model, remote) in remotes {
        if has_model_on(*model, remote).await {
            continue;
        }
        match train_on(*model, remote).await {
            Ok(_) => {}
            Err(s) if s.code() == Code::Unimplemented => {
                println!("{}: training not available ({})", model.name(), s.message());
            }
            Err(s) => {
                eprintln!(
                    "{}: training failed: {}\n(it keeps serving its previous model if any)",
                    model.name(),
                    remote.explain(&s)
                );
            }
        }
    }
}
