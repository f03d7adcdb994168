//! The classify layer over real and hand-made HTTP services.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use ballast_classify::{
    BodyTooLarge, BoxError, ClassifiedError, ClassifyLayer, Outcome, OutcomeClass, Provider,
    ProviderError,
};
use ballast_sim::{LimitStep, Scenario, SimServer, Simulator};
use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use tower::{Layer, Service, ServiceBuilder, ServiceExt};

fn respond_with<B>(
    make: impl Fn() -> http::Response<B> + Clone + Send + 'static,
) -> impl Service<
    http::Request<Full<Bytes>>,
    Response = http::Response<B>,
    Error = Infallible,
    Future = impl Send,
> + Clone {
    tower::service_fn(move |_req: http::Request<Full<Bytes>>| {
        let make = make.clone();
        async move { Ok::<_, Infallible>(make()) }
    })
}

fn request() -> http::Request<Full<Bytes>> {
    http::Request::post("http://provider.invalid/v1/chat/completions")
        .body(Full::new(Bytes::from_static(br#"{"model":"m"}"#)))
        .unwrap()
}

#[tokio::test]
async fn failure_stays_ok_with_outcome_and_detail_attached() {
    let inner = respond_with(|| {
        http::Response::builder()
            .status(529)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(
                br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
            )))
            .unwrap()
    });
    let service = ServiceBuilder::new()
        .layer(ClassifyLayer::new(Provider::Anthropic))
        .service(inner);
    let response = service.oneshot(request()).await.unwrap();
    assert_eq!(response.status(), 529);
    let outcome = Outcome::from_response(&response);
    assert_eq!(outcome.class(), OutcomeClass::Overloaded);
    assert!(outcome.is_provider_failure());
    let detail = response.extensions().get::<ProviderError>().unwrap();
    assert_eq!(detail.kind(), Some("overloaded_error"));
    // The body is still there for the caller, buffered once.
    assert!(response.body().bytes().is_some());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(body.starts_with(b"{\"type\":\"error\""));
}

#[tokio::test]
async fn oversized_bodies_fail_typed_with_or_without_content_length() {
    let big = Bytes::from(vec![b'x'; 64 * 1024]);
    for declare in [true, false] {
        let big = big.clone();
        let inner = respond_with(move || {
            let mut builder = http::Response::builder().status(200);
            if declare {
                builder = builder.header("content-length", big.len());
            }
            builder.body(Full::new(big.clone())).unwrap()
        });
        let service = ServiceBuilder::new()
            .layer(ClassifyLayer::new(Provider::XAi).body_limit(1024))
            .service(inner);
        let err = service.oneshot(request()).await.unwrap_err();
        assert_eq!(
            err.class(),
            OutcomeClass::InvalidResponse,
            "declared: {declare}"
        );
        let source = std::error::Error::source(&err).unwrap();
        assert_eq!(source.downcast_ref::<BodyTooLarge>().unwrap().limit(), 1024);
    }
}

#[derive(Debug)]
/// A body that yields `chunks` and then, if `fail`, an error, or else pends for ever.
struct ScriptedBody {
    chunks: Vec<Bytes>,
    then_fail: bool,
}

impl Body for ScriptedBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if !self.chunks.is_empty() {
            let chunk = self.chunks.remove(0);
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        if self.then_fail {
            self.then_fail = false;
            return Poll::Ready(Some(Err(std::io::Error::from(
                std::io::ErrorKind::ConnectionReset,
            ))));
        }
        Poll::Pending
    }
}

#[tokio::test]
async fn body_cut_off_is_a_network_error_with_the_status() {
    let inner = respond_with(|| {
        http::Response::builder()
            .status(200)
            .body(ScriptedBody {
                chunks: vec![Bytes::from_static(b"{\"id\":")],
                then_fail: true,
            })
            .unwrap()
    });
    let err = ClassifyLayer::new(Provider::XAi)
        .layer(inner)
        .oneshot(request())
        .await
        .unwrap_err();
    assert_eq!(err.class(), OutcomeClass::Network);
    assert_eq!(err.outcome().status(), Some(http::StatusCode::OK));
}

