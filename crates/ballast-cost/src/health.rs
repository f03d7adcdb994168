//! [`HealthMonitor`]: error rate and latency over a rolling window, with warnings.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use ballast_classify::window::RollingCounts;
use foldhash::HashMap;
use tokio::time::Instant;

/// When a [`HealthMonitor`] calls the provider unhealthy.
///
/// The defaults are the story's: above 20% errors means trouble, an average latency above
/// 30 s means complaints; judged over the last five minutes once it holds 10 calls.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthConfig {
    /// The rolling window.
    pub window: Duration,
    /// How many buckets the window is kept in.
    pub buckets: u32,
    /// Calls needed before a verdict.
    pub min_calls: u64,
    /// Error rate above which the provider is unhealthy.
    pub max_error_rate: f64,
    /// Average latency above which the provider is unhealthy.
    pub max_avg_latency: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(300),
            buckets: 30,
            min_calls: 10,
            max_error_rate: 0.2,
            max_avg_latency: Duration::from_secs(30),
        }
    }
}

/// The monitor's verdict now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HealthStatus {
    /// Calls in the window.
    pub calls: u64,
    /// Failed calls in the window.
    pub errors: u64,
    /// `errors / calls`.
    pub error_rate: f64,
    /// Mean latency of the window's calls.
    pub avg_latency: Duration,
    /// The error rate is over its threshold.
    pub error_rate_high: bool,
    /// The average latency is over its threshold.
    pub latency_high: bool,
}

impl HealthStatus {
    /// Neither threshold is passed (or there are too few calls to judge).
    pub fn is_healthy(&self) -> bool {
        !self.error_rate_high && !self.latency_high
    }
}

impl fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} calls, {:.1}% errors, {:.1}s average latency",
            self.calls,
            self.error_rate * 100.0,
            self.avg_latency.as_secs_f64()
        )
    }
}

/// Models with a window of their own; past this, calls count in the overall window only.
const MAX_MODELS: usize = 256;

/// One rolling window of calls (the shared [`RollingCounts`]: calls, errors, latency in
/// milliseconds), and whether its alerts are raised.
#[derive(Debug)]
struct Window {
    counts: RollingCounts<3>,
    bucket_nanos: u64,
    alerting_errors: AtomicBool,
    alerting_latency: AtomicBool,
    /// The last bucket in which the verdict was worked out.
    judged_bucket: AtomicU64,
}

impl Window {
    fn new(buckets: u32, bucket_nanos: u64) -> Self {
        Self {
            counts: RollingCounts::new(buckets, bucket_nanos),
            bucket_nanos: bucket_nanos.max(1),
            alerting_errors: AtomicBool::new(false),
            alerting_latency: AtomicBool::new(false),
            judged_bucket: AtomicU64::new(u64::MAX),
        }
    }

    /// Counts one call and logs a threshold it makes the window cross.
    ///
    /// The verdict (a sum over every bucket) is worked out only when it may change: after a
    /// failed call or one slower than the latency threshold, while an alert is raised (so
    /// that its clearing is seen), and once per bucket of time. A healthy window fed fast
    /// successes thus pays one sum per bucket, not one per call; a crossing a success causes
    /// (the window filling up to `min_calls`, old calls leaving it) is seen within a bucket.
    fn record(
        &self,
        config: &HealthConfig,
        now: u64,
        error: bool,
        latency: Duration,
        model: Option<&str>,
    ) {
        let ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
        self.counts.add(now, [1, u64::from(error), ms]);
        let may_cross = error
            || latency > config.max_avg_latency
            || self.alerting_errors.load(Ordering::Relaxed)
            || self.alerting_latency.load(Ordering::Relaxed)
            || {
                let bucket = now / self.bucket_nanos;
                self.judged_bucket.load(Ordering::Relaxed) != bucket
                    && self.judged_bucket.swap(bucket, Ordering::Relaxed) != bucket
            };
        if may_cross {
            self.alert(config, &self.status(config, now), model);
        }
    }

