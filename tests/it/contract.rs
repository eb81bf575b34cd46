//! The REST contract, property-based: schemathesis generates requests from the served OpenAPI
//! document (valid ones, and ones that break it on purpose), sends them to the real
//! `servio-webhooks serve` binary, and runs all of its checks on the answers: no 5xx, every status,
//! content type, header and body as documented, schema-valid data accepted, invalid data refused,
//! 405 with `Allow` for undocumented methods, authentication not ignored, deleted resources gone.
//!
//! The server and schemathesis run in a network namespace of their own with only loopback
//! (`unshare -n`): registrations take any generated host name, and delivery attempts to them fail
//! there at once instead of resolving names or dialing addresses off the machine.
//!
//! Needs schemathesis (`WEBHOOKS_SCHEMATHESIS` = its `st` executable, else `schemathesis` on the
//! `PATH`; `.ci/run` installs it into a virtualenv under `target/`) and root for `unshare`. Without
//! either the test prints `skipped: …` and passes, except under `CI=true`, where it fails.
//! A third run (open) stores in PostgreSQL, in a fresh schema of the server at
//! `WEBHOOKS_TEST_DATABASE_URL`, reached from inside the namespace through its Unix socket; where
//! there is no such socket it prints `skipped: …` for that run.
//!
//! `WEBHOOKS_CONTRACT_EXAMPLES` (default 20) sets the examples per operation,
//! `WEBHOOKS_CONTRACT_SEED` (default fixed) the seed, and `WEBHOOKS_CONTRACT_BIN` another server
//! binary than the one cargo built (a copy, where other checkouts share the target directory and
//! may replace it; the test refuses a binary that does not serve this tree's document).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde_json::Value;
use servio_webhooks::Settings;
use servio_webhooks::api::Mounts;
use servio_webhooks::api::openapi::document;
use servio_webhooks::catalog::EventCatalog;

use crate::process::free_port;

/// Constraints JSON Schema cannot state: `maxDelay` (default 60000) must be at least
/// `initialDelay` (default 1000; in a PATCH, the other one may be the stored webhook's), and a recovery's `since` must be before its `until` (default
/// now). The document says so in words; this hook keeps schemathesis from counting such bodies
/// as valid data the server should accept.
const HOOKS: &str = r#"
import schemathesis

DEFAULT_INITIAL_DELAY = 1000
DEFAULT_MAX_DELAY = 60000


def _delays_cross(case):
    body = case.body
    if not isinstance(body, dict):
        return False
    retry = body.get("retryConfig")
    if not isinstance(retry, dict):
        return False
    initial = retry.get("initialDelay")
    maximum = retry.get("maxDelay")
    if isinstance(initial, bool) or isinstance(maximum, bool):
        return False
    numbers = (int, float)
    if case.method.upper() == "PATCH" and isinstance(initial, numbers) != isinstance(maximum, numbers):
        # A merge patch setting one delay keeps (absent) or resets (null) the other: its value
        # comes from the stored webhook, which the hook cannot see.
        return True
    initial = DEFAULT_INITIAL_DELAY if initial is None else initial
    maximum = DEFAULT_MAX_DELAY if maximum is None else maximum
    return isinstance(initial, numbers) and isinstance(maximum, numbers) and maximum < initial


def _window_empty(case):
    # POST /v1/webhooks/{id}/recover: `since` must be before `until` (default: now).
    if not case.path.endswith("/recover") or not isinstance(case.body, dict):
        return False
    import datetime
    try:
        since = datetime.datetime.fromisoformat(case.body.get("since"))
        until = case.body.get("until")
        until = datetime.datetime.fromisoformat(until) if until is not None else datetime.datetime.now(datetime.timezone.utc)
        return since >= until
    except Exception:
        return False


@schemathesis.hook
def filter_case(context, case):
    meta = case.meta
    positive = meta is not None and meta.generation.mode.is_positive
    return not (positive and (_delays_cross(case) or _window_empty(case)))
"#;

/// Runs in the namespace: loopback up, the server, its document saved, schemathesis.
const SCRIPT: &str = r#"
set -u
ip link set lo up
"$BIN" serve >"$DIR/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null' EXIT
for _ in $(seq 1 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then break; fi
    if ! kill -0 $server 2>/dev/null; then echo "the server exited:"; cat "$DIR/server.log"; exit 70; fi
    sleep 0.1
done
(
    exec 3<>"/dev/tcp/127.0.0.1/$PORT"
    printf 'GET /openapi.json HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
    cat <&3
) >"$DIR/served.http"
auth=()
if [ -n "${TOKEN:-}" ]; then auth=(-H "Authorization: Bearer $TOKEN"); fi
"$ST" run "http://127.0.0.1:$PORT/openapi.json" \
    --checks all \
    --max-examples "$EXAMPLES" \
    --seed "$SEED" \
    --workers 1 \
    --request-timeout 10 \
    --generation-database none \
    --no-color \
    "${auth[@]}"
"#;

fn schemathesis() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("WEBHOOKS_SCHEMATHESIS").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join("schemathesis")).find(|p| p.is_file())
}

/// Why the test cannot run here: a `skipped: …` line, or a failure under `CI=true`.
fn skip(why: &str) {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{why}; with CI=true the contract test must run (.ci/run installs schemathesis)"
    );
    println!("skipped: {why}");
}

/// What a run found.
struct Run {
    ok: bool,
    output: String,
    served: Option<Value>,
    elapsed: std::time::Duration,
}

/// The server binary to test.
fn binary() -> PathBuf {
    std::env::var_os("WEBHOOKS_CONTRACT_BIN")
        .filter(|p| !p.is_empty())
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_servio-webhooks")), PathBuf::from)
}

