//! Versioned schema migrations, applied once per schema under an advisory lock so that several
//! nodes starting together do not race; `schema_migrations` records what ran.

use tokio_postgres::Config;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{channel_name, pg};
use crate::store::{StoreError, StoreResult};

/// `(version, name, sql)`, in order.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "init", include_str!("../../../migrations/postgres/0001_init.sql")),
    (2, "node_leases", include_str!("../../../migrations/postgres/0002_node_leases.sql")),
    (3, "probes", include_str!("../../../migrations/postgres/0003_probes.sql")),
    (4, "lifecycle", include_str!("../../../migrations/postgres/0004_lifecycle.sql")),
    (5, "replay", include_str!("../../../migrations/postgres/0005_replay.sql")),
    (6, "retention", include_str!("../../../migrations/postgres/0006_retention.sql")),
    (7, "tenants", include_str!("../../../migrations/postgres/0007_tenants.sql")),
    (8, "pacing", include_str!("../../../migrations/postgres/0008_pacing.sql")),
    (9, "prune_walk", include_str!("../../../migrations/postgres/0009_prune_walk.sql")),
];

/// The advisory-lock key of a schema's migrations (FNV-1a of the channel name: stable across
/// builds and platforms).
fn lock_key(schema: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in format!("servio_webhooks:migrate:{schema}").bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h as i64
}

/// Brings the connection's schema up to date on a connection of its own (closing it releases
/// the lock whatever happens) and returns the schema's notice channel.
pub(super) async fn migrate(config: &Config, tls: MakeRustlsConnect) -> StoreResult<String> {
    let (mut client, connection) = config.connect(tls).await.map_err(pg)?;
    let driver = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "migration connection ended");
        }
    });
    let out = run(&mut client).await;
    drop(client);
    let _ = driver.await;
    out
}

async fn run(client: &mut tokio_postgres::Client) -> StoreResult<String> {
    let schema: Option<String> = client.query_one("SELECT current_schema()::text", &[]).await.map_err(pg)?.get(0);
    let schema = schema.ok_or_else(|| {
        StoreError::Config("no schema to use: the connection's search_path names no existing schema".into())
    })?;
    client.execute("SELECT pg_advisory_lock($1)", &[&lock_key(&schema)]).await.map_err(pg)?;
    let result = apply_all(client).await;
    let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&lock_key(&schema)]).await;
    result?;
    Ok(channel_name(&schema))
}

async fn apply_all(client: &mut tokio_postgres::Client) -> StoreResult<()> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (\
             version INT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
        )
        .await
        .map_err(pg)?;
    let current: i32 =
        client.query_one("SELECT coalesce(max(version), 0) FROM schema_migrations", &[]).await.map_err(pg)?.get(0);
    let newest = MIGRATIONS.last().map(|m| m.0).unwrap_or(0);
    if current > newest {
        return Err(StoreError::Corrupt(format!(
            "database schema version {current} is newer than this binary ({newest})"
        )));
    }
    for (version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        let tx = client.transaction().await.map_err(pg)?;
        tx.batch_execute(sql)
            .await
            .map_err(|e| StoreError::Unavailable(format!("migration {version} ({name}) failed: {}", pg(e))))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) \
             VALUES ($1, $2, (extract(epoch from clock_timestamp()) * 1000)::bigint)",
            &[version, name],
        )
        .await
        .map_err(pg)?;
        tx.commit().await.map_err(pg)?;
        tracing::info!(version, name, "applied PostgreSQL migration");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_keys_differ_per_schema_and_are_stable() {
        assert_eq!(lock_key("public"), lock_key("public"));
        assert_ne!(lock_key("public"), lock_key("t_1"));
    }
}
