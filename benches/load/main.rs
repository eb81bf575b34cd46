//! End-to-end load harness (`cargo bench --bench load -- <scenario> [options]`).
//!
//! Starts the real system (embedded SQLite on disk, real actors, real HTTP) and an in-process
//! multi-threaded hyper receiver on 127.0.0.1, measures deliveries per second, CPU per delivery,
//! publish→receipt latency and peak RSS, next to a plain reqwest client (the ceiling) in the same
//! run. `all` runs every scenario in a fresh process and prints the tables for BENCHMARKS.md.
//!
//! ```text
//! cargo bench --bench load -- all [--quick]
//! cargo bench --bench load -- throughput --mode rest|library --fanout 10 --deliveries 60000 [--rounds 3]
//! cargo bench --bench load -- clients --requests 60000           # reqwest, raw hyper, client layouts
//! cargo bench --bench load -- client-options --requests 60000 [--rounds 3]  # the delivery client's options
//! cargo bench --bench load -- isolation --deliveries 40000
//! cargo bench --bench load -- fleet --webhooks 100000
//! cargo bench --bench load -- backlog --backlog 1000000 --db /tmp/backlog.db [--port 47801]
//! cargo bench --bench load -- restart --db /tmp/backlog.db --drain 1000000 [--port 47801]
//! cargo bench --bench load -- timers --deliveries 60000 --retries 2000
//! LOAD_DATABASE_URL=postgres://postgres@127.0.0.1/test cargo bench --bench load -- throughput ...  # on PostgreSQL
//! cargo bench --bench load -- cluster --nodes 3 --fanout 10 --deliveries 60000 [--rounds 3]
//! cargo bench --bench load -- pg-all [--quick]     # the PostgreSQL rows of BENCHMARKS.md
//! cargo bench --bench load -- soak --seconds 300 --rate 100 --fanout 2 --retention-secs 20 \
//!     --prune-secs 5 --sample-secs 15             # retention: database size and RSS flat under load
//! ```
//!
//! The PostgreSQL scenarios use `LOAD_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/test`),
//! a fresh schema per run.

mod cluster;
mod harness;
mod pg;
mod receiver;
mod soak;
mod stages;

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

fn num(args: &[String], name: &str, default: u64) -> u64 {
    arg(args, name).map(|v| v.parse().expect("a number")).unwrap_or(default)
}

fn main() {
    // As the server binary does (src/main.rs): transparent huge pages off unless
    // `MIMALLOC_ALLOW_THP` is set.
    #[cfg(target_os = "linux")]
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        let _ = rustix::thread::disable_transparent_huge_pages(true);
    }
    let _ = *receiver::EPOCH;
    if let Ok(filter) = std::env::var("LOAD_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .init();
    }
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let Some(scenario) = args.first().cloned() else {
        eprintln!(
            "usage: cargo bench --bench load -- <all|throughput|isolation|fleet|backlog|restart|timers> [options]"
        );
        std::process::exit(2);
    };
    let result = match scenario.as_str() {
        "all" => return run_all(args.iter().any(|a| a == "--quick")),
        "pg-all" => return run_pg(args.iter().any(|a| a == "--quick")),
        "cluster" => cluster::cluster(
            num(&args, "--nodes", 3) as usize,
            num(&args, "--fanout", 10) as usize,
            num(&args, "--deliveries", 60_000),
            num(&args, "--rounds", 3) as usize,
        ),
        "throughput" => harness::throughput(
            harness::Mode::parse(&arg(&args, "--mode").unwrap_or_default()),
            num(&args, "--fanout", 10) as usize,
            num(&args, "--deliveries", 60_000),
            num(&args, "--rounds", 3) as usize,
        ),
        "clients" => harness::clients(num(&args, "--requests", 60_000)),
        "client-options" => {
            harness::client_options(num(&args, "--requests", 60_000), num(&args, "--rounds", 3) as usize)
        }
        "isolation" => harness::isolation(num(&args, "--deliveries", 40_000)),
        "fleet" => harness::fleet(num(&args, "--webhooks", 100_000) as usize),
        "backlog" => {
            harness::backlog(num(&args, "--backlog", 1_000_000), &db_arg(&args), num(&args, "--port", 47_801) as u16)
        }
        "restart" => {
            harness::restart(&db_arg(&args), num(&args, "--drain", 1_000_000), num(&args, "--port", 47_801) as u16)
        }
        "timers" => harness::timers(num(&args, "--deliveries", 60_000), num(&args, "--retries", 2_000)),
        "soak" => {
            let result = soak::soak(soak::Soak {
                seconds: num(&args, "--seconds", 300),
                rate: num(&args, "--rate", 100),
                fanout: num(&args, "--fanout", 2) as usize,
                retention: std::time::Duration::from_secs(num(&args, "--retention-secs", 20)),
                prune_every: std::time::Duration::from_secs(num(&args, "--prune-secs", 5)),
                sample_every: std::time::Duration::from_secs(num(&args, "--sample-secs", 15)),
            });
            if let Some(samples) = result["samples"].as_array() {
                println!("### Soak\n");
                table(
                    samples,
                    &[
                        "t_s",
                        "published",
                        "publish_errors",
                        "delivered",
                        "events",
                        "deliveries",
                        "attempts",
                        "pruned_rows",
                        "db_mib",
                        "wal_mib",
                        "rss_mib",
                    ],
                );
            }
            let mut summary = result.clone();
            summary.as_object_mut().unwrap().remove("samples");
            println!("{summary}");
            return;
        }
        other => {
            eprintln!("unknown scenario `{other}`");
            std::process::exit(2);
        }
    };
    println!("{result}");
}