#[tokio::test(start_paused = true)]
async fn streams_pass_through_unbuffered_and_hung_bodies_time_out_outside() {
    // A stream that never ends must still come back at its first content: it is not
    // buffered.
    const CONTENT: &[u8] = b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n";
    let inner = respond_with(|| {
        http::Response::builder()
            .status(200)
            .header("content-type", "text/event-stream; charset=utf-8")
            .body(ScriptedBody {
                chunks: vec![Bytes::from_static(CONTENT)],
                then_fail: false,
            })
            .unwrap()
    });
    let response = ClassifyLayer::new(Provider::OpenAi)
        .layer(inner.clone())
        .oneshot(request())
        .await
        .unwrap();
    assert!(response.body().is_streaming());
    assert_eq!(
        Outcome::from_response(&response).class(),
        OutcomeClass::Success
    );
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(first, Bytes::from_static(CONTENT));

    // A stream with no content comes back as a timeout after the first-content timeout
    // (20 s), nothing passed on.
    let silent = respond_with(|| {
        http::Response::builder()
            .status(200)
            .header("content-type", "text/event-stream")
            .body(ScriptedBody {
                chunks: vec![Bytes::from_static(b": keep-alive\n\n")],
                then_fail: false,
            })
            .unwrap()
    });
    let started = tokio::time::Instant::now();
    let err = ClassifyLayer::new(Provider::OpenAi)
        .layer(silent)
        .oneshot(request())
        .await
        .unwrap_err();
    assert_eq!(err.class(), OutcomeClass::Timeout);
    assert_eq!(started.elapsed(), Duration::from_secs(20));

    // A JSON body that stalls half way is buffered, so the per-attempt timeout outside the
    // classifier catches it, and the outcome says timeout.
    let stalled = respond_with(|| {
        http::Response::builder()
            .status(200)
            .body(ScriptedBody {
                chunks: vec![Bytes::from_static(b"{\"id\":")],
                then_fail: false,
            })
            .unwrap()
    });
    let service = ServiceBuilder::new()
        .timeout(Duration::from_secs(90))
        .layer(ClassifyLayer::new(Provider::XAi))
        .service(stalled);
    let err: BoxError = service.oneshot(request()).await.unwrap_err();
    assert_eq!(Outcome::from_error(&*err).class(), OutcomeClass::Timeout);
}

#[tokio::test]
async fn transport_errors_are_network_and_reachable_from_a_box() {
    let failing = tower::service_fn(|_req: http::Request<Full<Bytes>>| async {
        Err::<http::Response<Full<Bytes>>, _>(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        ))
    });
    let service = ServiceBuilder::new()
        .map_err(BoxError::from)
        .layer(ClassifyLayer::new(Provider::XAi))
        .service(failing);
    let err: BoxError = service.oneshot(request()).await.unwrap_err();
    let classified = err.downcast_ref::<ClassifiedError>().unwrap();
    assert_eq!(classified.class(), OutcomeClass::Network);
    assert_eq!(Outcome::from_error(&*err).class(), OutcomeClass::Network);
    // The class, then the transport's own words: what an operator reads.
    assert_eq!(err.to_string(), "network: connection refused");
}

fn http_client() -> hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
> {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http()
}

fn to(url: &str) -> http::Request<Full<Bytes>> {
    let (mut parts, body) = request().into_parts();
    parts.uri = format!("{url}/v1/chat/completions").parse().unwrap();
    http::Request::from_parts(parts, body)
}

#[tokio::test]
async fn over_hyper_util_against_the_loopback_simulator() {
    let scenario = Scenario {
        latency: ballast_sim::Latency::INSTANT,
        // One request a minute: the second, a moment later, is always refused.
        hidden_limit: vec![LimitStep::new(Duration::ZERO, 1)],
        ..Scenario::healthy()
    };
    let server = SimServer::start(Simulator::new(scenario)).await.unwrap();
    let mut service = ServiceBuilder::new()
        .layer(ClassifyLayer::new(Provider::XAi))
        .service(http_client());
    let mut classes = Vec::new();
    for _ in 0..2 {
        let response = service
            .ready()
            .await
            .unwrap()
            .call(to(&server.url()))
            .await
            .unwrap();
        classes.push(Outcome::from_response(&response).class());
    }
    assert_eq!(classes, [OutcomeClass::Success, OutcomeClass::RateLimited]);

    // Nothing listens on the port once the server is gone.
    let url = server.url();
    drop(server);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let err = service
        .ready()
        .await
        .unwrap()
        .call(to(&url))
        .await
        .unwrap_err();
    assert_eq!(err.class(), OutcomeClass::Network, "{err}");
}

#[tokio::test]
async fn a_success_hands_up_where_its_usage_sits() {
    let inner = respond_with(|| {
        http::Response::builder()
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(
                b"  {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":3}}\n",
            )))
            .unwrap()
    });
    let service = ServiceBuilder::new()
        .layer(ClassifyLayer::new(Provider::XAi))
        .service(inner);
    let response = service.oneshot(request()).await.unwrap();
    let body = response.body();
    let span = ballast_classify::InspectBody::usage_span(body).unwrap();
    assert_eq!(span.key(), "usage");
    assert_eq!(
        span.slice(body.bytes().unwrap()),
        Some(&br#"{"prompt_tokens":3}"#[..])
    );
}