    /// The verdict at `now` (nanoseconds since the monitor's epoch).
    fn status(&self, config: &HealthConfig, now: u64) -> HealthStatus {
        let [calls, errors, latency_ms] = self.counts.totals(now);
        let error_rate = if calls == 0 {
            0.0
        } else {
            errors as f64 / calls as f64
        };
        let avg_latency = Duration::from_millis(latency_ms.checked_div(calls).unwrap_or(0));
        let enough = calls >= config.min_calls.max(1);
        HealthStatus {
            calls,
            errors,
            error_rate,
            avg_latency,
            error_rate_high: enough && error_rate > config.max_error_rate,
            latency_high: enough && avg_latency > config.max_avg_latency,
        }
    }

    /// Logs a threshold crossed or cleared (once per crossing, not per call); `model` names
    /// a model's own window, `None` the overall one.
    fn alert(&self, config: &HealthConfig, status: &HealthStatus, model: Option<&str>) {
        let who = || model.map_or_else(String::new, |model| format!("model {model:?}: "));
        if self
            .alerting_errors
            .swap(status.error_rate_high, Ordering::AcqRel)
            != status.error_rate_high
        {
            if status.error_rate_high {
                tracing::warn!(target: "ballast::health", model, error_rate = status.error_rate, calls = status.calls, "{}provider error rate above {:.0}%: {status}", who(), config.max_error_rate * 100.0);
            } else {
                tracing::info!(target: "ballast::health", model, error_rate = status.error_rate, "{}provider error rate back to normal: {status}", who());
            }
        }
        if self
            .alerting_latency
            .swap(status.latency_high, Ordering::AcqRel)
            != status.latency_high
        {
            if status.latency_high {
                tracing::warn!(target: "ballast::health", model, avg_latency_s = status.avg_latency.as_secs_f64(), "{}provider latency above {:.0}s on average: {status}", who(), config.max_avg_latency.as_secs_f64());
            } else {
                tracing::info!(target: "ballast::health", model, avg_latency_s = status.avg_latency.as_secs_f64(), "{}provider latency back to normal: {status}", who());
            }
        }
    }
}

#[derive(Debug)]
struct Inner {
    config: HealthConfig,
    epoch: Instant,
    bucket_nanos: u64,
    overall: Window,
    /// Each model's own window (bounded: past [`MAX_MODELS`], overall only). Read-mostly:
    /// a lookup is a lock-free snapshot load; a new model copies the map.
    models: ArcSwap<HashMap<Box<str>, Arc<Window>>>,
}

/// Error rate and average latency of logical calls over a rolling window: overall, and per
/// model, so one failing model is seen as that model's trouble, not the provider's.
///
/// Fed by [`CostLogLayer`](crate::CostLogLayer) at call scope (or by hand with
/// [`record`](Self::record) and [`record_for`](Self::record_for)). Crossing a threshold
/// logs one warning (and one info when it clears), not one per call, for the overall window
/// and for each model's; [`status`](Self::status) and [`status_of`](Self::status_of) answer
/// at any time. Clones share the windows.
#[derive(Debug, Clone)]
pub struct HealthMonitor {
    inner: Arc<Inner>,
}

impl HealthMonitor {
    /// A monitor with `config`, its clock starting now.
    pub fn new(config: HealthConfig) -> Self {
        let buckets = config.buckets.max(1);
        let bucket_nanos = u64::try_from((config.window.as_nanos() / u128::from(buckets)).max(1))
            .unwrap_or(u64::MAX);
        Self {
            inner: Arc::new(Inner {
                overall: Window::new(buckets, bucket_nanos),
                config,
                epoch: Instant::now(),
                bucket_nanos,
                models: ArcSwap::from_pointee(HashMap::default()),
            }),
        }
    }

