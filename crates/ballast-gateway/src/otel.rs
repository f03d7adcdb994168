//! [`Otel`]: the `ballast::gen_ai` spans (one per call, one per attempt, with the GenAI
//! semantic conventions' attributes) exported over OTLP, HTTP with JSON, when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::runtime::Tokio;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use tracing_subscriber::Layer;
use tracing_subscriber::registry::LookupSpan;

use ballast::classify::BoxError;

/// An OTLP span exporter and its tracer provider; [`shutdown`](Self::shutdown) sends what
/// is still buffered.
#[derive(Debug)]
pub struct Otel {
    provider: SdkTracerProvider,
}

impl Otel {
    /// An exporter to `endpoint` (the collector's base URL: spans go to
    /// `{endpoint}/v1/traces`), batching on the current tokio runtime (a multi-threaded
    /// one: the flush at shutdown waits on it).
    pub fn new(endpoint: &str) -> Result<Self, BoxError> {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpJson)
            .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
            .build()?;
        let processor = BatchSpanProcessor::builder(exporter, Tokio).build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_resource(
                Resource::builder()
                    .with_service_name("ballast-gateway")
                    .build(),
            )
            .build();
        Ok(Self { provider })
    }

    /// The exporter `OTEL_EXPORTER_OTLP_ENDPOINT` names, if it is set.
    pub fn from_env() -> Result<Option<Self>, BoxError> {
        match std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT") {
            Ok(endpoint) if !endpoint.trim().is_empty() => Self::new(endpoint.trim()).map(Some),
            _ => Ok(None),
        }
    }

    /// A `tracing` layer that hands the `ballast::gen_ai` spans (and nothing else) to the
    /// exporter.
    pub fn layer<S>(&self) -> impl Layer<S> + use<S>
    where
        S: tracing::Subscriber + for<'span> LookupSpan<'span>,
    {
        let tracer = self.provider.tracer("ballast");
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
                meta.target() == "ballast::gen_ai"
            }))
    }

    /// Sends the spans still buffered and stops the exporter. Blocks: call it from a
    /// blocking thread (`tokio::task::spawn_blocking`) of the runtime it batches on.
    pub fn shutdown(self) -> Result<(), BoxError> {
        self.provider.force_flush()?;
        self.provider.shutdown()?;
        Ok(())
    }
}
