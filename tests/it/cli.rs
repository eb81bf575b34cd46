//! `servio-webhooks serve` as an operator meets it: every setting variable is a flag, a bad value
//! or a taken port stops it before it touches the store, and `--log-format json` logs JSON lines.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use servio_webhooks::config::vars::VARS;

use crate::process::free_port;

fn serve(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_servio-webhooks"));
    cmd.arg("serve").args(args).env("RUST_BACKTRACE", "0");
    for var in VARS {
        cmd.env_remove(var.name);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    serve(args, env).output().expect("binary runs")
}

#[test]
fn every_setting_variable_is_a_flag() {
    let help = String::from_utf8(run(&["--help"], &[]).stdout).unwrap();
    assert!(help.contains("--log-format"), "{} is not a build of this tree", env!("CARGO_BIN_EXE_servio-webhooks"));
    for var in VARS {
        assert!(help.contains(&format!("--{} ", var.flag)), "--{} missing from --help", var.flag);
        assert!(help.contains(var.name), "{} missing from --help", var.name);
    }
    assert!(!help.contains("hunter2"));
    let secret = run(&["--help"], &[("WEBHOOKS_ADMIN_TOKEN", "hunter2-token-value")]);
    assert!(!String::from_utf8_lossy(&secret.stdout).contains("hunter2"), "help never shows a secret");
}

/// A malformed value is named (as the flag when given as a flag, as the variable otherwise) and
/// the store is never opened.
#[test]
fn a_bad_value_stops_serve_before_the_store_is_opened() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.db");
    let url = format!("sqlite://{}", db.display());
    let bind = format!("127.0.0.1:{}", free_port());
    for (args, env, named) in [
        (vec!["--request-timeout-ms", "soon"], vec![], "--request-timeout-ms"),
        (vec!["--allow-private-targets=maybe"], vec![], "--allow-private-targets"),
        (vec![], vec![("WEBHOOKS_MAX_IN_FLIGHT", "0")], "WEBHOOKS_MAX_IN_FLIGHT"),
        (vec![], vec![("WEBHOOKS_LEASE_TTL_MS", "100")], "WEBHOOKS_LEASE_TTL_MS"),
        (vec![], vec![("WEBHOOKS_ALLOWED_PRIVATE_CIDRS", "10.0.0.0/99")], "WEBHOOKS_ALLOWED_PRIVATE_CIDRS"),
        (vec![], vec![("WEBHOOK_URLS", "https://a.example"), ("WEBHOOK_0_JITTER", "lots")], "WEBHOOK_0_JITTER"),
    ] {
        let mut all = vec!["--database-url", &url, "--bind", &bind];
        all.extend(args.iter().copied());
        let out = run(&all, &env);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{all:?} {env:?} started");
        assert!(stderr.contains(named), "{all:?} {env:?}: {stderr}");
        assert!(!db.exists(), "{all:?} {env:?} opened the store");
    }
}

#[test]
fn a_taken_port_stops_serve_before_the_store_is_opened() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.db");
    let out = run(
        &["--bind", &taken.local_addr().unwrap().to_string(), "--database-url", &format!("sqlite://{}", db.display())],
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("cannot listen"), "{stderr}");
    assert!(!db.exists(), "the store was opened");
}

/// One JSON object per line, with level, target and fields, and no colour codes.
#[test]
fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = serve(
        &["--log-format", "json", "--bind", &format!("127.0.0.1:{port}")],
        &[("WEBHOOKS_DATABASE_URL", &format!("sqlite://{}", dir.path().join("w.db").display()))],
    )
    .env_remove("WEBHOOKS_LOG")
    .env_remove("WEBHOOKS_LOG_FORMAT")
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit())
    .spawn()
    .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    let listening = loop {
        let line = lines.next().expect("the server logs until it listens").unwrap();
        assert!(!line.contains('\u{1b}'), "colour codes in a log file: {line}");
        let event: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(event["level"].is_string() && event["timestamp"].is_string(), "{event}");
        if event["message"] == "listening" {
            break event;
        }
        seen.push(event);
        assert!(Instant::now() < deadline, "no `listening` line: {seen:?}");
    };
    assert_eq!(listening["address"], format!("127.0.0.1:{port}"));
    assert!(seen.iter().any(|e| e["message"] == "webhook subsystem started" && e["node"].is_string()), "{seen:?}");
    let _ = child.kill();
    let _ = child.wait();
}

/// The README's configuration table is where operators look: every variable is in it.
#[test]
fn every_setting_variable_is_in_the_readme() {
    let readme = include_str!("../../README.md");
    let table = &readme[readme.find("## Configuration").expect("a Configuration section")..];
    for name in VARS.iter().map(|v| v.name).chain(["WEBHOOKS_BIND", "WEBHOOKS_HTTP_WORKERS", "WEBHOOKS_LOG_FORMAT"]) {
        assert!(table.contains(&format!("`{name}`")), "{name} is missing from the README's configuration table");
    }
}
