//! The gateway end to end: its routes over a simulated provider on loopback (the provider's
//! clock 600 times faster: assertions are about what happened, never how long it took), and
//! its limits under tokio's paused clock.

use std::ffi::OsString;
use std::time::Duration;

use axum::body::Body;
use ballast_gateway::{Gateway, GatewayConfig, Settings};
use ballast_sim::SimServer;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

const KEY: &str = "xai-gateway-test-key";
const ADMIN: &str = "admin-token-0123456789";

#[allow(dead_code)]
mod common;

use common::{scenario, settings, simulator};

/// A gateway over `vars`, served on a free loopback port until the test ends.
async fn serving(vars: &[(&str, &str)]) -> (GatewayConfig, std::net::SocketAddr) {
    let config = GatewayConfig::from_settings(&settings(vars)).unwrap();
    let gateway = Gateway::new(&config, None).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(ballast_gateway::serve(
        listener,
        gateway.router(),
        config.header_timeout,
        config.max_connections,
        std::future::pending(),
    ));
    (config, address)
}

async fn call(gateway: &Gateway, request: http::Request<Body>) -> (http::StatusCode, Value) {
    let answer = gateway.router().oneshot(request).await.unwrap();
    let status = answer.status();
    let bytes = answer.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, json)
}

/// `/v1/models` as (id, owned_by) pairs.
async fn listed_models(gateway: &Gateway) -> Vec<(String, String)> {
    let (_, models) = call(
        gateway,
        http::Request::get("/v1/models")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["id"].as_str().unwrap().to_owned(),
                m["owned_by"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// A gateway over a simulated xAI (the test key, the admin token) with `more` settings, and
/// the simulator and its server (kept alive by the caller).
async fn xai_gateway(more: &[(&str, &str)]) -> (ballast_sim::Simulator, SimServer, Gateway) {
    let price = ballast_sim::Price::GROK_CODE_FAST_1;
    gateway_over(ballast::Preset::XAi, KEY, price, more).await
}

/// A gateway whose provider is `preset` (its key `key`, the admin token, `more` settings),
/// over a healthy simulator of that provider's API that wants `key` and bills at `price`;
/// the simulator and its server (kept alive by the caller).
async fn gateway_over(
    preset: ballast::Preset,
    key: &str,
    price: ballast_sim::Price,
    more: &[(&str, &str)],
) -> (ballast_sim::Simulator, SimServer, Gateway) {
    let (flavor, version) = match preset {
        ballast::Preset::Anthropic => (ballast_sim::Flavor::Anthropic, "v1"),
        ballast::Preset::Gemini => (ballast_sim::Flavor::Gemini, "v1beta"),
        ballast::Preset::OpenAi => (ballast_sim::Flavor::OpenAi, "v1"),
        _ => (ballast_sim::Flavor::XAi, "v1"),
    };
    let sim = ballast_sim::Simulator::new(ballast_sim::Scenario {
        flavor,
        price,
        ..scenario(key)
    });
    let server = SimServer::start(sim.clone()).await.unwrap();
    let base = format!("{}/{version}", server.url());
    let mut vars = vec![
        ("BALLAST_PROVIDER", preset.name()),
        (preset.key_var(), key),
        (preset.base_url_var(), base.as_str()),
        ("BALLAST_ADMIN_TOKEN", ADMIN),
    ];
    vars.extend_from_slice(more);
    let config = GatewayConfig::from_settings(&settings(&vars)).unwrap();
    let gateway = Gateway::new(&config, None).unwrap();
    (sim, server, gateway)
}

/// A gateway over a simulated OpenAI billing at `price`, with the answer cache on (ten
/// minutes).
async fn cached_openai_gateway(
    price: ballast_sim::Price,
) -> (ballast_sim::Simulator, SimServer, Gateway) {
    let cache = [("BALLAST_CACHE_TTL", "600")];
    gateway_over(
        ballast::Preset::OpenAi,
        "sk-gateway-test-key",
        price,
        &cache,
    )
    .await
}

/// The value of `answer`'s header `name`, as text.
fn header(answer: &http::Response<Body>, name: &str) -> Option<String> {
    answer
        .headers()
        .get(name)
        .map(|value| value.to_str().unwrap().to_owned())
}

fn chat() -> http::Request<Body> {
    http::Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .header("authorization", "Bearer sk-caller-key-the-gateway-drops")
        .body(Body::from(
            r#"{"model":"grok-code-fast-1","messages":[{"role":"user","content":"hi"}],"max_tokens":20}"#,
        ))
        .unwrap()
}

fn admin(method: &str, path: &str, token: Option<&str>, body: &str) -> http::Request<Body> {
    let mut request = http::Request::builder().method(method).uri(path);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    request.body(Body::from(body.to_owned())).unwrap()
}

/// A call is served through the gateway with its own key (the caller's is dropped), the
/// budget read-out equals the provider's bill, and `/v1/models` lists the targets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_is_served_and_the_budget_equals_the_bill() {
    let sim = simulator(KEY);
    let server = SimServer::start(sim.clone()).await.unwrap();
    let base = format!("{}/v1", server.url());
    let config = GatewayConfig::from_settings(&settings(&[
        ("XAI_API_KEY", KEY),
        ("XAI_BASE_URL", &base),
        ("BALLAST_ADMIN_TOKEN", ADMIN),
    ]))
    .unwrap();
    let gateway = Gateway::new(&config, None).unwrap();

    let (status, answer) = call(&gateway, chat()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["object"], "chat.completion");
    let ledger = sim.ledger();
    assert_eq!(ledger.len(), 1, "one provider call");

    let (status, budget) = call(&gateway, admin("GET", "/admin/budget", Some(ADMIN), "")).await;
    assert_eq!(status, 200);
    assert_eq!(
        budget["budget"]["spent_usd"].as_f64(),
        Some(ledger.billed_usd())
    );
    assert_eq!(budget["budget"]["reserved_usd"].as_f64(), Some(0.0));
    assert_eq!(budget["spent_out"], false);

    let (status, models) = call(
        &gateway,
        http::Request::get("/v1/models")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    // OpenAI's list and Anthropic's at once.
    assert_eq!(
        models,
        serde_json::json!({"object": "list", "data": [
            {"id": "grok-code-fast-1", "object": "model", "created": 0, "owned_by": "xai",
             "type": "model", "display_name": "grok-code-fast-1",
             "created_at": "1970-01-01T00:00:00Z"},
        ], "has_more": false, "first_id": "grok-code-fast-1", "last_id": "grok-code-fast-1"})
    );
    // One model (the SDKs' `models.retrieve`): as the list has it; one the gateway does not
    // name, 404 in OpenAI's shape.
    let retrieve = |id: &str| {
        http::Request::get(format!("/v1/models/{id}"))
            .body(Body::empty())
            .unwrap()
    };
    let (status, model) = call(&gateway, retrieve("grok-code-fast-1")).await;
    assert_eq!(status, 200);
    assert_eq!(model, models["data"][0]);
    let (status, missing) = call(&gateway, retrieve("x-ai/grok-4")).await;
    assert_eq!(status, 404);
    assert_eq!(missing["error"]["type"], "not_found", "{missing}");

    // One stack, no route: its target names the answer; one call, at what it billed.
    let answer = gateway.router().oneshot(chat()).await.unwrap();
    let header = |name: &str| answer.headers().get(name).unwrap().to_str().unwrap();
    assert_eq!(
        (header("x-ballast-target"), header("x-ballast-calls")),
        ("xai", "1")
    );
    let billed = ballast::cost::Usd::from_xai_ticks(sim.ledger().entries()[1].billed_ticks);
    assert_eq!(header("x-ballast-cost-usd").parse(), Ok(billed));
}

/// With fallbacks, `/v1/models` lists every target in order, each with its model.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_lists_the_fallback_chain() {
    let config = GatewayConfig::from_settings(&settings(&[
        ("XAI_API_KEY", KEY),
        ("OPENAI_API_KEY", "sk-fallback-key"),
        ("ANTHROPIC_API_KEY", "sk-ant-fallback-key"),
        ("BALLAST_FALLBACKS", "openai:gpt-4o-mini, anthropic"),
    ]))
    .unwrap();
    let gateway = Gateway::new(&config, None).unwrap();
    let listed = listed_models(&gateway).await;
    let listed: Vec<(&str, &str)> = listed
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    assert_eq!(
        listed,
        [
            ("grok-code-fast-1", "xai"),
            ("gpt-4o-mini", "openai"),
            ("claude-sonnet-4-5", "anthropic"),
        ]
    );
}

/// A 401 latches the key's breaker; the admin route shows it and resets it, so the next
/// call (with the key fixed upstream... here, the same wrong key: it latches again) is sent
/// rather than refused. Without the token, or with another, the admin routes answer 401;
/// without a configured token they do not exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_routes_show_and_reset_a_latched_breaker() {
    let sim = simulator("xai-the-key-the-provider-wants");
    let server = SimServer::start(sim.clone()).await.unwrap();
    let base = format!("{}/v1", server.url());
    let config = GatewayConfig::from_settings(&settings(&[
        ("XAI_API_KEY", KEY),
        ("XAI_BASE_URL", &base),
        ("BALLAST_ADMIN_TOKEN", ADMIN),
    ]))
    .unwrap();
    let gateway = Gateway::new(&config, None).unwrap();

    let (status, _) = call(&gateway, chat()).await;
    assert_eq!(
        status, 503,
        "a key the provider refuses is not the caller's to see"
    );
    assert_eq!(sim.ledger().len(), 1);
    // Latched: the next call is refused without reaching the provider.
    let (status, _) = call(&gateway, chat()).await;
    assert_eq!(status, 503);
    assert_eq!(sim.ledger().len(), 1);

    // Its only model latched: the gateway cannot serve, and says so.
    let (status, ready) = call(
        &gateway,
        http::Request::get("/readyz").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, 503);
    assert_eq!(ready["status"], "unavailable");

    for token in [None, Some("admin-token-wrong-one-00")] {
        let (status, answer) = call(&gateway, admin("GET", "/admin/breakers", token, "")).await;
        assert_eq!(status, 401, "{token:?}");
        assert_eq!(answer["error"]["type"], "unauthorized");
    }
    let (status, breakers) = call(&gateway, admin("GET", "/admin/breakers", Some(ADMIN), "")).await;
    assert_eq!(status, 200);
    let breaker = &breakers["breakers"][0];
    assert_eq!(breaker["state"], "latched", "{breakers}");
    assert_eq!(breaker["model"], "grok-code-fast-1");
    let host = breaker["host"].as_str().unwrap().to_owned();

    let (status, answer) = call(
        &gateway,
        admin(
            "POST",
            "/admin/breakers/reset",
            Some(ADMIN),
            &format!(r#"{{"host":"{host}","model":"grok-code-fast-1"}}"#),
        ),
    )
    .await;
    assert_eq!(
        (status, &answer),
        (http::StatusCode::OK, &serde_json::json!({"reset": 1}))
    );
    let (_, breakers) = call(&gateway, admin("GET", "/admin/breakers", Some(ADMIN), "")).await;
    assert_eq!(breakers["breakers"][0]["state"], "closed");
    let (status, _) = call(
        &gateway,
        http::Request::get("/readyz").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, 200, "ready again once reset");
    // Reset, the next call is sent again.
    let _ = call(&gateway, chat()).await;
    assert_eq!(sim.ledger().len(), 2);

    // Half a key is a bad request.
    let (status, _) = call(
        &gateway,
        admin(
            "POST",
            "/admin/breakers/reset",
            Some(ADMIN),
            r#"{"host":"x"}"#,
        ),
    )
    .await;
    assert_eq!(status, 400);

    let config = GatewayConfig::from_settings(&settings(&[("XAI_BASE_URL", &base)])).unwrap();
    let without = Gateway::new(&config, None).unwrap();
    let (status, answer) = call(&without, admin("GET", "/admin/breakers", Some(ADMIN), "")).await;
    assert_eq!(status, 404);
    assert_eq!(answer["error"]["type"], "not_found");
}

/// A body still arriving after the body timeout is answered 408 in OpenAI's shape, and
/// nothing reaches the provider (its address here accepts nothing).
#[tokio::test(start_paused = true)]
async fn a_body_that_trickles_past_its_timeout_is_answered_408() {
    let config = GatewayConfig::from_settings(&settings(&[
        ("XAI_API_KEY", KEY),
        ("XAI_BASE_URL", "http://127.0.0.1:9/v1"),
        ("BALLAST_BODY_TIMEOUT", "5"),
    ]))
    .unwrap();
    let gateway = Gateway::new(&config, None).unwrap();
    let (sender, receiver) =
        tokio::sync::mpsc::channel::<Result<http_body::Frame<bytes::Bytes>, std::io::Error>>(1);
    let body = http_body_util::StreamBody::new(tokio_stream_from(receiver));
    let request = http::Request::post("/v1/chat/completions")
        .body(Body::new(body))
        .unwrap();
    sender
        .send(Ok(http_body::Frame::data(bytes::Bytes::from_static(
            b"{\"model\":",
        ))))
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    let (status, answer) = call(&gateway, request).await;
    assert_eq!(status, 408, "{answer}");
    assert_eq!(answer["error"]["type"], "request_timeout");
    assert_eq!(
        answer["error"]["message"],
        "The request body did not arrive within 5 s."
    );
    assert_eq!(started.elapsed(), Duration::from_secs(5));
    drop(sender);
}

/// The receiving half of a channel as a stream (what `tokio-stream` would give).
fn tokio_stream_from<T>(
    mut receiver: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> {
    futures::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}

/// A client that sends half its headers and stops is closed once the header timeout
/// passes, not held.
#[tokio::test(start_paused = true)]
async fn a_slowloris_connection_is_closed_after_the_header_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_, address) = serving(&[
        ("XAI_API_KEY", KEY),
        ("XAI_BASE_URL", "http://127.0.0.1:9/v1"),
        ("BALLAST_HEADER_TIMEOUT", "3"),
    ])
    .await;
    let mut client = tokio::net::TcpStream::connect(address).await.unwrap();
    client
        .write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(60), client.read_to_end(&mut answer))
        .await
        .expect("the connection was held past 60 s");
    let waited = started.elapsed();
    assert!(read.is_ok() || answer.is_empty());
    assert!(
        waited >= Duration::from_secs(3) && waited < Duration::from_secs(4),
        "closed after {waited:?}"
    );
}

