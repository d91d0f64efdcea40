//! Histograms, progress lines and the formatting of the summaries.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// A histogram of microseconds from 1 µs to 10 minutes, 3 significant digits.
pub fn histogram() -> Result<Histogram<u64>, hdrhistogram::CreationError> {
    Histogram::new_with_bounds(1, 600_000_000, 3)
}

/// A duration in whole microseconds, at least 1 (the histogram's floor).
pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// Microseconds as milliseconds with 3 decimals (`1.234 ms`).
pub fn ms(us: u64) -> String {
    format!("{:.3} ms", us as f64 / 1000.0)
}

/// `p50 … p99 … p99.9 … max` of a histogram of microseconds.
pub fn percentiles(h: &Histogram<u64>) -> String {
    if h.is_empty() {
        return "no samples".into();
    }
    format!(
        "p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  (n={})",
        ms(h.value_at_quantile(0.50)),
        ms(h.value_at_quantile(0.90)),
        ms(h.value_at_quantile(0.99)),
        ms(h.value_at_quantile(0.999)),
        ms(h.max()),
        h.len()
    )
}

/// A progress line printed to stderr every second until stopped.
pub struct Progress {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    /// Starts printing `[phase t=…s] {status()}` (of `total`) every second.
    pub fn start<F>(phase: &'static str, total: usize, status: F) -> Self
    where
        F: Fn() -> String + Send + 'static,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let started = Instant::now();
        let thread = std::thread::Builder::new()
            .name(format!("progress-{phase}"))
            .spawn(move || {
                let mut next = started + Duration::from_secs(1);
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                    if Instant::now() >= next {
                        eprintln!(
                            "[{phase} {:>5.1}s] {} (of {total})",
                            started.elapsed().as_secs_f64(),
                            status()
                        );
                        next += Duration::from_secs(1);
                    }
                }
            })
            .ok();
        Self { stop, thread }
    }

    /// Stops printing.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.halt();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn percentiles_read_in_milliseconds() {
        let mut h = histogram().unwrap();
        for us in 1..=1000u64 {
            h.record(us).unwrap();
        }
        let line = percentiles(&h);
        assert!(line.starts_with("p50 0.500 ms"), "{line}");
        assert!(line.contains("max 1.000 ms"), "{line}");
        assert_eq!(percentiles(&histogram().unwrap()), "no samples");
        assert_eq!(micros(Duration::ZERO), 1);
        assert_eq!(ms(1500), "1.500 ms");
    }
}
