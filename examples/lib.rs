//! Small helpers the examples share. The examples themselves are the point: see
//! `examples/*.rs` and run them with `cargo run --release --example NAME`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tower::{Service, ServiceBuilder};

/// What crossed the wire: every call sent to the provider and how it was answered, counted
/// under the whole stack so that retries and local refusals are told apart.
#[derive(Debug, Default)]
pub struct WireCounts {
    calls: AtomicU64,
    rate_limited: AtomicU64,
    server_errors: AtomicU64,
    transport_errors: AtomicU64,
}

impl WireCounts {
    /// Calls sent.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Calls answered 429.
    pub fn rate_limited(&self) -> u64 {
        self.rate_limited.load(Ordering::Relaxed)
    }

    /// Calls answered 5xx.
    pub fn server_errors(&self) -> u64 {
        self.server_errors.load(Ordering::Relaxed)
    }

    /// Calls that got no answer (connection errors; timeouts above the client are not seen here).
    pub fn transport_errors(&self) -> u64 {
        self.transport_errors.load(Ordering::Relaxed)
    }

    /// `client`, counting into `counts`.
    pub fn wrap<S, B, R>(
        counts: &Arc<Self>,
        client: S,
    ) -> impl Service<http::Request<B>, Response = http::Response<R>, Error = S::Error, Future: Send>
    + Clone
    + Send
    + Sync
    + 'static
    where
        S: Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + Sync + 'static,
        S::Future: Send + 'static,
        S::Error: 'static,
        B: 'static,
        R: 'static,
    {
        let sent = Arc::clone(counts);
        let answered = Arc::clone(counts);
        let failed = Arc::clone(counts);
        ServiceBuilder::new()
            .map_request(move |request: http::Request<B>| {
                sent.calls.fetch_add(1, Ordering::Relaxed);
                request
            })
            .map_response(move |response: http::Response<R>| {
                let status = response.status();
                if status == http::StatusCode::TOO_MANY_REQUESTS {
                    answered.rate_limited.fetch_add(1, Ordering::Relaxed);
                } else if status.is_server_error() {
                    answered.server_errors.fetch_add(1, Ordering::Relaxed);
                }
                response
            })
            .map_err(move |error: S::Error| {
                failed.transport_errors.fetch_add(1, Ordering::Relaxed);
                error
            })
            .service(client)
    }
}

/// The `p`-th percentile (0.0 to 1.0) of `samples`, by nearest rank; zero when empty.
///
/// ```
/// use std::time::Duration;
/// let mut samples = vec![Duration::from_millis(30), Duration::from_millis(10), Duration::from_millis(20)];
/// assert_eq!(ballast_examples::percentile(&mut samples, 0.5), Duration::from_millis(20));
/// ```
pub fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.sort_unstable();
    let rank = ((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len());
    samples[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let ms = Duration::from_millis;
        let mut samples = vec![ms(5), ms(1), ms(3), ms(2), ms(4)];
        assert_eq!(percentile(&mut samples, 0.5), ms(3));
        assert_eq!(percentile(&mut samples, 0.95), ms(5));
        assert_eq!(percentile(&mut samples, 0.0), ms(1));
        assert_eq!(percentile(&mut [], 0.5), Duration::ZERO);
    }
}
