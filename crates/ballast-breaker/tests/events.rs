//! Transitions are logged and counted. Its own test binary: `tracing` caches call-site
//! interest per process, and `metrics` recorders are installed per thread here.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ballast_breaker::{BreakerConfig, BreakerLayer};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::{CompositeKey, MetricKind};
use tower::{Layer, ServiceExt};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn every_transition_is_logged_and_counted() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        metrics::with_local_recorder(&recorder, || {
            let rt = ballast_sim::paused_runtime().unwrap();
            rt.block_on(async {
                let status = Arc::new(AtomicU64::new(500));
                let provider = {
                    let status = Arc::clone(&status);
                    tower::service_fn(move |_request: http::Request<String>| {
                        let code = status.load(Ordering::SeqCst) as u16;
                        async move {
                            Ok::<_, std::convert::Infallible>(
                                http::Response::builder().status(code).body(()).unwrap(),
                            )
                        }
                    })
                };
                let layer = BreakerLayer::new(BreakerConfig {
                    open_jitter: 0.0,
                    ..BreakerConfig::default()
                });
                let service = layer.layer(provider);
                let request = || {
                    let mut request = http::Request::post("https://api.x.ai/v1/chat/completions")
                        .body(String::from(r#"{"model":"m"}"#))
                        .unwrap();
                    ballast_classify::RequestFacts::note(&mut request);
                    request
                };
                for _ in 0..5 {
                    service.clone().oneshot(request()).await.unwrap();
                }
                status.store(200, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(5)).await;
                service.clone().oneshot(request()).await.unwrap();
            });
        });
    });
    let logs = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    for (level, to) in [("WARN", "open"), ("INFO", "half_open"), ("INFO", "closed")] {
        assert!(
            logs.lines().any(|l| l.contains(level)
                && l.contains("breaker=api.x.ai/m")
                && l.contains(&format!("to=\"{to}\""))),
            "no {level} event for {to}:\n{logs}"
        );
    }
    let metrics: Vec<(CompositeKey, DebugValue)> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| (key, value))
        .collect();
    let value = |kind: MetricKind, name: &str, labels: &[(&str, &str)]| {
        metrics
            .iter()
            .find_map(|(key, value): &(CompositeKey, DebugValue)| {
                let key_labels: Vec<(&str, &str)> =
                    key.key().labels().map(|l| (l.key(), l.value())).collect();
                (key.kind() == kind
                    && key.key().name() == name
                    && labels.iter().all(|l| key_labels.contains(l)))
                .then_some(value)
            })
    };
    for to in ["open", "half_open", "closed"] {
        assert_eq!(
            value(
                MetricKind::Counter,
                "ballast_breaker_transitions_total",
                &[("breaker", "api.x.ai/m"), ("to", to)]
            ),
            Some(&DebugValue::Counter(1)),
            "transition to {to}"
        );
    }
    assert!(matches!(
        value(MetricKind::Gauge, "ballast_breaker_closed", &[("breaker", "api.x.ai/m")]),
        Some(DebugValue::Gauge(v)) if v.into_inner() == 1.0
    ));
}