/// Settings: the environment wins over the file; an unknown key, a secret in the file and
/// a value that is not UTF-8 are refused with messages that name them and never echo a
/// secret.
#[test]
fn settings_come_from_the_environment_over_the_file() {
    let file = "listen = \"0.0.0.0:9000\"\ndaily_budget_usd = 20\nthrottle = \"off\"\n";
    let settings = Settings::from_toml(file, |name| {
        (name == "DAILY_BUDGET_USD").then(|| OsString::from("35"))
    })
    .unwrap();
    let config = GatewayConfig::from_settings(&settings).unwrap();
    assert_eq!(config.listen, "0.0.0.0:9000");
    assert_eq!(config.provider.daily_budget.to_string(), "$35");
    assert_eq!(config.throttle, ballast_gateway::ThrottleSetting::Off);
    // Hedging is on unless turned off; anything but on or off is refused, named.
    assert!(config.hedge);
    let off = GatewayConfig::from_settings(&settings_with("BALLAST_HEDGE", "off")).unwrap();
    assert!(!off.hedge);
    let error = GatewayConfig::from_settings(&settings_with("BALLAST_HEDGE", "yes")).unwrap_err();
    assert!(error.to_string().contains("BALLAST_HEDGE"), "{error}");
    // The answer cache: off unless given a time to live; bad values named.
    assert_eq!(config.cache_ttl, None);
    let cache = GatewayConfig::from_settings(&settings_with("BALLAST_CACHE_TTL", "0")).unwrap();
    assert_eq!(cache.cache_ttl, None);
    let small = GatewayConfig::from_settings(&settings_with("BALLAST_CACHE_MB", "2")).unwrap();
    assert_eq!(small.cache_bytes, 2 << 20);
    for (name, value, expected) in [
        (
            "BALLAST_CACHE_TTL",
            "1h",
            "BALLAST_CACHE_TTL: expected whole seconds from 0 (no cache) to 86400, got \"1h\"",
        ),
        (
            "BALLAST_CACHE_TTL",
            "86401",
            "BALLAST_CACHE_TTL: expected whole seconds from 0 (no cache) to 86400, got \"86401\"",
        ),
        (
            "BALLAST_CACHE_MB",
            "0",
            "BALLAST_CACHE_MB: expected 1 to 65536, got \"0\"",
        ),
    ] {
        let error = GatewayConfig::from_settings(&settings_with(name, value)).unwrap_err();
        assert_eq!(error.to_string(), expected);
    }

    let error = Settings::from_toml("listen_address = 1", |_| None).unwrap_err();
    assert!(
        error.to_string().starts_with(
            "the settings file: unknown key \"listen_address\"; expected one of provider, listen,"
        ),
        "{error}"
    );
    let error =
        Settings::from_toml("admin_token = \"hunter2-hunter2-hunter2\"", |_| None).unwrap_err();
    assert_eq!(
        error.to_string(),
        "the settings file: admin_token: keep secrets in the environment, not in a file"
    );
    let error = Settings::from_toml("listen = [", |_| None).unwrap_err();
    assert!(
        error.to_string().starts_with("the settings file: "),
        "{error}"
    );

    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStringExt;
        let settings = Settings::from_toml("", |name| {
            (name == "BALLAST_BODY_TIMEOUT").then(|| OsString::from_vec(vec![0xff, b'5']))
        })
        .unwrap();
        let error = GatewayConfig::from_settings(&settings).unwrap_err();
        assert_eq!(
            error.to_string(),
            "BALLAST_BODY_TIMEOUT: the value is not valid UTF-8"
        );
    }
    let short = settings_with("BALLAST_ADMIN_TOKEN", "short-secret");
    let error = GatewayConfig::from_settings(&short).unwrap_err();
    assert_eq!(
        error.to_string(),
        "BALLAST_ADMIN_TOKEN: the token is shorter than 16 characters"
    );
    assert!(!format!("{error:?}").contains("short-secret"));
    let error =
        GatewayConfig::from_settings(&settings_with("BALLAST_PROVIDER", "grok")).unwrap_err();
    assert_eq!(
        error.to_string(),
        "BALLAST_PROVIDER: expected xai, openai, anthropic, gemini or openai_compatible, got \"grok\""
    );
    let config =
        GatewayConfig::from_settings(&settings_with("BALLAST_ADMIN_TOKEN", ADMIN)).unwrap();
    assert!(!format!("{config:?}").contains(ADMIN));
}

fn settings_with(name: &'static str, value: &'static str) -> Settings {
    Settings::from_toml("", move |asked| {
        (asked == name).then(|| OsString::from(value))
    })
    .unwrap()
}

/// An upstream that echoes the key it was sent (in a 400's message and in a header): the
/// caller gets the message in OpenAI's shape with the key masked, and no such header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_an_upstream_echoes_never_reaches_the_caller() {
    const CANARY: &str = "xai-CANARY0123456789abcdef";
    let upstream = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(|headers: http::HeaderMap| async move {
            let sent = headers["authorization"].to_str().unwrap().to_owned();
            let body = serde_json::json!({"error": {
                "message": format!("Invalid messages in the request sent with {sent}"),
                "type": "invalid_request_error",
            }});
            (
                http::StatusCode::BAD_REQUEST,
                [
                    ("x-echo", sent.clone()),
                    ("server", "upstream/1.0".to_owned()),
                ],
                axum::Json(body),
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, upstream).await });
    let config = GatewayConfig::from_settings(&settings(&[
        ("XAI_API_KEY", CANARY),
        ("XAI_BASE_URL", &base),
    ]))
    .unwrap();
    let gateway = Gateway::new(&config, None).unwrap();
    let answer = gateway.router().oneshot(chat()).await.unwrap();
    assert_eq!(answer.status(), 400);
    for (name, value) in answer.headers() {
        assert!(
            !value.to_str().unwrap_or("").contains("CANARY"),
            "{name} carries the key"
        );
        assert!(
            name != "x-echo" && name != "server",
            "{name} passed through"
        );
    }
    let bytes = answer.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes);
    assert!(!text.contains("CANARY"), "{text}");
    let json: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(json["error"]["type"], "bad_request", "{text}");
    assert!(
        json["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Invalid messages in the request sent with Bearer "),
        "{text}"
    );
}

