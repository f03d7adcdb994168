//! [`Otel`] in a build without the `otel` feature: no exporter; an endpoint set anyway is
//! an error, not a silent nothing.

use ballast::classify::BoxError;
use tracing_subscriber::Layer;

/// No exporter: this build has no OpenTelemetry (the `otel` feature is off).
#[derive(Debug)]
pub struct Otel(());

impl Otel {
    /// An error when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (this build cannot export).
    pub fn from_env() -> Result<Option<Self>, BoxError> {
        match std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT") {
            Some(_) => Err("OTEL_EXPORTER_OTLP_ENDPOINT is set, but this gateway was built without its otel feature".into()),
            None => Ok(None),
        }
    }

    /// A layer that does nothing.
    pub fn layer<S: tracing::Subscriber>(&self) -> impl Layer<S> + use<S> {
        tracing_subscriber::layer::Identity::new()
    }

    /// Nothing to send.
    pub fn shutdown(self) -> Result<(), BoxError> {
        Ok(())
    }
}
