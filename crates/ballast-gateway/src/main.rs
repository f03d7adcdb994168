//! The gateway binary: `cargo run --release -p ballast-gateway`.
//!
//! Settings from the environment over the TOML file `BALLAST_CONFIG` names (see the
//! crate's docs and README.md). Without the provider's API key the upstream is the
//! simulator's bad day on loopback, in real time, so that the gateway can be tried with
//! no key.

use ballast::classify::BoxError;
use ballast_gateway::{Gateway, GatewayConfig, LogFormat, Settings};
use ballast_sim::{Scenario, SimServer, Simulator};
use metrics_exporter_prometheus::PrometheusBuilder;

#[tokio::main]
async fn main() {
    // `ballast-gateway hash-key`: the SHA-256 of the key on standard input, for a
    // `[[client_keys]]` entry (the key itself is never kept).
    if std::env::args().nth(1).as_deref() == Some("hash-key") {
        let mut key = String::new();
        if std::io::stdin().read_line(&mut key).is_err() || key.trim().is_empty() {
            eprintln!("ballast-gateway hash-key: give the key on standard input");
            std::process::exit(2);
        }
        println!("{}", ballast_gateway::ClientKey::hash(key.trim()));
        return;
    }
    if let Err(error) = run().await {
        // Display, not Debug: a reader's sentence, with no secret in it.
        eprintln!("ballast-gateway: {error}");
        std::process::exit(2);
    }
}

async fn run() -> Result<(), BoxError> {
    let settings = Settings::from_env()?;
    let mut config = GatewayConfig::from_settings(&settings)?;
    init_log(config.log_format);
    let prometheus = PrometheusBuilder::new().install_recorder()?;
    let address = config.listen_address().await?;
    // Kept alive for as long as the gateway runs.
    let _simulated = if config.provider.api_key.is_none() {
        let server = SimServer::start(Simulator::new(Scenario::bad_day())).await?;
        config.provider.base_url = format!("{}/v1", server.url()).parse()?;
        tracing::info!(upstream = %config.provider.base_url, key = config.provider.preset.key_var(), "no API key: the upstream is the simulated provider's bad day");
        Some(server)
    } else {
        tracing::info!(provider = config.provider.preset.name(), upstream = %config.provider.base_url, "live upstream");
        None
    };
    for fallback in &config.fallbacks {
        tracing::info!(target = fallback.config.preset.name(), upstream = %fallback.config.base_url, model = ?fallback.model, "fallback");
    }
    let gateway = Gateway::new(&config, Some(prometheus))?;
    let listener = tokio::net::TcpListener::bind(address).await?;
    let local = listener.local_addr()?;
    if !local.ip().is_loopback() {
        tracing::warn!(address = %local, "listening beyond loopback with no client keys: anyone who can reach this address spends the budget");
    }
    tracing::info!(address = %local, admin = config.admin_token.is_some(), "ballast gateway listening");
    ballast_gateway::serve(
        listener,
        gateway.router(),
        config.header_timeout,
        config.max_connections,
        ballast_gateway::shutdown_signal(),
    )
    .await;
    // Settlements a store refused land before the process goes.
    gateway.flush().await;
    Ok(())
}

/// `RUST_LOG` (default `info`), as text with colour on a terminal and JSON lines elsewhere
/// unless `BALLAST_LOG_FORMAT` says which.
fn init_log(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !terminal,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.with_ansi(terminal).init();
    }
}