/// With client keys, a call needs one (401 without, or with an unknown one, and nothing
/// is sent); each key's calls count in its own budget scope: a key whose own budget cannot
/// cover a call is refused (429) while another key is served, and the admin read-out
/// shows each scope's spend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_keys_are_required_and_each_has_its_budget() {
    let sim = simulator(KEY);
    let server = SimServer::start(sim.clone()).await.unwrap();
    let base = format!("{}/v1", server.url());
    let file = format!(
        "[[client_keys]]\nname = \"team-a\"\nsha256 = \"{}\"\ndaily_budget_usd = \"0.000001\"\n\n[[client_keys]]\nname = \"team-b\"\nsha256 = \"{}\"\n",
        ballast_gateway::ClientKey::hash("ck-team-a-secret"),
        ballast_gateway::ClientKey::hash("ck-team-b-secret"),
    );
    let env = [
        ("XAI_API_KEY".to_owned(), KEY.to_owned()),
        ("XAI_BASE_URL".to_owned(), base),
        ("BALLAST_ADMIN_TOKEN".to_owned(), ADMIN.to_owned()),
    ];
    let settings = Settings::from_toml(&file, move |name| {
        env.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| OsString::from(v))
    })
    .unwrap();
    let config = GatewayConfig::from_settings(&settings).unwrap();
    assert!(!format!("{config:?}").contains("ck-team"));
    let gateway = Gateway::new(&config, None).unwrap();
    let with_key = |key: Option<&str>| {
        let mut request = chat();
        request.headers_mut().remove("authorization");
        if let Some(key) = key {
            request
                .headers_mut()
                .insert("authorization", format!("Bearer {key}").parse().unwrap());
        }
        request
    };

    for (key, message) in [
        (
            None,
            "This gateway needs a client key, sent as a bearer token or in x-api-key.",
        ),
        (
            Some("ck-team-c-secret"),
            "The client key is not known to this gateway.",
        ),
    ] {
        let (status, answer) = call(&gateway, with_key(key)).await;
        assert_eq!(status, 401);
        assert_eq!(answer["error"]["type"], "invalid_api_key");
        assert_eq!(answer["error"]["message"], message);
    }
    let (status, answer) = call(&gateway, with_key(Some("ck-team-a-secret"))).await;
    assert_eq!(status, 429, "{answer}");
    assert_eq!(answer["error"]["type"], "budget_exceeded");
    assert_eq!(sim.ledger().len(), 0, "nothing sent for refused callers");

    let (status, _) = call(&gateway, with_key(Some("ck-team-b-secret"))).await;
    assert_eq!(status, 200);
    let ledger = sim.ledger();
    assert_eq!(ledger.len(), 1);

    let (_, budget) = call(&gateway, admin("GET", "/admin/budget", Some(ADMIN), "")).await;
    let billed = ledger.billed_usd();
    assert_eq!(budget["budget"]["spent_usd"].as_f64(), Some(billed));
    assert_eq!(
        budget["scopes"],
        serde_json::json!([
            {"scope": "team-a", "limit_usd": 0.000001, "spent_usd": 0.0, "reserved_usd": 0.0, "remaining_usd": 0.000001},
            {"scope": "team-b", "limit_usd": null, "spent_usd": billed, "reserved_usd": 0.0, "remaining_usd": null},
        ])
    );
}

/// Client keys from `BALLAST_CLIENT_KEYS` and the file, checked: a key is kept as its
/// SHA-256, a plain key in the file is refused, names and keys are unique.
#[test]
fn client_keys_are_read_as_hashes_and_checked() {
    assert_eq!(
        ballast_gateway::ClientKey::hash("abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    let hash = ballast_gateway::ClientKey::hash("ck-ops");
    let config = GatewayConfig::from_settings(&settings(&[(
        "BALLAST_CLIENT_KEYS",
        &format!(
            "ops:{hash}:5, ci:{}",
            ballast_gateway::ClientKey::hash("ck-ci")
        ),
    )]))
    .unwrap();
    let keys: Vec<(&str, Option<String>)> = config
        .client_keys
        .iter()
        .map(|k| (k.name.as_str(), k.daily_budget.map(|b| b.to_string())))
        .collect();
    assert_eq!(keys, [("ops", Some("$5".to_owned())), ("ci", None)]);

    let error = GatewayConfig::from_settings(&settings(&[("BALLAST_CLIENT_KEYS", "ops:ck-ops")]))
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "BALLAST_CLIENT_KEYS: client key \"ops\": sha256 must be 64 hex digits (ballast-gateway hash-key prints it)"
    );
    let twice = format!("ops:{hash},ops2:{hash}");
    let error =
        GatewayConfig::from_settings(&settings(&[("BALLAST_CLIENT_KEYS", &twice)])).unwrap_err();
    assert_eq!(
        error.to_string(),
        "client_keys: client key \"ops2\" is given twice (by name or by key)"
    );
    let file = "[[client_keys]]\nname = \"ops\"\nkey = \"ck-ops\"\n";
    let error =
        GatewayConfig::from_settings(&Settings::from_toml(file, |_| None).unwrap()).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("client_keys: unknown field \"key\""),
        "{error}"
    );
    assert!(!error.to_string().contains("ck-ops"));
}

/// A client key's share: with one call a minute, the second call at once is answered 429
/// with `Retry-After: 60` and not sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_key_past_its_share_is_answered_429() {
    let sim = simulator(KEY);
    let server = SimServer::start(sim.clone()).await.unwrap();
    let base = format!("{}/v1", server.url());
    let keys = format!(
        "solo:{}::1",
        ballast_gateway::ClientKey::hash("ck-solo-secret")
    );
    let config = GatewayConfig::from_settings(&settings(&[
        ("XAI_API_KEY", KEY),
        ("XAI_BASE_URL", &base),
        ("BALLAST_CLIENT_KEYS", &keys),
    ]))
    .unwrap();
    assert_eq!(config.client_keys[0].rpm, Some(1.0));
    assert_eq!(config.client_keys[0].daily_budget, None);
    let gateway = Gateway::new(&config, None).unwrap();
    let request = || {
        let mut request = chat();
        request
            .headers_mut()
            .insert("authorization", "Bearer ck-solo-secret".parse().unwrap());
        request
    };
    let (status, _) = call(&gateway, request()).await;
    assert_eq!(status, 200);
    let answer = gateway.router().oneshot(request()).await.unwrap();
    assert_eq!(answer.status(), 429);
    assert_eq!(answer.headers()["retry-after"], "60");
    let bytes = answer.into_body().collect().await.unwrap().to_bytes();
    let json: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(json["error"]["type"], "rate_limited");
    assert_eq!(
        json["error"]["message"],
        "This client key's share is 1 requests a minute; try again in 60 s."
    );
    assert_eq!(sim.ledger().len(), 1, "the refused call was not sent");
}

/// A request body over the stack's cap (32 MiB) is answered 413 in OpenAI's shape, and
/// nothing is sent (the provider's address here accepts nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_cap_is_answered_413() {
    let config = GatewayConfig::from_settings(&settings(&[
        ("XAI_API_KEY", KEY),
        ("XAI_BASE_URL", "http://127.0.0.1:9/v1"),
    ]))
    .unwrap();
    let gateway = Gateway::new(&config, None).unwrap();
    let body = format!(
        r#"{{"model":"grok-code-fast-1","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x".repeat(33 << 20)
    );
    let request = http::Request::post("/v1/chat/completions")
        .body(Body::from(body))
        .unwrap();
    let (status, answer) = call(&gateway, request).await;
    assert_eq!(status, 413);
    assert_eq!(answer["error"]["message"], "The request is too large.");
}

/// With room for one connection, a second is closed at once while the first is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_past_the_cap_is_closed_at_once() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_, address) = serving(&[
        ("XAI_API_KEY", KEY),
        ("XAI_BASE_URL", "http://127.0.0.1:9/v1"),
        ("BALLAST_MAX_CONNECTIONS", "1"),
    ])
    .await;
    let mut first = tokio::net::TcpStream::connect(address).await.unwrap();
    // The first is taken (its request is answered) before the second arrives.
    first
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = [0u8; 12];
    first.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200");
    let mut second = tokio::net::TcpStream::connect(address).await.unwrap();
    let _ = second
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let mut rest = Vec::new();
    let read = second.read_to_end(&mut rest).await;
    assert!(
        rest.is_empty(),
        "the second connection was served: {rest:?} ({read:?})"
    );
}

/// On shutdown, a call in flight is served to its end; the serve loop then returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_a_call_in_flight() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sim = simulator(KEY);
    let server = SimServer::start(sim.clone()).await.unwrap();
    let base = format!("{}/v1", server.url());
    let config =
        GatewayConfig::from_settings(&settings(&[("XAI_API_KEY", KEY), ("XAI_BASE_URL", &base)]))
            .unwrap();
    let gateway = Gateway::new(&config, None).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(ballast_gateway::serve(
        listener,
        gateway.router(),
        config.header_timeout,
        config.max_connections,
        async move {
            let _ = stopped.await;
        },
    ));
    let mut client = tokio::net::TcpStream::connect(address).await.unwrap();
    let body = r#"{"model":"grok-code-fast-1","messages":[{"role":"user","content":"hi"}],"max_tokens":20}"#;
    client
        .write_all(
            format!(
                "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    // Stopped while the call is with the provider (its request has reached it).
    while sim.ledger().is_empty() {
        tokio::task::yield_now().await;
    }
    stop.send(()).unwrap();
    let mut answer = Vec::new();
    client.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"chat.completion\""), "{answer}");
    serving.await.unwrap();
    assert!(
        tokio::net::TcpStream::connect(address).await.is_err(),
        "still accepting after shutdown"
    );
}

