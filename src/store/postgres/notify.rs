//! Notices between nodes: sent with `pg_notify` inside the writing transaction (delivered on
//! commit), heard by one dedicated LISTEN connection per store.
//!
//! Payloads: `w|<origin>|<webhook>:<count>,…` (new pending deliveries), `r|<origin>` (registry
//! changed), `c|<origin>` (membership or leases changed), `q|<origin>|<webhook>|<delivery>,…`
//! (deliveries re-queued by a retry or a recovery). Webhook and delivery ids never contain `|`
//! or `,`.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio_postgres::{AsyncMessage, Config};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::pg;
use crate::store::{Notice, StoreResult};

/// Notices queued for the taker before the listener starts dropping them (then one `Resync`).
pub(super) const NOTICE_CAPACITY: usize = 1024;

/// PostgreSQL refuses payloads of 8000 bytes or more; stay well below.
const MAX_PAYLOAD: usize = 7900;

/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Sends one notice on the transaction (delivered if and when it commits).
pub(super) async fn send(tx: &deadpool_postgres::Transaction<'_>, channel: &str, payload: &str) -> StoreResult<()> {
    let stmt = tx.prepare_cached("SELECT pg_notify($1, $2)").await.map_err(pg)?;
    tx.execute(&stmt, &[&channel, &payload]).await.map_err(pg)?;
    Ok(())
}

/// `r|origin`.
pub(super) fn registry_payload(origin: &str) -> String {
    format!("r|{origin}")
}

/// `c|origin`.
pub(super) fn cluster_payload(origin: &str) -> String {
    format!("c|{origin}")
}

/// `w|origin|id:n,…`, split into payloads below the size limit.
pub(super) fn work_payloads(origin: &str, counts: &BTreeMap<String, u32>) -> Vec<String> {
    let head = format!("w|{origin}|");
    let mut out = Vec::new();
    let mut cur = head.clone();
    for (id, n) in counts {
        let entry = format!("{id}:{n}");
        if cur.len() > head.len() && cur.len() + 1 + entry.len() > MAX_PAYLOAD {
            out.push(std::mem::replace(&mut cur, head.clone()));
        }
        if cur.len() > head.len() {
            cur.push(',');
        }
        cur.push_str(&entry);
    }
    if cur.len() > head.len() {
        out.push(cur);
    }
    out
}

/// `q|origin|webhook|id,…` (they were failed) or `p|…` (they were pending), split into payloads
/// below the size limit.
pub(super) fn requeued_payloads(origin: &str, webhook_id: &str, ids: &[String], were_failed: bool) -> Vec<String> {
    let kind = if were_failed { 'q' } else { 'p' };
    let head = format!("{kind}|{origin}|{webhook_id}|");
    let mut out = Vec::new();
    let mut cur = head.clone();
    for id in ids {
        if cur.len() > head.len() && cur.len() + 1 + id.len() > MAX_PAYLOAD {
            out.push(std::mem::replace(&mut cur, head.clone()));
        }
        if cur.len() > head.len() {
            cur.push(',');
        }
        cur.push_str(id);
    }
    if cur.len() > head.len() {
        out.push(cur);
    }
    out
}