fn db_arg(args: &[String]) -> PathBuf {
    arg(args, "--db").map(PathBuf::from).unwrap_or_else(|| std::env::temp_dir().join("servio-backlog.db"))
}

/// Runs one scenario in a child process (fresh memory, fresh threads) and parses its JSON line.
fn child(args: &[&str]) -> Value {
    child_env(args, &[])
}

/// [`child`] with extra environment variables.
fn child_env(args: &[&str], env: &[(&str, &str)]) -> Value {
    eprintln!("== {}", args.join(" "));
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("child runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        panic!("scenario {args:?} failed");
    }
    let line = stdout.lines().last().unwrap_or_default();
    eprintln!("   {line}");
    serde_json::from_str(line).expect("scenario prints JSON")
}

fn table(rows: &[Value], columns: &[&str]) {
    println!("| {} |", columns.join(" | "));
    println!("|{}|", columns.iter().map(|_| "---").collect::<Vec<_>>().join("|"));
    for r in rows {
        let cells: Vec<String> = columns
            .iter()
            .map(|c| match &r[*c] {
                Value::String(s) => s.clone(),
                Value::Null => "".into(),
                v => v.to_string(),
            })
            .collect();
        println!("| {} |", cells.join(" | "));
    }
    println!();
}

fn run_all(quick: bool) {
    let scale = |full: u64, small: u64| if quick { small } else { full }.to_string();
    let d = scale(60_000, 6_000);
    let rounds = if quick { "1" } else { "3" };
    let mut rows = Vec::new();
    for mode in ["library", "rest"] {
        for fanout in ["1", "10", "100"] {
            rows.push(child(&[
                "throughput",
                "--mode",
                mode,
                "--fanout",
                fanout,
                "--deliveries",
                &d,
                "--rounds",
                rounds,
            ]));
        }
    }
    println!("### Throughput\n");
    table(
        &rows,
        &[
            "mode",
            "fanout",
            "deliveries",
            "per_sec",
            "ceiling_per_sec",
            "ratio",
            "round_ratios",
            "cpu_us",
            "ceiling_cpu_us",
            "cpu_ratio",
            "p50_ms",
            "p99_ms",
            "ceiling_p99_ms",
            "peak_rss_mib",
        ],
    );
    let iso = child(&["isolation", "--deliveries", &scale(40_000, 4_000)]);
    println!("### Isolation\n");
    table(
        &[iso],
        &[
            "deliveries",
            "healthy_per_sec",
            "with_bad_per_sec",
            "throughput_ratio",
            "healthy_p99_ms",
            "with_bad_p99_ms",
            "p99_ratio",
        ],
    );
    let fleet = child(&["fleet", "--webhooks", &scale(100_000, 2_000)]);
    println!("### Fleet\n");
    table(
        &[fleet],
        &[
            "webhooks",
            "registrations_per_sec",
            "idle_rss_bytes_per_webhook",
            "rss_before_mib",
            "rss_after_mib",
            "publish_commit_secs",
            "fanout_all_delivered_secs",
            "peak_rss_mib",
        ],
    );
    let db = std::env::temp_dir().join("servio-backlog.db");
    let db = db.to_str().unwrap();
    let backlog = scale(1_000_000, 20_000);
    let b = child(&["backlog", "--backlog", &backlog, "--db", db]);
    println!("### Backlog\n");
    table(
        &[b],
        &[
            "backlog",
            "healthy_alone_per_sec",
            "healthy_beside_up_per_sec",
            "healthy_during_backlog_per_sec",
            "ratio_vs_alone",
            "ratio_vs_beside_up",
            "healthy_alone_p99_ms",
            "healthy_during_p99_ms",
            "pending_gauge",
            "peak_rss_mib",
        ],
    );
    let r = child(&["restart", "--db", db, "--drain", &backlog]);
    println!("### Restart\n");
    table(&[r], &["drained", "started_ms", "first_delivery_ms", "full_speed_ms", "drain_per_sec", "peak_rss_mib"]);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{db}{suffix}"));
    }
    let t = child(&["timers", "--deliveries", &d, "--retries", &scale(2_000, 200)]);
    println!("### Timer precision\n");
    table(
        &[t],
        &["retries", "retry_delay_ms", "late_p50_ms", "late_p99_ms", "late_max_ms", "early_min_ms", "load_per_sec"],
    );
}