/// The admin reset route checks the token before it reads a body, and reads at most 16 KiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_reset_reads_no_body_without_the_token_and_a_small_one_with_it() {
    let config = GatewayConfig::from_settings(&settings(&[
        ("XAI_API_KEY", KEY),
        ("XAI_BASE_URL", "http://127.0.0.1:9/v1"),
        ("BALLAST_ADMIN_TOKEN", ADMIN),
    ]))
    .unwrap();
    let gateway = Gateway::new(&config, None).unwrap();
    // A body that never ends: answered without being read.
    let (_sender, receiver) =
        tokio::sync::mpsc::channel::<Result<http_body::Frame<bytes::Bytes>, std::io::Error>>(1);
    let endless = Body::new(http_body_util::StreamBody::new(tokio_stream_from(receiver)));
    let request = http::Request::post("/admin/breakers/reset")
        .body(endless)
        .unwrap();
    let (status, _) = call(&gateway, request).await;
    assert_eq!(status, 401);
    let big = "x".repeat(64 * 1024);
    let (status, answer) = call(
        &gateway,
        admin("POST", "/admin/breakers/reset", Some(ADMIN), &big),
    )
    .await;
    assert_eq!(status, 413, "{answer}");
    let (status, answer) = call(
        &gateway,
        admin("POST", "/admin/breakers/reset", Some(ADMIN), "{}"),
    )
    .await;
    assert_eq!(
        (status, answer),
        (http::StatusCode::OK, serde_json::json!({"reset": 1}))
    );
}

/// The listen address may be a host name; a bad one is refused in words.
#[tokio::test]
async fn the_listen_address_may_be_a_host_name() {
    let config =
        GatewayConfig::from_settings(&settings(&[("BALLAST_LISTEN", "localhost:0")])).unwrap();
    let address = config.listen_address().await.unwrap();
    assert!(address.ip().is_loopback(), "{address}");
    let config =
        GatewayConfig::from_settings(&settings(&[("BALLAST_LISTEN", "no port here")])).unwrap();
    assert_eq!(
        config.listen_address().await.unwrap_err().to_string(),
        "BALLAST_LISTEN: expected host:port such as 127.0.0.1:8080 or localhost:8080, got \"no port here\""
    );
}

/// OpenAI's Responses API goes through too, plain and streamed: the provider's answer back
/// as it sent it, and the budget equal to the bill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_responses_api_is_served() {
    let (sim, _server, gateway) = xai_gateway(&[]).await;
    let request = |stream: bool| {
        http::Request::post("/v1/responses")
            .header("content-type", "application/json")
            .body(Body::from(
                serde_json::json!({
                    "model": "grok-code-fast-1",
                    "input": "hi",
                    "max_output_tokens": 20,
                    "stream": stream,
                })
                .to_string(),
            ))
            .unwrap()
    };
    let (status, answer) = call(&gateway, request(false)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["object"], "response");
    let answer = gateway.router().oneshot(request(true)).await.unwrap();
    assert_eq!(answer.status(), 200);
    let text = String::from_utf8(
        answer
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    assert!(text.contains("event: response.completed"), "{text}");
    let ledger = sim.ledger();
    assert_eq!(ledger.len(), 2);
    let (_, budget) = call(&gateway, admin("GET", "/admin/budget", Some(ADMIN), "")).await;
    assert_eq!(
        budget["budget"]["spent_usd"].as_f64(),
        Some(ledger.billed_usd())
    );
}

/// A named route: a call asking for its name goes down its chain (its first target asked
/// for the target's own model); any other call goes to the provider. `/v1/models` lists
/// both, and a route that names an unknown provider is refused in words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_route_serves_the_calls_that_ask_for_it() {
    let primary = simulator(KEY);
    let primary_server = SimServer::start(primary.clone()).await.unwrap();
    let routed = ballast_sim::Simulator::new(ballast_sim::Scenario {
        api_key: Some(ballast_sim::ExpectedKey("sk-route-test-key".into())),
        time_scale: 600.0,
        flavor: ballast_sim::Flavor::OpenAi,
        ..ballast_sim::Scenario::healthy()
    });
    let routed_server = SimServer::start(routed.clone()).await.unwrap();
    let env = [
        ("XAI_API_KEY".to_owned(), KEY.to_owned()),
        (
            "XAI_BASE_URL".to_owned(),
            format!("{}/v1", primary_server.url()),
        ),
        ("OPENAI_API_KEY".to_owned(), "sk-route-test-key".to_owned()),
        (
            "OPENAI_BASE_URL".to_owned(),
            format!("{}/v1", routed_server.url()),
        ),
    ];
    let settings = Settings::from_toml(
        "[[routes]]\nmodel = \"fast\"\nchain = \"openai:gpt-4o-mini\"\n",
        move |name| {
            env.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| OsString::from(v))
        },
    )
    .unwrap();
    let config = GatewayConfig::from_settings(&settings).unwrap();
    let gateway = Gateway::new(&config, None).unwrap();
    let ask = |model: &str| {
        http::Request::post("/v1/chat/completions")
            .header("content-type", "application/json")
            .body(Body::from(format!(
                r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}],"max_tokens":20}}"#
            )))
            .unwrap()
    };
    let (status, answer) = call(&gateway, ask("fast")).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(routed.ledger().len(), 1);
    assert_eq!(routed.ledger().entries()[0].model, "gpt-4o-mini");
    assert_eq!(primary.ledger().len(), 0);
    let (status, _) = call(&gateway, ask("grok-code-fast-1")).await;
    assert_eq!(status, 200);
    assert_eq!(primary.ledger().len(), 1);
    assert_eq!(routed.ledger().len(), 1);

    let listed = listed_models(&gateway).await;
    let listed: Vec<(&str, &str)> = listed
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    assert_eq!(listed, [("grok-code-fast-1", "xai"), ("fast", "openai")]);

    let error = GatewayConfig::from_settings(
        &Settings::from_toml("[[routes]]\nmodel = \"x\"\nchain = \"grok\"\n", |_| None).unwrap(),
    )
    .unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("routes: route \"x\": its chain"),
        "{error}"
    );
}

/// Every answer names the target that gave it (`x-ballast-target`); one that is not
/// streamed also says how many provider calls the call made (`x-ballast-calls`) and what
/// they were counted to cost (`x-ballast-cost-usd`). Here the primary answers a broken
/// body (billed, counted at its worst case) and the fallback serves: two calls, and a
/// cost equal to the whole budget's spend. A stream's headers leave before its last call
/// is counted: the target only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_say_who_served_them_with_how_many_calls_at_what_cost() {
    let primary = ballast_sim::Simulator::new(ballast_sim::Scenario {
        api_key: Some(ballast_sim::ExpectedKey(KEY.into())),
        time_scale: 600.0,
        malformed_probability: 1.0,
        ..ballast_sim::Scenario::healthy()
    });
    let primary_server = SimServer::start(primary.clone()).await.unwrap();
    let fallback = ballast_sim::Simulator::new(ballast_sim::Scenario {
        api_key: Some(ballast_sim::ExpectedKey("sk-fallback-key".into())),
        time_scale: 600.0,
        flavor: ballast_sim::Flavor::OpenAi,
        ..ballast_sim::Scenario::healthy()
    });
    let fallback_server = SimServer::start(fallback.clone()).await.unwrap();
    let (primary_base, fallback_base) = (
        format!("{}/v1", primary_server.url()),
        format!("{}/v1", fallback_server.url()),
    );
    let config = GatewayConfig::from_settings(&settings(&[
        ("XAI_API_KEY", KEY),
        ("XAI_BASE_URL", &primary_base),
        ("OPENAI_API_KEY", "sk-fallback-key"),
        ("OPENAI_BASE_URL", &fallback_base),
        ("BALLAST_FALLBACKS", "openai:gpt-4o-mini"),
        ("BALLAST_ADMIN_TOKEN", ADMIN),
    ]))
    .unwrap();
    let gateway = Gateway::new(&config, None).unwrap();

    let answer = gateway.router().oneshot(chat()).await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(
        header(&answer, "x-ballast-target").as_deref(),
        Some("openai")
    );
    assert_eq!(header(&answer, "x-ballast-calls").as_deref(), Some("2"));
    let cost: ballast::cost::Usd = header(&answer, "x-ballast-cost-usd")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!((primary.ledger().len(), fallback.ledger().len()), (1, 1));
    let (_, budget) = call(&gateway, admin("GET", "/admin/budget", Some(ADMIN), "")).await;
    assert_eq!(budget["budget"]["spent_usd"].as_f64(), Some(cost.as_f64()));

    let streamed = http::Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(Body::from(
            r#"{"model":"grok-code-fast-1","stream":true,"messages":[{"role":"user","content":"hi"}],"max_tokens":20}"#,
        ))
        .unwrap();
    let answer = gateway.router().oneshot(streamed).await.unwrap();
    assert_eq!(answer.status(), 200);
    assert!(header(&answer, "x-ballast-target").is_some());
    assert_eq!(header(&answer, "x-ballast-calls"), None);
    assert_eq!(header(&answer, "x-ballast-cost-usd"), None);
    let _ = answer.into_body().collect().await.unwrap();
}

/// A known path asked with another method: 405 in OpenAI's shape, with `Allow`, on every
/// route registered (the chat route and the models list alike).
#[tokio::test]
async fn a_wrong_method_is_answered_405_in_openai_shape() {
    let config = GatewayConfig::from_settings(&settings(&[
        ("XAI_API_KEY", KEY),
        ("XAI_BASE_URL", "http://127.0.0.1:9/v1"),
    ]))
    .unwrap();
    let gateway = Gateway::new(&config, None).unwrap();
    for (method, path, allow) in [
        (http::Method::GET, "/v1/chat/completions", "POST"),
        (http::Method::DELETE, "/v1/models", "GET,HEAD"),
    ] {
        let request = http::Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .unwrap();
        let answer = gateway.router().oneshot(request).await.unwrap();
        assert_eq!(answer.status(), 405, "{path}");
        assert_eq!(answer.headers()[http::header::ALLOW], allow, "{path}");
        let bytes = answer.into_body().collect().await.unwrap().to_bytes();
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body["error"]["type"], "method_not_allowed", "{path}");
        assert_eq!(body["error"]["code"], "method_not_allowed", "{path}");
    }
}

