//! A gRPC service whose handler calls the Ballast stack, served by tonic.
//!
//! ```text
//! cargo run --release --example tonic_service            # serve, call it a few times, exit
//! cargo run --release --example tonic_service -- --serve # keep serving on BALLAST_GRPC_LISTEN
//! ```
//!
//! The service is `ballast.demo.Chat/Complete`:
//!
//! ```proto
//! syntax = "proto3";
//! package ballast.demo;
//! service Chat { rpc Complete(CompleteRequest) returns (CompleteReply); }
//! message CompleteRequest { string prompt = 1; }
//! message CompleteReply {
//!   string text = 1; uint32 attempts = 2; double cost_usd = 3;
//!   uint64 input_tokens = 4; uint64 output_tokens = 5;
//! }
//! ```
//!
//! The messages and the routing below are what `tonic-build` would generate from that file,
//! written out by hand so the example needs neither `protoc` nor a build script.
//!
//! A failed call becomes a `Status` the client can act on: the `Fallback`'s user-safe
//! message, `UNAVAILABLE` or `RESOURCE_EXHAUSTED` with a `retry-after` entry in the trailers
//! when the breaker is open or the budget is spent. The upstream is the simulated bad day on
//! loopback (time x60) unless `XAI_API_KEY` is set.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use ballast::classify::BoxError;
use ballast::{ChatClient, ChatError, Config, Preset, StackBuilder};
use ballast_sim::{Scenario, SimServer, Simulator};
use http::uri::PathAndQuery;
use tonic::server::NamedService;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Endpoint, Server};
use tonic::{Code, Status};
use tonic_prost::ProstCodec;

/// Simulated seconds per real second for the simulated upstream.
const TIME_SCALE: f64 = 60.0;
const COMPLETE: &str = "/ballast.demo.Chat/Complete";

/// `CompleteRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CompleteRequest {
    /// The prompt.
    #[prost(string, tag = "1")]
    pub prompt: String,
}

/// `CompleteReply`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CompleteReply {
    /// The model's text.
    #[prost(string, tag = "1")]
    pub text: String,
    /// Calls it took upstream.
    #[prost(uint32, tag = "2")]
    pub attempts: u32,
    /// What the successful call cost.
    #[prost(double, tag = "3")]
    pub cost_usd: f64,
    /// Prompt tokens.
    #[prost(uint64, tag = "4")]
    pub input_tokens: u64,
    /// Completion tokens.
    #[prost(uint64, tag = "5")]
    pub output_tokens: u64,
}

/// The `ballast.demo.Chat` service over a Ballast `ChatClient`.
#[derive(Debug, Clone)]
struct ChatService {
    chat: ChatClient<hyper::body::Incoming>,
}

impl NamedService for ChatService {
    const NAME: &'static str = "ballast.demo.Chat";
}

impl tower::Service<http::Request<tonic::body::Body>> for ChatService {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let chat = self.chat.clone();
        Box::pin(async move {
            if request.uri().path() != COMPLETE {
                return Ok(Status::unimplemented("no such method").into_http());
            }
            let handler = tower::service_fn(move |call: tonic::Request<CompleteRequest>| {
                let chat = chat.clone();
                async move { complete(&chat, call.into_inner()).await }
            });
            let mut grpc = tonic::server::Grpc::new(ProstCodec::default());
            Ok(grpc.unary(handler, request).await)
        })
    }
}

/// The handler: one chat call through the whole stack.
async fn complete(
    chat: &ChatClient<hyper::body::Incoming>,
    request: CompleteRequest,
) -> Result<tonic::Response<CompleteReply>, Status> {
    let reply = chat.chat(&request.prompt).await.map_err(status_of)?;
    let usage = reply.usage.unwrap_or_default();
    Ok(tonic::Response::new(CompleteReply {
        text: reply.text,
        attempts: reply.attempts,
        cost_usd: reply.cost.as_f64(),
        input_tokens: usage.input_tokens,
        output_tokens: usage.output_tokens,
    }))
}

/// A Ballast failure as a gRPC status: the fallback's safe message, the code a gRPC client
/// retries on, and when to come back.
fn status_of(error: ChatError) -> Status {
    let fallback = error.fallback();
    let code = match fallback.status {
        http::StatusCode::TOO_MANY_REQUESTS => Code::ResourceExhausted,
        http::StatusCode::SERVICE_UNAVAILABLE => Code::Unavailable,
        http::StatusCode::GATEWAY_TIMEOUT => Code::DeadlineExceeded,
        status if status.is_client_error() => Code::InvalidArgument,
        _ => Code::Internal,
    };
    let mut status = Status::new(code, fallback.message);
    if let Some(after) = fallback.retry_after {
        let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
        status
            .metadata_mut()
            .insert("retry-after", secs.max(1).into());
    }
    status
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let serve = std::env::args().any(|a| a == "--serve");
    let mut config = Config::from_env(Preset::XAi)?;
    let (scale, _simulated) = if config.api_key.is_none() {
        let scenario = Scenario {
            time_scale: TIME_SCALE,
            ..Scenario::bad_day()
        };
        let server = SimServer::start(Simulator::new(scenario)).await?;
        config.base_url = format!("{}/v1", server.url()).parse()?;
        (TIME_SCALE, Some(server))
    } else {
        (1.0, None)
    };
    let stack = StackBuilder::new(config.clone())
        .time_scale(scale)
        .build_https()?;
    let service = ChatService {
        chat: ChatClient::new(stack.service, &config, config.preset.default_model()),
    };

    let listen: SocketAddr = match std::env::var("BALLAST_GRPC_LISTEN") {
        Ok(value) => value.trim().parse().map_err(|_| {
            format!(
                "BALLAST_GRPC_LISTEN: expected an address such as 127.0.0.1:50051, got {value:?}"
            )
        })?,
        Err(_) if serve => SocketAddr::from(([127, 0, 0, 1], 50051)),
        Err(_) => SocketAddr::from(([127, 0, 0, 1], 0)),
    };
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let address = listener.local_addr()?;
    println!(
        "ballast.demo.Chat on {address}, upstream {}",
        config.base_url
    );
    let server = Server::builder()
        .add_service(service)
        .serve_with_incoming(TcpIncoming::from(listener));
    if serve {
        server.await?;
        return Ok(());
    }
    let server = tokio::spawn(server);

    // A client, as another service would call it.
    let channel = Endpoint::from_shared(format!("http://{address}"))?
        .connect()
        .await?;
    let mut client = tonic::client::Grpc::new(channel);
    for n in 0..8 {
        client.ready().await?;
        let request = tonic::Request::new(CompleteRequest {
            prompt: format!("Name one Rust tower layer (call {n})."),
        });
        let answer: Result<tonic::Response<CompleteReply>, Status> = client
            .unary(
                request,
                PathAndQuery::from_static(COMPLETE),
                ProstCodec::default(),
            )
            .await;
        match answer {
            Ok(reply) => {
                let reply = reply.into_inner();
                println!(
                    "  #{n} ok: {} attempt(s), ${:.6}, {} tokens in, {} out: {:.48}...",
                    reply.attempts,
                    reply.cost_usd,
                    reply.input_tokens,
                    reply.output_tokens,
                    reply.text
                );
            }
            Err(status) => println!(
                "  #{n} {:?}: {} (retry-after: {:?})",
                status.code(),
                status.message(),
                status.metadata().get("retry-after")
            ),
        }
    }
    server.abort();
    Ok(())
}
