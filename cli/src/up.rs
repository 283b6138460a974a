//! `augur up`: the five services in one process on consecutive ports, the embedded SQLite
//! store in a data directory, optionally with the demo dataset.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use augur_runtime::ServerHandle;
use augur_runtime::config::{ModelServiceConfig, load};

#[derive(clap::Args, Debug, Clone)]
pub struct UpArgs {
    /// Load the synthetic demo dataset when the store is empty, then train every model that has
    /// none yet (models saved in the data directory are loaded at start instead).
    #[arg(long)]
    pub demo: bool,
    /// With --demo: do not train the models after loading (they answer FAILED_PRECONDITION
    /// until `augur train <service>` is run).
    #[arg(long)]
    pub no_train: bool,
    /// Data directory (SQLite store, keys, models).
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    #[arg(long, default_value_t = 50051)]
    pub feature_store_port: u16,
    #[arg(long, default_value_t = 50052)]
    pub recommendation_port: u16,
    #[arg(long, default_value_t = 50053)]
    pub forecast_port: u16,
    #[arg(long, default_value_t = 50054)]
    pub churn_port: u16,
    #[arg(long, default_value_t = 50055)]
    pub risk_port: u16,
    /// TOML file shared by all services (top-level keys such as `database_url`, `hash_key`,
    /// `[telemetry]`); AUGUR_* environment variables override it. Listen addresses and the
    /// data directory come from the flags.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// How `--demo` reaches the services when the config turns on TLS or auth.
    #[command(flatten)]
    pub connect: crate::connect::ConnectArgs,
}

impl Default for UpArgs {
    fn default() -> Self {
        Self {
            demo: false,
            no_train: false,
            data_dir: "data".into(),
            host: IpAddr::from([127, 0, 0, 1]),
            feature_store_port: 50051,
            recommendation_port: 50052,
            forecast_port: 50053,
            churn_port: 50054,
            risk_port: 50055,
            config: None,
            connect: Default::default(),
        }
    }
}

/// The running platform.
pub struct Platform {
    pub servers: Vec<(&'static str, ServerHandle)>,
    pub feature_store: std::sync::Arc<augur_feature_store::App>,
    follow_stop: Option<tokio::sync::watch::Sender<bool>>,
}

impl Platform {
    /// `http://addr` of a service by name.
    pub fn url(&self, name: &str) -> Option<String> {
        self.servers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, h)| h.url())
    }

    pub async fn shutdown(self) -> anyhow::Result<()> {
        if let Some(tx) = self.follow_stop {
            let _ = tx.send(true);
        }
        let mut first_err = None;
        for (name, h) in self.servers {
            if let Err(e) = h.shutdown().await {
                tracing::error!(service = name, error = %e, "shutdown failed");
                first_err.get_or_insert(e);
            }
        }
        match first_err {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }
}

fn model_config(
    args: &UpArgs,
    defaults: ModelServiceConfig,
    port: u16,
    fs_url: &str,
) -> anyhow::Result<ModelServiceConfig> {
    let mut c = load(defaults, args.config.as_deref())?;
    c.server.listen = SocketAddr::new(args.host, port);
    c.data_dir = args.data_dir.clone();
    c.feature_store_url = fs_url.to_string();
    Ok(c)
}

/// Starts every service; ports may be 0 (tests).
pub async fn start(args: &UpArgs) -> anyhow::Result<Platform> {
    let mut fs_config = load(
        augur_feature_store::Config::default(),
        args.config.as_deref(),
    )?;
    fs_config.server.listen = SocketAddr::new(args.host, args.feature_store_port);
    fs_config.data_dir = args.data_dir.clone();
    let (fs_server, app) = augur_feature_store::build(&fs_config).await?;
    let fs = fs_server.spawn().await?;
    let fs_url = fs.url();
    let mut follow_stop = None;
    if app.follows() {
        let (tx, mut rx) = tokio::sync::watch::channel(false);
        tokio::spawn(app.clone().follow_loop(
            Duration::from_millis(fs_config.follow_interval_ms),
            async move {
                let _ = rx.wait_for(|v| *v).await;
            },
        ));
        follow_stop = Some(tx);
    }

    let mut servers = vec![("feature-store", fs)];
    let rec = model_config(
        args,
        augur_recommendation::default_config(),
        args.recommendation_port,
        &fs_url,
    )?;
    servers.push((
        "recommendation",
        augur_recommendation::build(&rec).spawn().await?,
    ));
    let fc = model_config(
        args,
        augur_demand_forecast::default_config(),
        args.forecast_port,
        &fs_url,
    )?;
    servers.push((
        "demand-forecast",
        augur_demand_forecast::build(&fc).spawn().await?,
    ));
    let ch = model_config(
        args,
        augur_churn::default_config(),
        args.churn_port,
        &fs_url,
    )?;
    servers.push(("churn", augur_churn::build(&ch).spawn().await?));
    let rk = model_config(args, augur_risk::default_config(), args.risk_port, &fs_url)?;
    servers.push(("risk", augur_risk::build(&rk).spawn().await?));
    Ok(Platform {
        servers,
        feature_store: app,
        follow_stop,
    })
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let fs_defaults = load(
        augur_feature_store::Config::default(),
        args.config.as_deref(),
    )?;
    let telemetry = augur_runtime::telemetry::init("augur", &fs_defaults.telemetry)?;
    let platform = start(&args).await?;
    if args.demo {
        let (customers, products) = platform.feature_store.online().counts();
        if customers == 0 && products == 0 {
            let url = platform.url("feature-store").unwrap_or_default();
            crate::demo::load_on(&args.connect.remote(&url)?, 42, true).await?;
        } else {
            println!(
                "demo: the store already holds {customers} customers and {products} products; not loading again"
            );
        }
        if !args.no_train {
            let mut remotes = Vec::new();
            for m in crate::train::Model::ALL {
                if let Some(u) = platform.url(m.service.name()) {
                    remotes.push((m, args.connect.remote(&u)?));
                }
            }
            crate::train::train_missing_on(&remotes).await;
        }
    }
    println!();
    println!("Augur is up (data in {}):", args.data_dir.display());
    for (name, h) in &platform.servers {
        println!("  {name:<16} {}", h.addr());
    }
    if let Some(addr) = telemetry.metrics_addr() {
        println!("  {:<16} http://{addr}/metrics", "metrics");
    }
    println!();
    println!(
        "Try:  grpcurl -plaintext {} list",
        platform.servers[0].1.addr()
    );
    println!("Stop: Ctrl-C");
    augur_runtime::shutdown::signal().await;
    platform.shutdown().await
}