/// A simulated Anthropic API that wants `key`, its clock 600 times faster, with `outage`,
/// billing Claude Sonnet 4.5's price ($3 / $0.30 / $15 per million).
/// A gateway whose provider is a healthy simulated Anthropic on loopback (the key
/// `sk-ant-gateway-test-key`, the admin token [`ADMIN`]); the server lives as long as its
/// handle.
async fn anthropic_gateway() -> (ballast_sim::Simulator, SimServer, Gateway) {
    let key = "sk-ant-gateway-test-key";
    let sim = anthropic(key, false);
    let server = SimServer::start(sim.clone()).await.unwrap();
    let base = format!("{}/v1", server.url());
    let config = GatewayConfig::from_settings(&settings(&[
        ("BALLAST_PROVIDER", "anthropic"),
        ("ANTHROPIC_API_KEY", key),
        ("ANTHROPIC_BASE_URL", &base),
        ("BALLAST_ADMIN_TOKEN", ADMIN),
    ]))
    .unwrap();
    (sim, server, Gateway::new(&config, None).unwrap())
}

fn anthropic(key: &str, outage: bool) -> ballast_sim::Simulator {
    let outages = if outage {
        vec![ballast_sim::Outage {
            start: Duration::ZERO,
            duration: Duration::MAX,
        }]
    } else {
        Vec::new()
    };
    ballast_sim::Simulator::new(ballast_sim::Scenario {
        api_key: Some(ballast_sim::ExpectedKey(key.into())),
        time_scale: 600.0,
        flavor: ballast_sim::Flavor::Anthropic,
        outages,
        price: ballast_sim::Price {
            input: 30_000,
            cached_input: 3_000,
            output: 150_000,
        },
        ..ballast_sim::Scenario::healthy()
    })
}

/// A Messages request as Anthropic's SDKs send it, with the caller's own key.
fn messages(body: Value, stream: bool) -> http::Request<Body> {
    let mut body = body;
    body["stream"] = Value::Bool(stream);
    http::Request::post("/v1/messages")
        .header("content-type", "application/json")
        .header("x-api-key", "sk-ant-caller-key-the-gateway-drops")
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn claude_hi() -> Value {
    serde_json::json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 20,
        "messages": [{"role": "user", "content": "hi"}],
    })
}

/// Anthropic's SDKs can put the gateway in front too: `POST /v1/messages` goes as it is to
/// the Anthropic target, with the gateway's key and the caller's `anthropic-version` (or
/// the API's own default: the simulated API refuses a call without one), streamed or
/// not; the answer is Anthropic's, named, counted and priced like any other; the
/// provider's refusal of the caller's request comes back in Anthropic's error shape, with
/// the provider's message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_messages_are_served_as_they_are() {
    let (sim, _server, gateway) = anthropic_gateway().await;

    let answer = gateway
        .router()
        .oneshot(messages(claude_hi(), false))
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let header = |name: &str| answer.headers()[name].to_str().unwrap().to_owned();
    let (target, calls, cost) = (
        header("x-ballast-target"),
        header("x-ballast-calls"),
        header("x-ballast-cost-usd"),
    );
    let body: Value =
        serde_json::from_slice(&answer.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(
        (body["type"].as_str(), body["role"].as_str()),
        (Some("message"), Some("assistant"))
    );
    assert_eq!(body["model"], "claude-sonnet-4-5");
    assert_eq!((target.as_str(), calls.as_str()), ("anthropic", "1"));
    let billed = ballast::cost::Usd::from_xai_ticks(sim.ledger().entries()[0].billed_ticks);
    assert_eq!(cost.parse(), Ok(billed));

    let mut streamed = messages(claude_hi(), true);
    let headers = streamed.headers_mut();
    headers.insert("anthropic-version", "2023-06-01".parse().unwrap());
    headers.insert("anthropic-beta", "context-1m-2025-08-07".parse().unwrap());
    let answer = gateway.router().oneshot(streamed).await.unwrap();
    assert_eq!(answer.status(), 200);
    let text = answer.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&text);
    assert!(text.starts_with("event: message_start"), "{text}");
    assert!(text.contains("event: message_stop"), "{text}");

    let mut both = claude_hi();
    both["temperature"] = 0.5.into();
    both["top_p"] = 0.9.into();
    let (status, answer) = call(&gateway, messages(both, false)).await;
    assert_eq!(status, 400);
    assert_eq!(
        answer,
        serde_json::json!({"type": "error", "error": {
            "type": "invalid_request_error",
            "message": "`temperature` and `top_p` cannot both be specified for this model. Please use only one.",
        }})
    );

    let ledger = sim.ledger();
    assert_eq!(ledger.len(), 3);
    let models: Vec<&str> = ledger.entries().iter().map(|e| e.model.as_str()).collect();
    // The refusal is logged unread (no model) and unbilled.
    assert_eq!(models, ["claude-sonnet-4-5", "claude-sonnet-4-5", ""]);
    assert_eq!(ledger.entries()[2].billed_ticks, 0);
    let (_, budget) = call(&gateway, admin("GET", "/admin/budget", Some(ADMIN), "")).await;
    assert_eq!(
        budget["budget"]["spent_usd"].as_f64(),
        Some(ledger.billed_usd())
    );
    assert_eq!(budget["budget"]["reserved_usd"].as_f64(), Some(0.0));
}

/// A Messages call goes past targets that do not speak Anthropic's API to the one that
/// does; its failures are in Anthropic's error shape (here the Anthropic target is down:
/// a 502 the SDK retries, never the OpenAI shape it cannot read); a gateway with no
/// Anthropic target answers 404 at once, and client keys are read from `x-api-key` as
/// Anthropic's SDKs send them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_go_to_the_target_that_speaks_them_and_fail_in_its_shape() {
    let primary = simulator(KEY);
    let primary_server = SimServer::start(primary.clone()).await.unwrap();
    let key = "sk-ant-gateway-test-key";
    let down = anthropic(key, true);
    let down_server = SimServer::start(down.clone()).await.unwrap();
    let primary_base = format!("{}/v1", primary_server.url());
    let down_base = format!("{}/v1", down_server.url());
    let config = GatewayConfig::from_settings(&settings(&[
        ("XAI_API_KEY", KEY),
        ("XAI_BASE_URL", &primary_base),
        ("ANTHROPIC_API_KEY", key),
        ("ANTHROPIC_BASE_URL", &down_base),
        ("BALLAST_FALLBACKS", "anthropic"),
        (
            "BALLAST_CLIENT_KEYS",
            &format!(
                "team:{}",
                ballast_gateway::ClientKey::hash("ck-team-secret")
            ),
        ),
    ]))
    .unwrap();
    let gateway = Gateway::new(&config, None).unwrap();
    let with_key = |key: &str| {
        let mut request = messages(claude_hi(), false);
        request
            .headers_mut()
            .insert("x-api-key", key.parse().unwrap());
        request
    };

    let (status, answer) = call(&gateway, with_key("ck-someone-else")).await;
    assert_eq!(status, 401);
    assert_eq!(
        answer,
        serde_json::json!({"type": "error", "error": {
            "type": "authentication_error",
            "message": "The client key is not known to this gateway.",
        }})
    );

    let answer = gateway
        .router()
        .oneshot(with_key("ck-team-secret"))
        .await
        .unwrap();
    assert_eq!(answer.status(), 502);
    assert_eq!(answer.headers()["x-ballast-target"], "anthropic");
    let body: Value =
        serde_json::from_slice(&answer.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"type": "error", "error": {
            "type": "api_error",
            "message": "The AI service failed to answer. Please try again.",
        }})
    );
    assert_eq!(primary.ledger().len(), 0, "xAI does not speak Messages");
    assert!(!down.ledger().is_empty());

    let only_xai = GatewayConfig::from_settings(&settings(&[
        ("XAI_API_KEY", KEY),
        ("XAI_BASE_URL", &primary_base),
    ]))
    .unwrap();
    let gateway = Gateway::new(&only_xai, None).unwrap();
    let (status, answer) = call(&gateway, messages(claude_hi(), false)).await;
    assert_eq!(status, 404);
    assert_eq!(answer["type"], "error");
    assert_eq!(answer["error"]["type"], "not_found_error");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("No target of this gateway takes Anthropic's Messages API"),
        "{answer}"
    );
    assert_eq!(primary.ledger().len(), 0);
}

