//! The facade takes any request body, reads it once, and refuses what is over its cap.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use ballast::classify::{
    Outcome, OutcomeClass, RequestBody, RequestFacts, RequestTooLarge, TokenEstimator,
};
use ballast::{Config, Fallback, Preset, Stack, StackBuilder};
use ballast_sim::{Scenario, Simulator};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full, StreamBody};
use tower::{Service, ServiceExt};

const URL: &str = "http://api.x.ai/v1/chat/completions";
const BODY: &str = r#"{"model":"grok-code-fast-1","messages":[{"role":"user","content":"hi"}]}"#;
/// `BODY` as the provider receives it: with the default cap (`MAX_TOKENS_DEFAULT`, 500).
const SENT: &str =
    r#"{"max_tokens":500,"model":"grok-code-fast-1","messages":[{"role":"user","content":"hi"}]}"#;

/// What the provider was sent: the body, and the facts the layers saw.
type Seen = Arc<Mutex<Vec<(Bytes, RequestFacts)>>>;

/// The simulated provider, recording what reaches it.
fn provider(
    sim: Simulator,
    seen: Seen,
) -> impl Service<
    http::Request<RequestBody>,
    Response = http::Response<Full<Bytes>>,
    Error = ballast::classify::BoxError,
    Future = impl Send,
> + Clone
+ Send
+ Sync
+ 'static {
    tower::service_fn(move |request: http::Request<RequestBody>| {
        let facts = request.extensions().get::<RequestFacts>().cloned();
        seen.lock()
            .unwrap()
            .push((request.body().bytes().clone(), facts.unwrap_or_default()));
        sim.clone().oneshot(request)
    })
}

fn fast() -> Scenario {
    Scenario {
        time_scale: 10_000.0,
        ..Scenario::healthy()
    }
}

fn stack(sim: &Simulator, seen: &Seen) -> Stack<Full<Bytes>> {
    StackBuilder::new(Config::new(Preset::XAi))
        .no_throttle()
        .build(provider(sim.clone(), Arc::clone(seen)))
}

/// Sends `request` through a fresh stack; checks the call was served, priced at its model,
/// keyed by it, and sent as `SENT`.
async fn served<B>(request: http::Request<B>)
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: std::fmt::Display,
{
    let sim = Simulator::new(fast());
    let seen = Seen::default();
    let stack = stack(&sim, &seen);
    let response = stack.service.clone().oneshot(request).await.unwrap();
    assert!(Outcome::from_response(&response).is_success());
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    let (body, facts) = &seen[0];
    assert_eq!(std::str::from_utf8(body).unwrap(), SENT);
    assert_eq!(facts.model(), Some("grok-code-fast-1"));
    assert_eq!(facts.output_cap(), Some(500));
    assert_eq!(facts.body_len(), SENT.len() as u64);
    assert_eq!(facts.prompt_tokens(), (BODY.len() as u64).div_ceil(2));
    assert!(
        stack.breaker.get("api.x.ai", "grok-code-fast-1").is_some(),
        "the breaker keyed by the model: {:?}",
        stack.breaker.snapshot()
    );
    let ledger = sim.ledger();
    assert_eq!(ledger.entries()[0].model, "grok-code-fast-1");
    assert_eq!(
        stack.spend.total(),
        ballast::cost::Usd::from_xai_ticks(ledger.billed_ticks()),
        "priced as the provider billed it"
    );
}

fn post<B>(body: B) -> http::Request<B> {
    http::Request::post(URL)
        .header("content-type", "application/json")
        .body(body)
        .unwrap()
}

#[tokio::test]
async fn a_string_body() {
    served(post(String::from(BODY))).await;
}

#[tokio::test]
async fn a_full_body() {
    served(post(Full::new(Bytes::from_static(BODY.as_bytes())))).await;
}

#[tokio::test]
async fn a_box_body_in_many_frames() {
    let frames: Vec<Result<Frame<Bytes>, ballast::classify::BoxError>> = BODY
        .as_bytes()
        .chunks(7)
        .map(|chunk| Ok(Frame::data(Bytes::copy_from_slice(chunk))))
        .collect();
    let body = StreamBody::new(futures::stream::iter(frames)).boxed();
    served(post(body)).await;
    let unsync = Full::new(Bytes::from_static(BODY.as_bytes()))
        .map_err(|never| match never {})
        .boxed_unsync();
    served(post(unsync)).await;
}

#[tokio::test]
async fn an_axum_body() {
    served(post(axum::body::Body::from(BODY))).await;
}