    /// Nanoseconds from the monitor's epoch to `now`.
    fn nanos_at(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.inner.epoch).as_nanos())
            .unwrap_or(u64::MAX)
    }

    fn nanos(&self) -> u64 {
        self.nanos_at(Instant::now())
    }

    /// Records one logical call, in the overall window.
    pub fn record(&self, error: bool, latency: Duration) {
        self.record_at(Instant::now(), None, error, latency);
    }

    /// Records one logical call to `model`: in its window and the overall one.
    pub fn record_for(&self, model: &str, error: bool, latency: Duration) {
        self.record_at(Instant::now(), Some(model), error, latency);
    }

    /// [`record_for`](Self::record_for) for a logger that has just read the clock.
    pub(crate) fn record_at(
        &self,
        now: Instant,
        model: Option<&str>,
        error: bool,
        latency: Duration,
    ) {
        let inner = &*self.inner;
        let now = self.nanos_at(now);
        inner
            .overall
            .record(&inner.config, now, error, latency, None);
        if let Some(model) = model
            && let Some(window) = self.window(model)
        {
            window.record(&inner.config, now, error, latency, Some(model));
        }
    }

    /// `model`'s window, made on first use; `None` past [`MAX_MODELS`].
    fn window(&self, model: &str) -> Option<Arc<Window>> {
        let inner = &*self.inner;
        if let Some(window) = inner.models.load().get(model) {
            return Some(Arc::clone(window));
        }
        let mut made = None;
        inner.models.rcu(|models| {
            let mut models = HashMap::clone(models);
            if let Some(window) = models.get(model) {
                made = Some(Arc::clone(window));
            } else if models.len() < MAX_MODELS {
                let window = Arc::new(Window::new(inner.config.buckets, inner.bucket_nanos));
                made = Some(Arc::clone(&window));
                models.insert(Box::from(model), window);
            } else {
                made = None;
            }
            models
        });
        made
    }

    /// The verdict now, over every call.
    pub fn status(&self) -> HealthStatus {
        self.inner.overall.status(&self.inner.config, self.nanos())
    }

    /// The verdict now for `model`'s calls, if any were recorded for it.
    pub fn status_of(&self, model: &str) -> Option<HealthStatus> {
        let window = Arc::clone(self.inner.models.load().get(model)?);
        Some(window.status(&self.inner.config, self.nanos()))
    }

    /// Every model's verdict now, by model name.
    pub fn statuses(&self) -> Vec<(String, HealthStatus)> {
        let now = self.nanos();
        let mut out: Vec<_> = self
            .inner
            .models
            .load()
            .iter()
            .map(|(model, window)| (model.to_string(), window.status(&self.inner.config, now)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

impl Default for HealthMonitor {
    fn default() -> Self {
        Self::new(HealthConfig::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn thresholds_from_the_story() {
        let monitor = HealthMonitor::default();
        for i in 0..10 {
            monitor.record(i < 2, Duration::from_secs(5));
        }
        let status = monitor.status();
        assert_eq!((status.calls, status.errors), (10, 2));
        assert!(status.is_healthy(), "20% is not above 20%");
        monitor.record(true, Duration::from_secs(5));
        assert!(monitor.status().error_rate_high);
        for _ in 0..20 {
            monitor.record(false, Duration::from_secs(120));
        }
        let status = monitor.status();
        assert!(!status.error_rate_high && status.latency_high, "{status}");
        // Five minutes later the window has forgotten all of it.
        tokio::time::sleep(Duration::from_secs(301)).await;
        assert_eq!(monitor.status().calls, 0);
        assert!(monitor.status().is_healthy());
    }

    /// Each model has its own window: one failing model is that model's trouble, not the
    /// others'; the overall window holds every call.
    #[tokio::test(start_paused = true)]
    async fn one_failing_model_does_not_mark_the_others() {
        let monitor = HealthMonitor::default();
        for _ in 0..10 {
            monitor.record_for("bad", true, Duration::from_secs(1));
            for _ in 0..4 {
                monitor.record_for("good", false, Duration::from_secs(1));
            }
        }
        let bad = monitor.status_of("bad").unwrap();
        let good = monitor.status_of("good").unwrap();
        assert_eq!((bad.calls, bad.errors), (10, 10));
        assert!(bad.error_rate_high);
        assert_eq!((good.calls, good.errors), (40, 0));
        assert!(good.is_healthy());
        let overall = monitor.status();
        assert_eq!((overall.calls, overall.errors), (50, 10));
        assert!(overall.is_healthy(), "20% is not above 20%");
        assert_eq!(monitor.status_of("never"), None);
        let names: Vec<String> = monitor.statuses().into_iter().map(|(m, _)| m).collect();
        assert_eq!(names, ["bad", "good"]);
    }
}
