//! Fixtures the benchmarks share: realistic provider responses.
//!
//! ```
//! let response = ballast_benches::response(200, ballast_benches::success_body_2kb());
//! assert_eq!(response.status(), 200);
//! ```

use std::time::{Duration, Instant};

use bytes::Bytes;

/// Runs `iters` calls of `call` split over `tasks` tasks on a runtime of `threads` workers
/// (timers on); returns the wall time, for criterion's `iter_custom`.
pub fn run_tasks<F, Fut>(threads: usize, tasks: u64, iters: u64, call: F) -> Duration
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future + Send + 'static,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_time()
        .build()
        .unwrap_or_else(|e| panic!("a runtime: {e}"));
    let per_task = iters.div_ceil(tasks.max(1));
    runtime.block_on(async move {
        let start = Instant::now();
        let handles: Vec<_> = (0..tasks)
            .map(|_| {
                let call = call.clone();
                tokio::spawn(async move {
                    for _ in 0..per_task {
                        call().await;
                    }
                })
            })
            .collect();
        for handle in handles {
            let _ = handle.await;
        }
        start.elapsed()
    })
}

/// A chat completion of about 2 KB, as xAI returns it (OpenAI shape, cost in ticks).
pub fn success_body_2kb() -> Bytes {
    let content =
        "The quick brown fox jumps over the lazy dog while the compiler checks every borrow. "
            .repeat(20);
    Bytes::from(format!(
        r#"{{"id":"chatcmpl-7f3a","object":"chat.completion","created":1764000000,"model":"grok-code-fast-1","choices":[{{"index":0,"message":{{"role":"assistant","content":"{content}"}},"finish_reason":"stop"}}],"usage":{{"prompt_tokens":812,"completion_tokens":421,"total_tokens":1233,"prompt_tokens_details":{{"cached_tokens":640}},"completion_tokens_details":{{"reasoning_tokens":0}},"cost_in_usd_ticks":6692400}},"system_fingerprint":"fp_sim"}}"#
    ))
}

/// The smallest chat completion that still carries everything the stack reads (a finish
/// reason and the usage object): with it, a stack's time over the bare service is its
/// control bookkeeping, the body work (a few dozen bytes) left out.
pub fn success_body_small() -> Bytes {
    Bytes::from_static(
        br#"{"choices":[{"finish_reason":"stop"}],"usage":{"prompt_tokens":812,"completion_tokens":421}}"#,
    )
}

/// xAI's 429 with a hint in the message.
pub fn rate_limited_body() -> Bytes {
    Bytes::from_static(
        br#"{"code":"Some resource has been exhausted","error":"Too many requests. Please try again in 12 seconds."}"#,
    )
}

/// A response with `status`, JSON content type and `body`.
pub fn response(status: u16, body: Bytes) -> http::Response<Bytes> {
    let mut response = http::Response::new(body);
    *response.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// The release gateway (`crates/ballast-gateway`, built first: `cargo build --release
/// -p ballast-gateway`; `BALLAST_PROXY_BIN` overrides the path) started in front of
/// `upstream` (a base URL with its `/v1`), on a free loopback port, with `env` on top of a
/// key, a large budget and quiet logs; waits until it accepts. Kill the child when done.
pub fn spawn_proxy(
    upstream: &str,
    env: &[(&str, &str)],
) -> (std::process::Child, std::net::SocketAddr) {
    use std::process::{Command, Stdio};
    let bin = std::env::var("BALLAST_PROXY_BIN").unwrap_or_else(|_| {
        format!(
            "{}/../target/release/ballast-gateway",
            env!("CARGO_MANIFEST_DIR")
        )
    });
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        probe.local_addr().map(|a| a.port()).unwrap_or(0)
    };
    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut command = Command::new(&bin);
    command
        .env("XAI_API_KEY", "xai-loadtestloadtestloadtest")
        .env("XAI_BASE_URL", upstream)
        .env("BALLAST_LISTEN", listen.to_string())
        .env("DAILY_BUDGET_USD", "1000000")
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().unwrap_or_else(|e| {
        panic!("{bin}: {e} (build it: cargo build --release -p ballast-gateway)")
    });
    for _ in 0..200 {
        if std::net::TcpStream::connect(listen).is_ok() {
            return (child, listen);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the proxy did not start listening on {listen}");
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_success_body_is_about_2kb_of_json() {
        let body = super::success_body_2kb();
        assert!((1800..2400).contains(&body.len()), "{}", body.len());
        assert!(body.starts_with(b"{") && body.ends_with(b"}"));
    }
}
