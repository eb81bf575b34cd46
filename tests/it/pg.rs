//! PostgreSQL for tests: a fresh schema per test in the database at `WEBHOOKS_TEST_DATABASE_URL`
//! (default `postgres://postgres@127.0.0.1:5432/test`), selected through the connection's
//! `search_path`, dropped when the test is done (best effort).
//!
//! When the server cannot be reached, a test is skipped with a line saying so, unless `CI=true`:
//! then it fails.

use tokio_postgres::NoTls;

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The server's URL for tests.
pub fn base_url() -> String {
    std::env::var("WEBHOOKS_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_URL.to_string())
}

/// A URL that selects `schema` on `base` (`options=-csearch_path=<schema>`).
pub fn url_with_schema(base: &str, schema: &str) -> String {
    let mut url = url::Url::parse(base).expect("WEBHOOKS_TEST_DATABASE_URL is a URL");
    url.query_pairs_mut().append_pair("options", &format!("-csearch_path={schema}"));
    url.to_string()
}

/// A schema of its own for one test; dropped with it.
pub struct TestSchema {
    /// Connection URL selecting the schema.
    pub url: String,
    /// The schema's name.
    pub name: String,
    base: String,
}

async fn connect(base: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(base, NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// Creates a fresh schema, or says why the test is skipped (`None`). Panics when the server is
/// unreachable and `CI=true`.
pub async fn schema() -> Option<TestSchema> {
    let base = base_url();
    let client = match connect(&base).await {
        Ok(c) => c,
        Err(e) => {
            let base = servio_webhooks::store::redact_url(&base);
            let e = std::error::Error::source(&e).map(|c| format!("{e}: {c}")).unwrap_or_else(|| e.to_string());
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("PostgreSQL not reachable at {base} (CI=true, so this fails): {e}");
            }
            println!("skipped: PostgreSQL not reachable at {base} (set WEBHOOKS_TEST_DATABASE_URL): {e}");
            return None;
        }
    };
    let name = format!("t_{}", uuid::Uuid::now_v7().simple());
    client.batch_execute(&format!("CREATE SCHEMA {name}")).await.expect("create a test schema");
    Some(TestSchema { url: url_with_schema(&base, &name), name, base })
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        let (base, name) = (self.base.clone(), self.name.clone());
        // Its own thread and runtime: Drop cannot await, and may run inside a test's runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async {
                let client = connect(&base).await.ok()?;
                client.batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE")).await.ok()
            })
        })
        .join();
    }
}