/// `url` (a PostgreSQL server on this machine over TCP) through the server's Unix socket, which
/// a process in another network namespace still reaches; `None` when there is none.
fn through_socket(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    let host = parsed.host_str()?;
    if !matches!(host, "127.0.0.1" | "localhost" | "[::1]") {
        return None;
    }
    let port = parsed.port().unwrap_or(5432);
    let dir = ["/var/run/postgresql", "/run/postgresql", "/tmp"]
        .into_iter()
        .find(|d| Path::new(&format!("{d}/.s.PGSQL.{port}")).exists())?;
    let encoded = dir.replace('/', "%2F");
    Some(url.replacen(&format!("@{host}:{port}"), &format!("@{encoded}:{port}"), 1)).filter(|u| u != url)
}

fn run(st: &Path, token: Option<&str>, database_url: Option<&str>, examples: &str, seed: &str) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let hooks = dir.path().join("contract_hooks.py");
    std::fs::write(&hooks, HOOKS).unwrap();
    let port = free_port();
    let started = Instant::now();
    let mut cmd = Command::new("timeout");
    // schemathesis keeps a cache in its working directory: the temporary one, not the checkout.
    cmd.current_dir(dir.path())
        .args(["300", "unshare", "-n", "bash", "-c", SCRIPT])
        .env("BIN", binary())
        .env("ST", st)
        .env("DIR", dir.path())
        .env("PORT", port.to_string())
        .env("EXAMPLES", examples)
        .env("SEED", seed)
        .env("TOKEN", token.unwrap_or_default())
        .env("SCHEMATHESIS_HOOKS", "contract_hooks")
        // A test ping waits for its attempt up to the request timeout and 2 s more: well within the
        // client's 10 s for the unreachable targets schemathesis registers.
        .env("WEBHOOKS_REQUEST_TIMEOUT_MS", "500")
        .env("PYTHONPATH", dir.path())
        .env("WEBHOOKS_BIND", format!("127.0.0.1:{port}"))
        .env(
            "WEBHOOKS_DATABASE_URL",
            database_url.map_or_else(|| format!("sqlite://{}", dir.path().join("contract.db").display()), String::from),
        )
        .env("WEBHOOKS_SQLITE_SYNCHRONOUS", "normal")
        .env("WEBHOOKS_ALLOW_PRIVATE_TARGETS", "true")
        .env("WEBHOOKS_LOG", "error")
        .env_remove("WEBHOOKS_ALLOWED_HOSTS")
        .env_remove("WEBHOOKS_EVENT_TYPES")
        .env_remove("WEBHOOKS_ADMIN_TOKEN");
    if let Some(t) = token {
        cmd.env("WEBHOOKS_ADMIN_TOKEN", t);
    }
    let out = cmd.output().expect("runs timeout/unshare/bash");
    let served = std::fs::read_to_string(dir.path().join("served.http"))
        .ok()
        .and_then(|http| http.split_once("\r\n\r\n").and_then(|(_, body)| serde_json::from_str(body).ok()));
    let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
    output.push_str(&String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        output.push_str("\n--- server log (last lines) ---\n");
        output.push_str(&tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
    }
    Run { ok: out.status.success(), output, served, elapsed: started.elapsed() }
}

/// schemathesis, all checks, against the open API (no token, as `serve` runs on loopback) and
/// against the API with an admin token (credentials sent; `ignored_auth` sends none), on SQLite;
/// then the open API on PostgreSQL, whose text columns take less than SQLite's.
#[test]
fn schemathesis_finds_no_contract_violations() {
    let Some(st) = schemathesis() else {
        return skip("schemathesis is not installed (set WEBHOOKS_SCHEMATHESIS to its `st` executable)");
    };
    if !Command::new("unshare").args(["-n", "true"]).status().is_ok_and(|s| s.success()) {
        return skip("cannot make a network namespace with `unshare -n` (it needs root)");
    }
    let examples = std::env::var("WEBHOOKS_CONTRACT_EXAMPLES").unwrap_or_else(|_| "20".into());
    let seed = std::env::var("WEBHOOKS_CONTRACT_SEED").unwrap_or_else(|_| "20261129".into());
    let catalog = EventCatalog::default();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let schema = runtime.block_on(crate::pg::schema());
    let postgres = schema.as_ref().and_then(|s| {
        let url = through_socket(&s.url);
        if url.is_none() {
            println!("skipped: the contract run on PostgreSQL (no Unix socket for {})", crate::pg::base_url());
        }
        url
    });
    let runs = [
        (None, None, "open, without a token"),
        (Some("contract-admin-token"), None, "with an admin token"),
        (None, postgres.as_deref(), "open, on PostgreSQL"),
    ];
    for (token, database_url, label) in runs {
        if label.ends_with("PostgreSQL") && database_url.is_none() {
            continue;
        }
        let run = run(&st, token, database_url, &examples, &seed);
        // The binary lives in a target directory that builds of other checkouts may share.
        let settings =
            Settings { admin_token: token.map(String::from), open_admin_api: token.is_none(), ..Settings::default() };
        let expected = document(&settings, &catalog, &Mounts::default());
        assert!(
            run.served.as_ref() == Some(&expected),
            "{} does not serve this tree's OpenAPI document ({label}; rebuild it, another checkout's \
             build may have replaced it):\n{}",
            binary().display(),
            run.output
        );
        assert!(run.ok, "schemathesis found contract violations ({label}, seed {seed}):\n{}", run.output);
        let summary: Vec<&str> = run.output.lines().filter(|l| !l.trim().is_empty()).rev().take(6).collect();
        println!(
            "schemathesis {label}: passed in {:.1} s, {examples} examples per operation, seed {seed}\n{}",
            run.elapsed.as_secs_f64(),
            summary.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
}