/// The PostgreSQL rows: one in-process node against the ceiling, then 1, 2 and 3 node processes.
fn run_pg(quick: bool) {
    let d = if quick { "6000" } else { "60000" };
    let rounds = if quick { "1" } else { "3" };
    let url = pg::base_url();
    let mut rows = Vec::new();
    for mode in ["library", "rest"] {
        rows.push(child_env(
            &["throughput", "--mode", mode, "--fanout", "10", "--deliveries", d, "--rounds", rounds],
            &[("LOAD_DATABASE_URL", &url)],
        ));
    }
    println!("### One node on PostgreSQL (fan-out 10)\n");
    let flat: Vec<Value> = rows.iter().map(flatten_pg).collect();
    table(
        &flat,
        &[
            "mode",
            "deliveries",
            "per_sec",
            "ceiling_per_sec",
            "ratio",
            "round_ratios",
            "cpu_us",
            "ceiling_cpu_us",
            "cpu_ratio",
            "p99_ms",
            "pg_cpu_us",
            "pg_wal_bytes",
            "pg_commits_per_1000",
            "pg_rows_written",
        ],
    );
    let mut rows = Vec::new();
    for nodes in ["1", "2", "3"] {
        rows.push(child(&["cluster", "--nodes", nodes, "--fanout", "10", "--deliveries", d, "--rounds", rounds]));
    }
    println!("### Nodes as processes on one database (fan-out 10, REST publish spread over the nodes)\n");
    let flat: Vec<Value> = rows.iter().map(flatten_pg).collect();
    table(
        &flat,
        &[
            "nodes",
            "deliveries",
            "per_sec",
            "ceiling_per_sec",
            "ratio",
            "round_ratios",
            "nodes_cpu_us",
            "per_node_cpu_us",
            "ceiling_cpu_us",
            "p99_ms",
            "pg_cpu_us",
            "pg_wal_bytes",
            "pg_commits_per_1000",
            "pg_rows_written",
        ],
    );
}

/// Lifts the `pg` object's fields to the top level for the table.
fn flatten_pg(v: &Value) -> Value {
    let mut out = v.as_object().cloned().unwrap_or_default();
    if let Some(pg) = v["pg"].as_object() {
        for (k, val) in pg {
            out.insert(k.clone(), val.clone());
        }
    }
    Value::Object(out)
}

/// The same allocator as the server binary; the ceiling runs in this process too, so it is
/// measured with it as well.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
