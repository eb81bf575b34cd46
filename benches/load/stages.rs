//! `LOAD_STAGES=1`: where a throughput run's outstanding deliveries wait (library publishes).
//!
//! The harness keeps at most `OUTSTANDING` deliveries published but not yet received. A sampler
//! thread reads every 0.5 ms how many publishes have started and returned (a publish returns once
//! its commit is durable) and how many deliveries arrived, and splits the outstanding deliveries
//! into the commit stage (published, commit not yet returned) and the delivery stage (committed,
//! not yet received). A high commit stage with arrival-free slots means the commit cadence, not
//! the delivery threads, bounds the rate (BENCHMARKS.md, "Commit cadence").

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// Library publishes started and returned in the current measured run.
pub(crate) static STARTED: AtomicU64 = AtomicU64::new(0);
pub(crate) static RETURNED: AtomicU64 = AtomicU64::new(0);

pub(crate) fn enabled() -> bool {
    std::env::var("LOAD_STAGES").is_ok()
}

/// Samples (publishes started, returned, deliveries arrived) until stopped.
pub(crate) struct Sampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<(u64, u64, u64)>>,
}

impl Sampler {
    pub(crate) fn start(arrived: impl Fn() -> u64 + Send + 'static) -> Self {
        STARTED.store(0, Ordering::SeqCst);
        RETURNED.store(0, Ordering::SeqCst);
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut samples = Vec::new();
            while !stopped.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_micros(500));
                samples.push((STARTED.load(Ordering::Relaxed), RETURNED.load(Ordering::Relaxed), arrived()));
            }
            samples
        });
        Self { stop, thread }
    }

    /// Stops and prints the mean of each stage (in deliveries) and the share of samples in which
    /// no delivery arrived.
    pub(crate) fn report(self, fanout: u32) {
        self.stop.store(true, Ordering::Relaxed);
        let samples = self.thread.join().unwrap();
        let n = samples.len().max(1) as f64;
        let (mut commit, mut delivery, mut quiet, mut last) = (0.0, 0.0, 0usize, 0u64);
        for &(started, returned, arrived) in &samples {
            commit += (started - returned) as f64 * f64::from(fanout);
            delivery += (returned * u64::from(fanout)).saturating_sub(arrived) as f64;
            quiet += usize::from(arrived == last);
            last = arrived;
        }
        eprintln!(
            "stages: commit {:.0} deliveries, delivery {:.0} deliveries, no arrival in {:.0} % of {} samples",
            commit / n,
            delivery / n,
            100.0 * quiet as f64 / n,
            samples.len()
        );
    }
}
