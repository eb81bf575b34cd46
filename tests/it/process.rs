//! The real `servio-webhooks serve` binary as a child process on a port of its own, with signals
//! (kill -9, SIGTERM, SIGSTOP/SIGCONT) for crash, drain and freeze tests.

use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::helpers::{eventually, http_client};

const START: Duration = Duration::from_secs(30);

/// A running server process.
pub struct ServerProcess {
    pub child: Child,
    pub base: String,
    pub port: u16,
}

/// A free port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl ServerProcess {
    /// Starts the binary with `env` (on top of: bind to `port`, private targets allowed, quiet
    /// logs) and waits until `/healthz` answers.
    pub async fn start(port: u16, env: &[(&str, String)]) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_servio-webhooks"));
        cmd.arg("serve")
            .env("WEBHOOKS_BIND", format!("127.0.0.1:{port}"))
            .env("WEBHOOKS_ALLOW_PRIVATE_TARGETS", "true")
            .env("WEBHOOKS_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("binary starts");
        let base = format!("http://127.0.0.1:{port}");
        let http = http_client();
        eventually(START, "server answers /healthz", || {
            let req = http.get(format!("{base}/healthz")).send();
            async move { req.await.is_ok_and(|r| r.status().is_success()) }
        })
        .await;
        Self { child, base, port }
    }

    fn signal(&self, sig: &str) {
        let status = Command::new("kill").arg(sig).arg(self.child.id().to_string()).status().unwrap();
        assert!(status.success(), "kill {sig} failed");
    }

    /// SIGKILL: no drain, no flush.
    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, then waits for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal("-TERM");
        self.child.wait().unwrap()
    }

    /// Freezes the process (as a long GC pause or a stopped VM would).
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Lets a frozen process run again.
    pub fn thaw(&self) {
        self.signal("-CONT");
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-CONT").arg(self.child.id().to_string()).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
