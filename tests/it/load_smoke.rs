//! A tiny run of the load harness (benches/load), so the harness keeps compiling and working.
//! No timing assertions: only that every scenario part runs and reports sane numbers.

#[path = "../../benches/load/harness.rs"]
mod harness;
#[path = "../../benches/load/receiver.rs"]
mod receiver;

#[test]
fn load_harness_runs_throughput_and_timer_scenarios() {
    let r = harness::throughput(harness::Mode::Rest, 2, 400, 1);
    assert_eq!(r["deliveries"], 400, "{r}");
    for key in ["per_sec", "ceiling_per_sec", "ratio", "cpu_us", "ceiling_cpu_us", "p50_ms", "p99_ms", "peak_rss_mib"] {
        assert!(r[key].as_f64().is_some_and(|v| v > 0.0), "{key} in {r}");
    }
    let t = harness::timers(200, 20);
    assert_eq!(t["retries"], 20, "{t}");
    assert!(t["early_min_ms"].as_f64().unwrap() > -5.0, "a retry came early: {t}");
}
