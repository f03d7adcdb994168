//! Small helpers the examples share. The examples themselves are the point: see
//! `examples/*.rs` and run them with `cargo run --release --example NAME`.

use std::time::Duration;

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