/// The Anthropic primary down, an OpenAI-compatible fallback that names its model (xAI's
/// `grok-4-fast`, a reasoning model reporting its thinking beside `completion_tokens`):
/// Messages calls are translated to chat there and answered back in Anthropic's API, a
/// message or a stream of Messages events, naming the model that answered, its usage the
/// provider's bill (thinking in `output_tokens`, as Anthropic counts it), and the budget
/// equal to both providers' ledgers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_fail_over_to_an_openai_compatible_target_translated() {
    let anthropic_key = "sk-ant-gateway-test-key";
    let down = anthropic(anthropic_key, true);
    let down_server = SimServer::start(down.clone()).await.unwrap();
    let xai = ballast_sim::Simulator::new(ballast_sim::Scenario {
        api_key: Some(ballast_sim::ExpectedKey(KEY.into())),
        time_scale: 600.0,
        price: ballast_sim::Price::GROK_4_FAST,
        reasoning_share: 0.5,
        ..ballast_sim::Scenario::healthy()
    });
    let xai_server = SimServer::start(xai.clone()).await.unwrap();
    let (down_base, xai_base) = (
        format!("{}/v1", down_server.url()),
        format!("{}/v1", xai_server.url()),
    );
    let config = GatewayConfig::from_settings(&settings(&[
        ("BALLAST_PROVIDER", "anthropic"),
        ("ANTHROPIC_API_KEY", anthropic_key),
        ("ANTHROPIC_BASE_URL", &down_base),
        ("XAI_API_KEY", KEY),
        ("XAI_BASE_URL", &xai_base),
        ("BALLAST_FALLBACKS", "xai:grok-4-fast"),
        ("BALLAST_ADMIN_TOKEN", ADMIN),
    ]))
    .unwrap();
    let gateway = Gateway::new(&config, None).unwrap();

    let answer = gateway
        .router()
        .oneshot(messages(claude_hi(), false))
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["x-ballast-target"], "xai");
    assert_eq!(answer.headers()["x-ballast-calls"], "2");
    let body: Value =
        serde_json::from_slice(&answer.into_body().collect().await.unwrap().to_bytes()).unwrap();
    let entry = xai.ledger().entries()[0].clone();
    assert!(entry.reasoning_tokens > 0);
    assert_eq!(
        (body["type"].as_str(), body["model"].as_str()),
        (Some("message"), Some("grok-4-fast"))
    );
    // The simulator's answer: four characters a token of the answer's own (the thinking
    // is billed, not shown).
    let text = body["content"][0]["text"].as_str().unwrap();
    assert_eq!(body["content"][0]["type"], "text");
    assert_eq!(
        text.len() as u64,
        4 * (entry.completion_tokens - entry.reasoning_tokens)
    );
    assert_eq!(
        body["usage"],
        serde_json::json!({
            "input_tokens": entry.prompt_tokens - entry.cached_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": entry.cached_tokens,
            "output_tokens": entry.completion_tokens,
        })
    );

    let answer = gateway
        .router()
        .oneshot(messages(claude_hi(), true))
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let text = answer.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&text).into_owned();
    let entry = xai.ledger().entries().last().unwrap().clone();
    let events: Vec<(&str, Value)> = text
        .split("\n\n")
        .filter(|event| !event.is_empty())
        .map(|event| {
            let (kind, data) = event.split_once('\n').unwrap();
            (
                kind.strip_prefix("event: ").unwrap(),
                serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap(),
            )
        })
        .collect();
    let kinds: Vec<&str> = events.iter().map(|(kind, _)| *kind).collect();
    assert_eq!(kinds.first(), Some(&"message_start"), "{text}");
    assert_eq!(
        kinds[kinds.len() - 3..],
        ["content_block_stop", "message_delta", "message_stop"]
    );
    let streamed: String = events
        .iter()
        .filter_map(|(_, data)| data.pointer("/delta/text")?.as_str())
        .collect();
    assert_eq!(
        streamed,
        ballast_sim::completion_text(entry.completion_tokens - entry.reasoning_tokens)
    );
    let delta = &events[events.len() - 2].1;
    assert_eq!(delta["usage"]["output_tokens"], entry.completion_tokens);
    assert_eq!(
        delta["usage"]["input_tokens"],
        entry.prompt_tokens - entry.cached_tokens
    );

    let (_, budget) = call(&gateway, admin("GET", "/admin/budget", Some(ADMIN), "")).await;
    let billed = ballast::cost::Usd::from_xai_ticks(
        down.ledger().billed_ticks() + xai.ledger().billed_ticks(),
    );
    assert_eq!(xai.ledger().len(), 2);
    assert_eq!(
        budget["budget"]["spent_usd"].as_f64(),
        Some(billed.as_f64())
    );
    assert_eq!(budget["budget"]["reserved_usd"].as_f64(), Some(0.0));
}

/// The Responses API with an Anthropic provider: `POST /v1/responses` is translated for it
/// and answered as a response, streamed or not; the budget equals the bill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_responses_api_is_served_by_an_anthropic_provider() {
    let (sim, _server, gateway) = anthropic_gateway().await;
    let request = |stream: bool| {
        http::Request::post("/v1/responses")
            .header("content-type", "application/json")
            .body(Body::from(
                serde_json::json!({
                    "model": "claude-sonnet-4-5", "input": "hi",
                    "max_output_tokens": 20, "stream": stream,
                })
                .to_string(),
            ))
            .unwrap()
    };
    let (status, answer) = call(&gateway, request(false)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        (answer["object"].as_str(), answer["status"].as_str()),
        (Some("response"), Some("completed"))
    );
    assert_eq!(answer["model"], "claude-sonnet-4-5");
    let entry = sim.ledger().entries()[0].clone();
    assert_eq!(answer["usage"]["input_tokens"], entry.prompt_tokens);
    assert_eq!(answer["usage"]["output_tokens"], entry.completion_tokens);

    let answer = gateway.router().oneshot(request(true)).await.unwrap();
    assert_eq!(answer.status(), 200);
    let text = answer.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&text).into_owned();
    assert!(text.starts_with("event: response.created"), "{text}");
    assert!(text.contains("event: response.completed"), "{text}");

    let ledger = sim.ledger();
    assert_eq!(ledger.len(), 2);
    let (_, budget) = call(&gateway, admin("GET", "/admin/budget", Some(ADMIN), "")).await;
    assert_eq!(
        budget["budget"]["spent_usd"].as_f64(),
        Some(ledger.billed_usd())
    );
}

/// With `BALLAST_CACHE_TTL`, a call asked again word for word by the same client key is
/// answered from the cache: the same status and body (a stream's events as they came),
/// `x-ballast-cache: hit`, no provider call, nothing spent. Another client key, another
/// body, `Cache-Control: no-cache` (which keeps the fresh answer) and `no-store` reach the
/// provider; a failure, and a stream its caller left, are not kept. Hits spend nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_asked_again_is_answered_from_the_cache() {
    let sim = simulator(KEY);
    let server = SimServer::start(sim.clone()).await.unwrap();
    let base = format!("{}/v1", server.url());
    let keys = format!(
        "team-a:{},team-b:{}",
        ballast_gateway::ClientKey::hash("ck-team-a-secret"),
        ballast_gateway::ClientKey::hash("ck-team-b-secret"),
    );
    let config = GatewayConfig::from_settings(&settings(&[
        ("XAI_API_KEY", KEY),
        ("XAI_BASE_URL", &base),
        ("BALLAST_ADMIN_TOKEN", ADMIN),
        ("BALLAST_CLIENT_KEYS", &keys),
        ("BALLAST_CACHE_TTL", "600"),
    ]))
    .unwrap();
    assert_eq!(config.cache_ttl, Some(Duration::from_secs(600)));
    assert_eq!(config.cache_bytes, 64 << 20);
    let gateway = Gateway::new(&config, None).unwrap();
    let ask = |key: &str, body: &str, cache_control: Option<&str>| {
        let mut request = http::Request::post("/v1/chat/completions")
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {key}"));
        if let Some(value) = cache_control {
            request = request.header("cache-control", value);
        }
        request.body(Body::from(body.to_owned())).unwrap()
    };
    let send = |request: http::Request<Body>| async {
        let answer = gateway.router().oneshot(request).await.unwrap();
        let header = |name: &str| {
            answer
                .headers()
                .get(name)
                .map(|value| value.to_str().unwrap().to_owned())
        };
        let seen = (
            answer.status(),
            header("x-ballast-cache"),
            header("x-ballast-calls"),
        );
        let (age, cost) = (header("age"), header("x-ballast-cost-usd"));
        let body = answer.into_body().collect().await.unwrap().to_bytes();
        (seen, age, cost, body)
    };
    const HI: &str = r#"{"model":"grok-code-fast-1","messages":[{"role":"user","content":"hi"}],"max_tokens":20}"#;
    let (a, b) = ("ck-team-a-secret", "ck-team-b-secret");
    let miss = |calls: &str| {
        (
            http::StatusCode::OK,
            Some("miss".to_owned()),
            Some(calls.to_owned()),
        )
    };
    let hit = (
        http::StatusCode::OK,
        Some("hit".to_owned()),
        Some("0".to_owned()),
    );

    let (seen, _, _, first) = send(ask(a, HI, None)).await;
    assert_eq!(seen, miss("1"));
    assert_eq!(sim.ledger().len(), 1);
    let (seen, age, cost, again) = send(ask(a, HI, None)).await;
    assert_eq!(seen, hit);
    assert_eq!(again, first, "the same answer, byte for byte");
    assert_eq!(age.as_deref(), Some("0"));
    assert_eq!(cost.unwrap().parse(), Ok(ballast::cost::Usd::ZERO));
    assert_eq!(sim.ledger().len(), 1, "no provider call for a hit");

    // Another client key, another body: their own calls.
    assert_eq!(send(ask(b, HI, None)).await.0, miss("1"));
    let other = HI.replace("\"hi\"", "\"hello\"");
    assert_eq!(send(ask(a, &other, None)).await.0, miss("1"));
    assert_eq!(sim.ledger().len(), 3);

    // `no-cache` asks the provider and keeps its answer; `no-store` neither.
    let (seen, _, _, fresh) = send(ask(a, HI, Some("no-cache"))).await;
    assert_eq!(seen, miss("1"));
    assert_ne!(fresh, first, "a new answer (its own id)");
    let (seen, _, _, again) = send(ask(a, HI, None)).await;
    assert_eq!((seen, again), (hit.clone(), fresh));
    let (seen, ..) = send(ask(a, HI, Some("no-store"))).await;
    assert_eq!(seen, (http::StatusCode::OK, None, Some("1".to_owned())));
    assert_eq!(sim.ledger().len(), 5);

    // Hits spent nothing: the budget is the provider's bill.
    let spent = || async {
        let (_, budget) = call(&gateway, admin("GET", "/admin/budget", Some(ADMIN), "")).await;
        budget["budget"]["spent_usd"].as_f64().unwrap()
    };
    assert_eq!(spent().await, sim.ledger().billed_usd());

    // A stream is kept once it has ended well, and answered again whole; one its caller
    // left after its first frame is not kept.
    let streamed = HI.replace("{\"model\"", "{\"stream\":true,\"model\"");
    let left = HI
        .replace("\"hi\"", "\"bye\"")
        .replace("{\"model\"", "{\"stream\":true,\"model\"");
    let answer = gateway.router().oneshot(ask(a, &left, None)).await.unwrap();
    let mut body = answer.into_body();
    let _first = body.frame().await.unwrap().unwrap();
    drop(body);
    let (seen, _, _, events) = send(ask(a, &streamed, None)).await;
    assert_eq!(seen, (http::StatusCode::OK, Some("miss".to_owned()), None));
    assert!(events.ends_with(b"data: [DONE]\n\n"));
    let (seen, _, _, again) = send(ask(a, &streamed, None)).await;
    assert_eq!(seen, hit);
    assert_eq!(again, events, "the events as they came");
    let (seen, ..) = send(ask(a, &left, None)).await;
    assert_eq!(
        seen.1.as_deref(),
        Some("miss"),
        "the stream left was not kept"
    );
    assert_eq!(sim.ledger().len(), 8);
    // The stream left is charged its worst case: never less than the provider billed.
    assert!(spent().await >= sim.ledger().billed_usd());

    // A failure is not kept: asked again, the provider is asked again (a request the
    // provider refuses, 400, which nothing retries).
    let unnamed = r#"{"messages":[{"role":"user","content":"hi"}],"max_tokens":20}"#;
    for calls in [9, 10] {
        let (seen, ..) = send(ask(a, unnamed, None)).await;
        assert_eq!(seen.0, 400);
        assert_eq!(seen.1, None);
        assert_eq!(sim.ledger().len(), calls);
    }
}