/// Reads a payload back; `None` for anything malformed.
pub(super) fn parse(payload: &str) -> Option<Notice> {
    let (kind, rest) = payload.split_once('|')?;
    match kind {
        "r" => Some(Notice::Registry { origin: rest.to_string() }),
        "c" => Some(Notice::Cluster { origin: rest.to_string() }),
        "w" => {
            let (origin, list) = rest.rsplit_once('|')?;
            let webhooks = list
                .split(',')
                .map(|e| {
                    let (id, n) = e.rsplit_once(':')?;
                    Some((id.to_string(), n.parse().ok()?))
                })
                .collect::<Option<Vec<_>>>()?;
            Some(Notice::Work { origin: origin.to_string(), webhooks })
        }
        "q" | "p" => {
            let (rest, list) = rest.rsplit_once('|')?;
            let (origin, webhook_id) = rest.rsplit_once('|')?;
            let ids: Vec<String> = list.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect();
            if ids.is_empty() {
                return None;
            }
            Some(Notice::Requeued {
                origin: origin.to_string(),
                webhook_id: webhook_id.to_string(),
                ids,
                were_failed: kind == "q",
            })
        }
        _ => None,
    }
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Hands notices to the taker without ever waiting on it: when its queue is full they are
/// dropped and one [`Notice::Resync`] follows as soon as there is room.
struct Outbox {
    tx: mpsc::Sender<Notice>,
    overflowed: bool,
}

impl Outbox {
    /// False once the taker is gone.
    fn push(&mut self, notice: Notice) -> bool {
        if self.overflowed {
            return !self.tx.is_closed();
        }
        match self.tx.try_send(notice) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!("notice queue full; dropping notices until it drains, then resyncing");
                self.overflowed = true;
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

/// The listener task: LISTEN on `channel` (answering `ready` once it listens), forward what
/// arrives, reconnect with backoff after a connection loss (then [`Notice::Resync`]), stop when
/// `stop` turns true.
pub(super) async fn listen(
    config: Config,
    tls: MakeRustlsConnect,
    channel: String,
    tx: mpsc::Sender<Notice>,
    mut stop: watch::Receiver<bool>,
    ready: oneshot::Sender<()>,
) {
    let mut out = Outbox { tx, overflowed: false };
    let mut ready = Some(ready);
    let mut backoff = Duration::from_millis(100);
    let mut first = true;
    loop {
        if *stop.borrow() {
            return;
        }
        match session(&config, tls.clone(), &channel, &mut out, &mut stop, !first, &mut ready).await {
            Ok(Session::Stopped) => return,
            Ok(Session::Lost) => {
                backoff = Duration::from_millis(100);
                first = false;
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "notice listener cannot connect");
                first = false;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

enum Session {
    /// Asked to stop, or nobody takes notices any more.
    Stopped,
    /// The connection ended.
    Lost,
}

/// One connection's life: LISTEN, then forward until it ends.
async fn session(
    config: &Config,
    tls: MakeRustlsConnect,
    channel: &str,
    out: &mut Outbox,
    stop: &mut watch::Receiver<bool>,
    resync: bool,
    ready: &mut Option<oneshot::Sender<()>>,
) -> Result<Session, tokio_postgres::Error> {
    let (client, mut connection) = config.connect(tls).await?;
    let (msg_tx, mut msg_rx) = mpsc::unbounded_channel();
    // The connection must be polled for the LISTEN to complete and for notifications to arrive.
    let driver = tokio::spawn(async move {
        let result = std::future::poll_fn(|cx| {
            loop {
                match connection.poll_message(cx) {
                    std::task::Poll::Ready(Some(Ok(AsyncMessage::Notification(n)))) => {
                        let _ = msg_tx.send(n.payload().to_string());
                    }
                    std::task::Poll::Ready(Some(Ok(_))) => {}
                    std::task::Poll::Ready(Some(Err(e))) => return std::task::Poll::Ready(Err(e)),
                    std::task::Poll::Ready(None) => return std::task::Poll::Ready(Ok(())),
                    std::task::Poll::Pending => return std::task::Poll::Pending,
                }
            }
        })
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "notice listener connection lost");
        }
    });
    let listening = client.batch_execute(&format!("LISTEN {}", quote_ident(channel))).await;
    if let Err(e) = listening {
        driver.abort();
        return Err(e);
    }
    tracing::debug!(channel, "listening for notices");
    if let Some(ready) = ready.take() {
        let _ = ready.send(());
    }
    if resync && !out.push(Notice::Resync) {
        driver.abort();
        return Ok(Session::Stopped);
    }
    let sender = out.tx.clone();
    let result = loop {
        tokio::select! {
            msg = msg_rx.recv() => match msg {
                Some(payload) => match parse(&payload) {
                    Some(notice) => {
                        if !out.push(notice) {
                            break Session::Stopped;
                        }
                    }
                    None => tracing::debug!(payload, "ignoring a malformed notice"),
                },
                None => break Session::Lost,
            },
            permit = sender.reserve(), if out.overflowed => match permit {
                Ok(p) => {
                    p.send(Notice::Resync);
                    out.overflowed = false;
                }
                Err(_) => break Session::Stopped,
            },
            _ = stop.changed() => break Session::Stopped,
        }
    };
    driver.abort();
    drop(client);
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip() {
        let counts = BTreeMap::from([("a:1".to_string(), 3), ("b".to_string(), 1)]);
        let p = work_payloads("node|x", &counts);
        assert_eq!(p, vec!["w|node|x|a:1:3,b:1".to_string()]);
        assert_eq!(
            parse(&p[0]),
            Some(Notice::Work { origin: "node|x".into(), webhooks: vec![("a:1".into(), 3), ("b".into(), 1)] })
        );
        assert_eq!(parse(&registry_payload("n1")), Some(Notice::Registry { origin: "n1".into() }));
        assert_eq!(parse(&cluster_payload("n1")), Some(Notice::Cluster { origin: "n1".into() }));
        assert_eq!(parse("x|y"), None);
        assert_eq!(parse("w|n|a:b"), None);
    }

    #[test]
    fn work_payloads_are_chunked_below_the_limit() {
        let counts: BTreeMap<String, u32> = (0..2000).map(|i| (format!("wh_{i:040}"), i)).collect();
        let payloads = work_payloads("n", &counts);
        assert!(payloads.len() > 1);
        assert!(payloads.iter().all(|p| p.len() < MAX_PAYLOAD));
        let mut back = Vec::new();
        for p in &payloads {
            match parse(p) {
                Some(Notice::Work { webhooks, .. }) => back.extend(webhooks),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(back.len(), 2000);
    }

    #[test]
    fn requeued_payloads_round_trip_in_chunks() {
        let ids: Vec<String> = (0..1000).map(|i| format!("dlv_{i:040}")).collect();
        let payloads = requeued_payloads("node|x", "wh:1", &ids, true);
        assert!(payloads.len() > 1);
        assert!(payloads.iter().all(|p| p.len() < MAX_PAYLOAD));
        let mut back = Vec::new();
        for p in &payloads {
            match parse(p) {
                Some(Notice::Requeued { origin, webhook_id, ids, were_failed }) => {
                    assert_eq!((origin.as_str(), webhook_id.as_str(), were_failed), ("node|x", "wh:1", true));
                    back.extend(ids);
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(back, ids);
        assert!(requeued_payloads("n", "w", &[], true).is_empty());
        let one = requeued_payloads("n", "w", &["dlv_1".to_string()], false);
        assert_eq!(one, vec!["p|n|w|dlv_1".to_string()]);
        assert!(matches!(parse(&one[0]), Some(Notice::Requeued { were_failed: false, .. })));
        assert_eq!(parse("q|n|w|"), None);
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("servio_webhooks:a\"b"), "\"servio_webhooks:a\"\"b\"");
    }
}
