//! The Ballast stack embedded in an axum app of your own: one OpenAI-compatible route.
//!
//! ```text
//! cargo run --release --example axum_proxy
//! curl -s localhost:8080/v1/chat/completions -H 'content-type: application/json' \
//!   -d '{"model":"grok-code-fast-1","messages":[{"role":"user","content":"hi"}]}'
//! ```
//!
//! The request body goes through the stack as axum hands it over (the stack reads it once,
//! under its size cap); a success comes back as the provider sent it, with a stream's
//! failure after its first content ended by an error event; every failure becomes the
//! [`Fallback`] answer in OpenAI's error shape. With `XAI_API_KEY` the upstream is xAI,
//! without it the simulated provider's bad day on loopback.
//!
//! This is the embedding in brief. The gateway (`cargo run --release -p ballast-gateway`)
//! is the same thing made a service: providers and fallbacks by config, `/v1/models`,
//! health and readiness, metrics, admin routes, header and body timeouts, masked upstream
//! errors and allow-listed headers.

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use axum::routing::post;
use ballast::classify::{BoxError, Dialect, Outcome};
use ballast::{Config, Fallback, InBandErrors, Preset, StackBuilder, StackService};
use ballast_sim::{Scenario, SimServer, Simulator};
use tower::ServiceExt;

#[derive(Clone)]
struct App {
    stack: StackService<hyper::body::Incoming>,
    upstream: http::Uri,
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .init();
    let mut config = Config::from_env(Preset::XAi)?;
    // Kept alive for as long as the app runs.
    let _simulated = if config.api_key.is_none() {
        let server = SimServer::start(Simulator::new(Scenario::bad_day())).await?;
        config.base_url = format!("{}/v1", server.url()).parse()?;
        Some(server)
    } else {
        None
    };
    let upstream = format!("{}/chat/completions", config.base_url).parse()?;
    let stack = StackBuilder::new(config).build_https()?;
    let app = App {
        stack: stack.service,
        upstream,
    };
    let router = Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        // The stack reads the body under its own cap, answering 413 in OpenAI's shape.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(app);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
    tracing::info!(address = %listener.local_addr()?, "listening");
    axum::serve(listener, router).await?;
    Ok(())
}

async fn chat_completions(State(app): State<App>, body: Body) -> Response {
    let mut request = http::Request::new(body);
    *request.method_mut() = http::Method::POST;
    *request.uri_mut() = app.upstream.clone();
    request.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    let result = app.stack.oneshot(request).await;
    let outcome = Outcome::from_result(&result);
    match result {
        Ok(response) if outcome.is_success() => {
            response.map(|body| Body::new(InBandErrors::new(body, Dialect::Chat)))
        }
        Ok(_) => Fallback::from_outcome(&outcome)
            .into_response()
            .map(Body::from),
        Err(error) => Fallback::from_error(&*error)
            .into_response()
            .map(Body::from),
    }
}