/// hyper's `Incoming`, from a real loopback server whose handler is the stack.
#[tokio::test]
async fn a_hyper_incoming_body_through_a_loopback_server() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sim = Simulator::new(fast());
    let seen = Seen::default();
    let stack = stack(&sim, &seen);
    let service = stack.service.clone();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let handler =
            hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                let service = service.clone();
                async move {
                    // A request for the provider: the caller's body, the provider's address.
                    let (mut parts, body) = request.into_parts();
                    parts.uri = URL.parse().unwrap();
                    let answer = service
                        .oneshot(http::Request::from_parts(parts, body))
                        .await;
                    let status = match &answer {
                        Ok(response) => response.status(),
                        Err(error) => Fallback::from_error(&**error).status,
                    };
                    Ok::<_, Infallible>(
                        http::Response::builder()
                            .status(status)
                            .body(Full::new(Bytes::new()))
                            .unwrap(),
                    )
                }
            });
        hyper::server::conn::http1::Builder::new()
            .serve_connection(hyper_util::rt::TokioIo::new(stream), handler)
            .await
            .unwrap();
    });
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<StreamBody<
        futures::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>,
    >>();
    // Sent in chunks, so the server reads it in more than one frame.
    let frames: Vec<Result<Frame<Bytes>, Infallible>> = BODY
        .as_bytes()
        .chunks(16)
        .map(|chunk| Ok(Frame::data(Bytes::copy_from_slice(chunk))))
        .collect();
    let request = http::Request::post(format!("http://{addr}/v1/chat/completions"))
        .header("connection", "close")
        .body(StreamBody::new(futures::stream::iter(frames)))
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    drop(response);
    server.await.unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(std::str::from_utf8(&seen[0].0).unwrap(), SENT);
    assert_eq!(seen[0].1.model(), Some("grok-code-fast-1"));
    assert_eq!(sim.ledger().len(), 1);
}

/// A prompt bound that counts how often it runs.
#[derive(Clone, Default)]
struct Counting(Arc<AtomicUsize>);

impl TokenEstimator for Counting {
    fn prompt_tokens(&self, body: &[u8]) -> u64 {
        self.0.fetch_add(1, Ordering::SeqCst);
        body.len() as u64
    }
}

/// One read per call, however many attempts and layers: three attempts (two 503s first),
/// one pass over the body.
#[tokio::test(start_paused = true)]
async fn the_request_is_read_once_per_call() {
    let failures = Arc::new(AtomicUsize::new(0));
    let sim = Simulator::new(fast());
    let counting = Counting::default();
    let attempts = Arc::clone(&failures);
    let provider = tower::service_fn(move |request: http::Request<RequestBody>| {
        let sim = sim.clone();
        let n = attempts.fetch_add(1, Ordering::SeqCst);
        async move {
            if n < 2 {
                return Ok(http::Response::builder()
                    .status(503)
                    .body(Full::new(Bytes::from_static(b"{}")))
                    .unwrap());
            }
            sim.oneshot(request).await
        }
    });
    let stack = StackBuilder::new(Config::new(Preset::XAi))
        .no_throttle()
        .estimator(counting.clone())
        .seed(7)
        .build(provider);
    let response = stack
        .service
        .clone()
        .oneshot(post(String::from(BODY)))
        .await
        .unwrap();
    assert!(Outcome::from_response(&response).is_success());
    assert_eq!(failures.load(Ordering::SeqCst), 3, "three attempts");
    assert_eq!(counting.0.load(Ordering::SeqCst), 1, "one read");
}

/// Over the cap: the typed error, 413 in the OpenAI error shape, and nothing sent. A body
/// that declares a length over the cap is refused before a byte of it is read, even if it
/// would never end.
#[tokio::test(start_paused = true)]
async fn over_the_cap_nothing_reaches_the_provider() {
    let sim = Simulator::new(fast());
    let seen = Seen::default();
    let stack = StackBuilder::new(Config::new(Preset::XAi))
        .no_throttle()
        .max_request_bytes(64)
        .build(provider(sim.clone(), Arc::clone(&seen)));
    let long = format!(
        r#"{{"model":"grok-code-fast-1","messages":"{}"}}"#,
        "x".repeat(100)
    );
    for error in [
        stack.service.clone().oneshot(post(long)).await.unwrap_err(),
        stack
            .service
            .clone()
            .oneshot(post(Endless))
            .await
            .unwrap_err(),
    ] {
        let outcome = Outcome::from_error(&*error);
        assert_eq!(outcome.class(), OutcomeClass::BadRequest);
        assert_eq!(outcome.status(), Some(http::StatusCode::PAYLOAD_TOO_LARGE));
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&*error);
        let mut limit = None;
        while let Some(err) = source {
            if let Some(too_large) = err.downcast_ref::<RequestTooLarge>() {
                limit = Some(too_large.limit());
            }
            source = err.source();
        }
        assert_eq!(limit, Some(64));
        assert!(ballast::classify::never_sent(&*error));
        let fallback = Fallback::from_error(&*error);
        let response = fallback.into_response();
        assert_eq!(response.status(), 413);
        let body: serde_json::Value = serde_json::from_str(response.body()).unwrap();
        assert_eq!(body["error"]["type"], "bad_request");
        assert_eq!(body["error"]["message"], "The request is too large.");
    }
    assert!(seen.lock().unwrap().is_empty());
    assert!(sim.ledger().is_empty());
    assert_eq!(stack.spend.total(), ballast::cost::Usd::ZERO);
}

