//! The gateway binary: `cargo run --release -p ballast-gateway`.
//!
//! Settings from the environment over the TOML file `BALLAST_CONFIG` names (see the
//! crate's docs and README.md). Without the provider's API key the upstream is the
//! simulator's bad day on loopback, in real time, so that the gateway can be tried with
//! no key.

use ballast::Preset;
use ballast::classify::BoxError;
use ballast_gateway::{Gateway, GatewayConfig, LogFormat, Otel, Settings};
use ballast_sim::{Flavor, Scenario, SimServer, Simulator};
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
    let otel = init_log(config.log_format)?;
    if otel.is_some() {
        tracing::info!("exporting call and attempt spans over OTLP");
    }
    let prometheus = PrometheusBuilder::new().install_recorder()?;
    let address = config.listen_address().await?;
    // Kept alive for as long as the gateway runs.
    let _simulated = if config.provider.api_key.is_none() {
        // The bad day in the provider's own API: the gateway speaks to it as it would to
        // the real one (an Anthropic or Gemini provider gets its translated requests).
        let flavor = match config.provider.preset {
            Preset::Anthropic => Flavor::Anthropic,
            Preset::Gemini => Flavor::Gemini,
            Preset::OpenAi | Preset::OpenAiCompatible => Flavor::OpenAi,
            // xAI, and any preset to come: the story's provider.
            _ => Flavor::XAi,
        };
        let scenario = Scenario {
            flavor,
            ..Scenario::bad_day()
        };
        let server = SimServer::start(Simulator::new(scenario)).await?;
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
    match (config.client_keys.is_empty(), local.ip().is_loopback()) {
        (true, true) => {
            tracing::info!(address = %local, "no client keys: open to callers on this machine only (loopback); set BALLAST_CLIENT_KEYS before listening further")
        }
        (true, false) => {
            tracing::warn!(address = %local, "listening beyond loopback with no client keys: anyone who can reach this address spends the budget")
        }
        (false, _) => tracing::info!(keys = config.client_keys.len(), "calls need a client key"),
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
    // Settlements a store refused land before the process goes; so do buffered spans.
    gateway.flush().await;
    if let Some(otel) = otel {
        tokio::task::spawn_blocking(move || otel.shutdown()).await??;
    }
    Ok(())
}

/// `RUST_LOG` (default `info`), as text with colour on a terminal and JSON lines elsewhere
/// unless `BALLAST_LOG_FORMAT` says which; with `OTEL_EXPORTER_OTLP_ENDPOINT`, the per-call
/// and per-attempt spans exported over OTLP too. The log itself never carries those spans
/// (a log line stays one line, not one with its call's whole context).
fn init_log(format: LogFormat) -> Result<Option<Otel>, BoxError> {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let filter = || {
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
    };
    let no_spans = || tracing_subscriber::filter::filter_fn(|meta| !meta.is_span());
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !terminal,
    };
    let json_log = json.then(|| {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_filter(filter())
            .with_filter(no_spans())
    });
    let text_log = (!json).then(|| {
        tracing_subscriber::fmt::layer()
            .with_ansi(terminal)
            .with_writer(std::io::stderr)
            .with_filter(filter())
            .with_filter(no_spans())
    });
    let otel = Otel::from_env()?;
    let export = otel.as_ref().map(Otel::layer);
    tracing_subscriber::registry()
        .with(json_log)
        .with(text_log)
        .with(export)
        .try_init()?;
    Ok(otel)
}