/// Claude Code's token counts (`POST /v1/messages/count_tokens?beta=true`) go to the
/// Anthropic target as they are, with the gateway's key, and its count comes back: free,
/// so nothing in the provider's ledger and nothing spent; a count the provider refuses
/// comes back in Anthropic's shape with its message. A gateway without an Anthropic
/// target answers 404, on which the client counts with its own estimate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_counts_go_to_the_anthropic_target() {
    let (sim, _server, gateway) = anthropic_gateway().await;
    let count = |body: &str| {
        http::Request::post("/v1/messages/count_tokens?beta=true")
            .header("content-type", "application/json")
            .header("x-api-key", "the-callers-key-the-gateway-drops")
            .header("anthropic-version", "2023-06-01")
            .body(Body::from(body.to_owned()))
            .unwrap()
    };
    let body =
        r#"{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"How many?"}]}"#;
    let (status, answer) = call(&gateway, count(body)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer,
        serde_json::json!({"input_tokens": body.len().div_ceil(4)})
    );
    let (status, answer) = call(&gateway, count(r#"{"model":"claude-sonnet-4-5"}"#)).await;
    assert_eq!(status, 400);
    assert_eq!(
        answer,
        serde_json::json!({"type": "error", "error": {
            "type": "invalid_request_error", "message": "messages: Field required"}})
    );
    assert_eq!(sim.ledger().len(), 0, "counts are free: not billed");
    let (_, budget) = call(&gateway, admin("GET", "/admin/budget", Some(ADMIN), "")).await;
    assert_eq!(budget["budget"]["spent_usd"].as_f64(), Some(0.0));

    let xai = GatewayConfig::from_settings(&settings(&[("XAI_API_KEY", KEY)])).unwrap();
    let gateway = Gateway::new(&xai, None).unwrap();
    let (status, answer) = call(&gateway, count(body)).await;
    assert_eq!(status, 404);
    assert_eq!(answer["type"], "error");
    assert_eq!(answer["error"]["type"], "not_found_error");
}

/// Google's Gen AI SDKs pointed at the gateway: `generateContent` and
/// `streamGenerateContent?alt=sse` go as they are to the Gemini provider with the gateway's
/// key (the simulated Gemini refuses any other, so the caller's header did not replace it;
/// the query's `key` is taken out: `the_query_goes_on_without_its_key`), answered in
/// Gemini's API and counted in the budget as billed. Another method, and a gateway without a Gemini target, are answered 404 in
/// Gemini's shape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemini_calls_are_served_as_they_are() {
    // Gemini 2.5 Flash: $0.30 / $0.075 / $2.50 per million, as the gateway prices it.
    let flash = ballast_sim::Price {
        input: 3_000,
        cached_input: 750,
        output: 25_000,
    };
    let key = "AIza-gateway-test-key";
    let (sim, _server, gateway) = gateway_over(ballast::Preset::Gemini, key, flash, &[]).await;
    let ask = |path: &str| {
        http::Request::post(path)
            .header("content-type", "application/json")
            .header("x-goog-api-key", "AIza-the-callers-own")
            .body(Body::from(
                r#"{"contents":[{"role":"user","parts":[{"text":"hi"}]}],"generationConfig":{"maxOutputTokens":20}}"#,
            ))
            .unwrap()
    };
    let (status, answer) = call(
        &gateway,
        ask("/v1beta/models/gemini-2.5-flash:generateContent?key=AIza-in-the-query"),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["candidates"][0]["finishReason"], "STOP");
    assert!(
        answer["usageMetadata"]["promptTokenCount"]
            .as_u64()
            .is_some()
    );

    let streamed = gateway
        .router()
        .oneshot(ask(
            "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
        ))
        .await
        .unwrap();
    assert_eq!(streamed.status(), 200);
    let events = streamed.into_body().collect().await.unwrap().to_bytes();
    let events = String::from_utf8(events.to_vec()).unwrap();
    assert!(events.starts_with("data: {\"candidates\""), "{events}");
    assert!(events.contains("\"finishReason\":\"STOP\""), "{events}");

    let ledger = sim.ledger();
    assert_eq!(ledger.len(), 2);
    assert!(
        ledger
            .entries()
            .iter()
            .all(|e| e.outcome == ballast_sim::SimOutcome::Success && e.model == "gemini-2.5-flash")
    );
    let (_, budget) = call(&gateway, admin("GET", "/admin/budget", Some(ADMIN), "")).await;
    assert_eq!(
        budget["budget"]["spent_usd"].as_f64(),
        Some(ledger.billed_usd())
    );

    // A token count (`count_tokens`): answered by the first Gemini target, outside the stack
    // (free: nothing spent, nothing in the ledger), with the gateway's key.
    let count = r#"{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}"#;
    let counted = http::Request::post("/v1beta/models/gemini-2.5-flash:countTokens")
        .header("content-type", "application/json")
        .header("x-goog-api-key", "AIza-the-callers-own")
        .body(Body::from(count))
        .unwrap();
    let (status, answer) = call(&gateway, counted).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["totalTokens"], count.len().div_ceil(4));
    assert_eq!(sim.ledger().len(), 2);
    // Embeddings, as `embed_content` sends them: served, nothing added to the body.
    let embed = http::Request::post("/v1beta/models/gemini-embedding-001:embedContent")
        .header("content-type", "application/json")
        .body(Body::from(
            r#"{"content":{"parts":[{"text":"hi"}]},"outputDimensionality":8}"#,
        ))
        .unwrap();
    let (status, answer) = call(&gateway, embed).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["embedding"]["values"].as_array().unwrap().len(), 8);
    // The model the caller asks for is the one asked of Gemini (the preset's default is
    // only for calls translated from another API): no silent swap to gemini-2.5-flash.
    let (status, answer) = call(
        &gateway,
        ask("/v1beta/models/gemini-2.5-pro:generateContent"),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let models: Vec<String> = sim
        .ledger()
        .entries()
        .iter()
        .map(|e| e.model.clone())
        .collect();
    assert_eq!(
        models,
        [
            "gemini-2.5-flash",
            "gemini-2.5-flash",
            "gemini-embedding-001",
            "gemini-2.5-pro"
        ]
    );
    let xai = GatewayConfig::from_settings(&settings(&[("XAI_API_KEY", KEY)])).unwrap();
    let gateway = Gateway::new(&xai, None).unwrap();
    for method in ["generateContent", "countTokens"] {
        let (status, answer) = call(
            &gateway,
            ask(&format!("/v1beta/models/gemini-2.5-flash:{method}")),
        )
        .await;
        assert_eq!(status, 404, "{method}");
        assert_eq!(answer["error"]["code"], 404);
    }
}

/// `POST /v1/embeddings` (the OpenAI SDK's `embeddings.create` pointed at the gateway): the
/// call reaches the provider as it was asked (the simulated OpenAI refuses any field a
/// middleware adds), is priced at its input tokens only (the budget equals the bill), and
/// with the cache on the same call again is answered from memory with no provider call. A
/// gateway with no target that serves embeddings answers 404 in OpenAI's shape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_are_served_priced_and_cached() {
    // text-embedding-3-small: $0.02 per million input tokens, as the gateway prices it.
    let small = ballast_sim::Price {
        input: 200,
        cached_input: 200,
        output: 0,
    };
    let (sim, _server, gateway) = cached_openai_gateway(small).await;
    let ask = || {
        http::Request::post("/v1/embeddings")
            .header("content-type", "application/json")
            .header("authorization", "Bearer sk-the-callers-own")
            .body(Body::from(
                r#"{"model":"text-embedding-3-small","input":["first passage","second"],"encoding_format":"base64","dimensions":256}"#,
            ))
            .unwrap()
    };
    let first = gateway.router().oneshot(ask()).await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(header(&first, "x-ballast-cache").as_deref(), Some("miss"));
    let cost = header(&first, "x-ballast-cost-usd").unwrap();
    let first = first.into_body().collect().await.unwrap().to_bytes();
    let answer: Value = serde_json::from_slice(&first).unwrap();
    assert_eq!(answer["data"].as_array().unwrap().len(), 2);
    // 256 little-endian f32s, as base64.
    assert_eq!(answer["data"][1]["embedding"].as_str().unwrap().len(), 1368);
    let ledger = sim.ledger();
    assert_eq!(ledger.len(), 1);
    let entry = &ledger.entries()[0];
    assert_eq!(entry.outcome, ballast_sim::SimOutcome::Success);
    assert_eq!(entry.completion_tokens, 0);
    assert_eq!(cost.parse(), Ok(ledger.billed_usd()));
    let (_, budget) = call(&gateway, admin("GET", "/admin/budget", Some(ADMIN), "")).await;
    assert_eq!(
        budget["budget"]["spent_usd"].as_f64(),
        Some(ledger.billed_usd())
    );

    let again = gateway.router().oneshot(ask()).await.unwrap();
    assert_eq!(header(&again, "x-ballast-cache").as_deref(), Some("hit"));
    assert_eq!(header(&again, "x-ballast-calls").as_deref(), Some("0"));
    let again = again.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(again, first);
    assert_eq!(sim.ledger().len(), 1);

    let (gateway_sim, _server, anthropic) = anthropic_gateway().await;
    let (status, answer) = call(&anthropic, ask()).await;
    assert_eq!(status, 404, "{answer}");
    assert_eq!(answer["error"]["type"], "not_found");
    assert_eq!(gateway_sim.ledger().len(), 0);
}