/// A body that says it is a petabyte long, sends a byte, and never ends.
struct Endless;

impl Body for Endless {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Pending
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(1_000_000_000_000_000)
    }
}

/// A caller's body that fails midway: a typed error, nothing sent.
#[tokio::test(start_paused = true)]
async fn a_body_that_fails_is_refused_and_nothing_is_sent() {
    let sim = Simulator::new(fast());
    let seen = Seen::default();
    let stack = stack(&sim, &seen);
    let frames: Vec<Result<Frame<Bytes>, std::io::Error>> = vec![
        Ok(Frame::data(Bytes::from_static(b"{\"model\":"))),
        Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
    ];
    let error = stack
        .service
        .clone()
        .oneshot(post(StreamBody::new(futures::stream::iter(frames))))
        .await
        .unwrap_err();
    assert_eq!(
        Outcome::from_error(&*error).class(),
        OutcomeClass::BadRequest
    );
    assert!(ballast::classify::never_sent(&*error));
    assert!(
        error
            .to_string()
            .contains("the request body could not be read"),
        "{error}"
    );
    assert!(sim.ledger().is_empty());
}

/// A body that sends one chunk and then nothing (a client that stalls mid-upload).
struct Stalled(bool);

impl Body for Stalled {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if std::mem::replace(&mut self.0, true) {
            return Poll::Pending;
        }
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"{\"model\":")))))
    }
}

/// After a dropped call: the reservation (checked by the caller), and here the throttle's
/// line, are empty, and the next call is served.
async fn serves_the_next_call(stack: &Stack<Full<Bytes>>, sim: &Simulator) {
    let throttle = stack.throttle.as_ref().expect("the xAI preset throttles");
    assert_eq!(throttle.queued(), 0);
    let response = stack
        .service
        .clone()
        .oneshot(post(String::from(BODY)))
        .await
        .unwrap();
    assert!(Outcome::from_response(&response).is_success());
    assert_eq!(sim.ledger().len(), 1);
}

/// Dropped while its body is still arriving: nothing sent, nothing reserved, no turn
/// held (the throttle's line is empty), nothing spent, and the stack serves the next call.
#[tokio::test(start_paused = true)]
async fn a_call_dropped_while_its_body_arrives_holds_nothing() {
    let sim = Simulator::new(fast());
    let seen = Seen::default();
    let stack =
        StackBuilder::new(Config::new(Preset::XAi)).build(provider(sim.clone(), Arc::clone(&seen)));
    let call = stack.service.clone().oneshot(post(Stalled(false)));
    assert!(
        tokio::time::timeout(std::time::Duration::from_secs(5), call)
            .await
            .is_err(),
        "the body never ends"
    );
    assert!(seen.lock().unwrap().is_empty());
    assert!(sim.ledger().is_empty());
    let readout = stack.budget.readout(None).await.unwrap();
    assert_eq!(
        (readout.reserved, readout.spent),
        (ballast::cost::Usd::ZERO, ballast::cost::Usd::ZERO)
    );
    serves_the_next_call(&stack, &sim).await;
}

/// A body in memory is read in the read layer's `call`, which calls the layers below at
/// once, down to the client's `call`: a call dropped before its first poll is one they saw
/// begin and end. The provider got nothing here (the simulator, like an HTTP client, sends
/// when its future is polled), but a client may send in `call` (tower's `Buffer` does), so
/// the budget charges the attempt's worst case, as for any attempt dropped once sent, and
/// the cost logger counts the same. Nothing stays reserved, no turn is held, and the next
/// call is served.
#[tokio::test(start_paused = true)]
async fn a_call_dropped_before_its_first_poll_is_charged_and_holds_nothing() {
    let sim = Simulator::new(fast());
    let seen = Seen::default();
    let stack =
        StackBuilder::new(Config::new(Preset::XAi)).build(provider(sim.clone(), Arc::clone(&seen)));
    let mut service = stack.service.clone();
    let ready = ServiceExt::<http::Request<String>>::ready(&mut service)
        .await
        .unwrap();
    let call = ready.call(post(String::from(BODY)));
    drop(call);
    assert_eq!(seen.lock().unwrap().len(), 1, "the client's call was made");
    assert!(sim.ledger().is_empty(), "its future was never polled");
    let readout = stack.budget.readout(None).await.unwrap();
    // The worst case: the prompt bound (72 bytes, 36 tokens) at $0.20 and the default cap
    // (500 tokens) at $1.50 a million.
    let worst = ballast::cost::Usd::from_picos(36 * 200_000 + 500 * 1_500_000);
    assert_eq!(
        (readout.reserved, readout.spent),
        (ballast::cost::Usd::ZERO, worst)
    );
    assert_eq!(stack.spend.total(), worst);
    serves_the_next_call(&stack, &sim).await;
}