/// OpenAI's calls that are not text generation pass through to an OpenAI-compatible
/// provider as they came (the simulated API refuses a field a middleware adds, as OpenAI's
/// does) and are charged what their answers report: a moderation nothing, an image of
/// `gpt-image-1` its bill to the picodollar, one of `dall-e-3` (billed by the image, no
/// usage in its answer) its bound, the model's dearest image. Never cached. A gateway whose provider
/// is not OpenAI-compatible answers 404 and calls nothing.
#[tokio::test]
async fn moderations_and_images_pass_through() {
    // gpt-image-1's table price: $10 and $40 a million tokens.
    let price = ballast_sim::Price {
        input: 100_000,
        cached_input: 25_000,
        output: 400_000,
    };
    let (sim, _server, gateway) = cached_openai_gateway(price).await;
    let ask = |path: &str, body: &str| {
        http::Request::post(path)
            .header("content-type", "application/json")
            .body(Body::from(body.to_owned()))
            .unwrap()
    };
    let moderation = r#"{"model":"omni-moderation-latest","input":"hello"}"#;
    let answer = gateway
        .router()
        .oneshot(ask("/v1/moderations", moderation))
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(header(&answer, "x-ballast-cost-usd").as_deref(), Some("0"));
    assert_eq!(header(&answer, "x-ballast-cache"), None);
    let body = answer.into_body().collect().await.unwrap().to_bytes();
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["results"][0]["flagged"], false, "{body}");

    let image = r#"{"model":"gpt-image-1","prompt":"a lighthouse","n":1}"#;
    for _ in 0..2 {
        let answer = gateway
            .router()
            .oneshot(ask("/v1/images/generations", image))
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        // Each a call of its own, charged its bill: the last entry's.
        let billed = sim.ledger().entries().last().unwrap().billed_ticks;
        let cost = header(&answer, "x-ballast-cost-usd").unwrap();
        assert_eq!(cost.parse(), Ok(billed as f64 / 1e10));
        assert_eq!(header(&answer, "x-ballast-calls").as_deref(), Some("1"));
    }
    let dalle = r#"{"model":"dall-e-3","prompt":"a lighthouse"}"#;
    let answer = gateway
        .router()
        .oneshot(ask("/v1/images/generations", dalle))
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    // Its bound: its dearest image, $0.12, against a bill of $0.04.
    assert_eq!(
        header(&answer, "x-ballast-cost-usd").as_deref(),
        Some("0.120000192")
    );
    let ledger = sim.ledger();
    assert_eq!(ledger.len(), 3);
    assert_eq!(ledger.count(ballast_sim::SimOutcome::Success), 3);
    assert_eq!(
        ledger.entries()[2].billed_ticks,
        ballast_sim::PER_IMAGE_TICKS
    );

    let (anthropic_sim, _server, anthropic) = anthropic_gateway().await;
    let (status, answer) = call(&anthropic, ask("/v1/moderations", moderation)).await;
    assert_eq!(status, 404, "{answer}");
    assert_eq!(anthropic_sim.ledger().len(), 0);
}

/// A caller's own timeout (`x-ballast-timeout`, or the `x-stainless-timeout` /
/// `x-stainless-read-timeout` seconds the OpenAI and Anthropic SDKs send) is the deadline of
/// its call: with the throttle at one call a minute, a second call that may wait 3 s is
/// refused at once with a `Retry-After` that tells the real wait (about a minute), instead
/// of being served to a caller that left; nothing reaches the provider for it. A timeout
/// longer than the wait changes nothing (checked with the first call, which waits for none).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_timeout_is_its_calls_deadline() {
    let (sim, _server, gateway) = xai_gateway(&[("BALLAST_THROTTLE", "1")]).await;
    let ask = |name: &str, seconds: &str| {
        let mut request = chat();
        request.headers_mut().insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            http::HeaderValue::from_str(seconds).unwrap(),
        );
        request
    };
    let first = gateway
        .router()
        .oneshot(ask("x-stainless-read-timeout", "600.0"))
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    for (name, seconds) in [("x-ballast-timeout", "3"), ("x-stainless-timeout", "3.0")] {
        let refused = gateway.router().oneshot(ask(name, seconds)).await.unwrap();
        assert_eq!(refused.status(), 429, "{name}");
        let wait: u64 = refused.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((50..=60).contains(&wait), "{name}: Retry-After {wait}");
    }
    assert_eq!(sim.ledger().len(), 1);
}

/// `BALLAST_FALLBACKS` beginning with `|` puts its first target alongside the provider:
/// the two share the load (calls taken in turn when neither is busy), where a fallback
/// would take nothing while the provider serves. The target alongside is another
/// provider's (an OpenAI-compatible one serving the model), or a second key of the same
/// provider (`| xai@2`: its key from `XAI_API_KEY_2`, its address from `XAI_BASE_URL_2`);
/// each simulated account takes only its own key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_alongside_the_provider_share_its_load() {
    let cases = [
        (
            ("LLM_API_KEY", "LLM_BASE_URL"),
            "sk-compatible-key",
            "| openai_compatible:grok-code-fast-1",
        ),
        (
            ("XAI_API_KEY_2", "XAI_BASE_URL_2"),
            "xai-second-account-key",
            "| xai@2",
        ),
    ];
    for ((key_var, url_var), second_key, fallbacks) in cases {
        let (first, second) = (simulator(KEY), simulator(second_key));
        let first_server = SimServer::start(first.clone()).await.unwrap();
        let second_server = SimServer::start(second.clone()).await.unwrap();
        let (first_base, second_base) = (
            format!("{}/v1", first_server.url()),
            format!("{}/v1", second_server.url()),
        );
        let config = GatewayConfig::from_settings(&settings(&[
            ("XAI_API_KEY", KEY),
            ("XAI_BASE_URL", &first_base),
            (key_var, second_key),
            (url_var, &second_base),
            ("BALLAST_FALLBACKS", fallbacks),
        ]))
        .unwrap();
        let gateway = Gateway::new(&config, None).unwrap();
        for _ in 0..6 {
            let (status, answer) = call(&gateway, chat()).await;
            assert_eq!(status, 200, "{fallbacks}: {answer}");
        }
        // Every call carried its account's key (a wrong one is refused, and in the ledger).
        for ledger in [first.ledger(), second.ledger()] {
            assert_eq!(ledger.len(), 3, "{fallbacks}");
            assert_eq!(ledger.count(ballast_sim::SimOutcome::Success), 3);
        }
    }
}

/// `POST /v1/completions` (the legacy API code editors use for fill-in-the-middle): served
/// through the stack, streamed from its first text, the budget equal to the bill; 404 on a
/// gateway with no OpenAI-compatible target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_completions_are_served() {
    let (sim, _server, gateway) = xai_gateway(&[]).await;
    let ask = |stream: bool| {
        http::Request::post("/v1/completions")
            .header("content-type", "application/json")
            .body(Body::from(format!(
                r#"{{"model":"grok-code-fast-1","prompt":"fn main() {{","suffix":"}}","max_tokens":30,"stream":{stream}}}"#
            )))
            .unwrap()
    };
    let (status, answer) = call(&gateway, ask(false)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["object"], "text_completion");
    let streamed = gateway.router().oneshot(ask(true)).await.unwrap();
    assert_eq!(streamed.status(), 200);
    let events = streamed.into_body().collect().await.unwrap().to_bytes();
    let events = String::from_utf8(events.to_vec()).unwrap();
    assert!(
        events.starts_with(r#"data: {"choices":[{"finish_reason":null"#),
        "{events}"
    );
    assert!(events.trim_end().ends_with("data: [DONE]"), "{events}");
    // The usage the gateway asked for on the caller's behalf is read, not handed on.
    assert!(!events.contains(r#""choices":[]"#), "{events}");
    let ledger = sim.ledger();
    assert_eq!(ledger.count(ballast_sim::SimOutcome::Success), 2);
    let (_, budget) = call(&gateway, admin("GET", "/admin/budget", Some(ADMIN), "")).await;
    assert_eq!(
        budget["budget"]["spent_usd"].as_f64(),
        Some(ledger.billed_usd())
    );
    let (_, _server, anthropic) = anthropic_gateway().await;
    let (status, answer) = call(&anthropic, ask(false)).await;
    assert_eq!(status, 404, "{answer}");
    assert_eq!(answer["error"]["type"], "not_found");
}

/// With the cache on, identical calls at once make one provider call: the first leads, the
/// others wait for its answer and get it from the cache (`x-ballast-cache: hit`, no call,
/// nothing spent), byte for byte. Streams do not wait (their answer is kept only at their
/// end): each makes its own call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_calls_at_once_make_one_provider_call() {
    let (sim, _server, gateway) = xai_gateway(&[("BALLAST_CACHE_TTL", "600")]).await;
    let send = |stream: bool| {
        let router = gateway.router();
        async move {
            let body = format!(
                r#"{{"model":"grok-code-fast-1","messages":[{{"role":"user","content":"same"}}],"max_tokens":20,"stream":{stream}}}"#
            );
            let request = http::Request::post("/v1/chat/completions")
                .header("content-type", "application/json")
                .body(Body::from(body))
                .unwrap();
            let answer = router.oneshot(request).await.unwrap();
            let cache = answer.headers()["x-ballast-cache"]
                .to_str()
                .unwrap()
                .to_owned();
            let bytes = answer.into_body().collect().await.unwrap().to_bytes();
            (cache, bytes)
        }
    };
    let answers = futures::future::join_all((0..8).map(|_| send(false))).await;
    let mut caches: Vec<&str> = answers.iter().map(|(cache, _)| cache.as_str()).collect();
    caches.sort();
    assert_eq!(
        caches,
        ["hit"; 7]
            .iter()
            .chain(&["miss"])
            .copied()
            .collect::<Vec<_>>()
    );
    assert!(answers.iter().all(|(_, bytes)| *bytes == answers[0].1));
    assert_eq!(sim.ledger().len(), 1);

    let streams = futures::future::join_all((0..4).map(|_| send(true))).await;
    assert!(streams.iter().all(|(cache, _)| cache == "miss"));
    assert_eq!(sim.ledger().len(), 5);
}
