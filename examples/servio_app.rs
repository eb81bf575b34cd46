//! A tiny Servio-like application that embeds the webhook subsystem.
//!
//! Its own `POST /orders` creates an order and publishes `order.created`; the admin REST API of
//! servio-webhooks is mounted into the same `App` under `/webhooks/v1`, its metrics at
//! `/internal/metrics`, its OpenAPI document at `/webhooks/openapi.json`, and its health check
//! not at all (the app has its own `/healthz`).
//!
//! The app listens on loopback only, so without `WEBHOOKS_ADMIN_TOKEN` it opens the admin API to
//! local callers (`Settings::open_admin_api`); with a token, send it as a bearer token.
//!
//! ```sh
//! WEBHOOKS_ALLOW_PRIVATE_TARGETS=true cargo run --example servio_app
//! curl -s -XPOST localhost:3000/webhooks/v1/webhooks -H 'content-type: application/json' -d '{"url":"http://127.0.0.1:9000/hook"}'
//! curl -s -XPOST localhost:3000/orders -H 'content-type: application/json' -d '{"table":"T4","items":[{"sku":"burger","qty":2}]}'
//! ```

use actix_web::{App, HttpResponse, HttpServer, web};
use serde::{Deserialize, Serialize};
use servio_webhooks::{Settings, Webhooks};

#[derive(Deserialize)]
struct NewOrder {
    table: String,
    items: Vec<Item>,
}

#[derive(Deserialize, Serialize, Clone)]
struct Item {
    sku: String,
    qty: u32,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Order {
    order_id: String,
    table: String,
    items: Vec<Item>,
    status: &'static str,
}

/// The host's own route: create the order, then publish the event. `publish` returns once the
/// event and its deliveries are committed, so the order response can say it was announced.
async fn create_order(webhooks: web::Data<Webhooks>, body: web::Json<NewOrder>) -> HttpResponse {
    let body = body.into_inner();
    let order = Order {
        order_id: format!(
            "ord_{}",
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
        ),
        table: body.table,
        items: body.items,
        status: "placed",
    };
    match webhooks.publish("order.created", &order).await {
        Ok(receipt) => HttpResponse::Created().json(serde_json::json!({
            "order": order,
            "webhookEvent": receipt.id,
            "deliveries": receipt.deliveries.len(),
        })),
        // Our own bug (unknown event type, oversized data): retrying will not help.
        Err(e) if e.is_client_error() => {
            HttpResponse::InternalServerError().json(serde_json::json!({"error": e.to_string()}))
        }
        // The store is unavailable or stalled: nothing was accepted, the client may try again.
        Err(e) => HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", e.retry_after().map_or(1, |d| d.as_secs().max(1)).to_string()))
            .json(serde_json::json!({"error": e.to_string()})),
    }
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    // The WEBHOOKS_* variables `serve` reads; this app's own default store file.
    let mut settings = Settings::from_vars(|name| match (name, std::env::var(name)) {
        (_, Ok(v)) => Some(v),
        ("WEBHOOKS_DATABASE_URL", Err(_)) => Some("sqlite://servio-app-webhooks.db".into()),
        _ => None,
    })?;
    // Bound to 127.0.0.1 below: without a token, answering local admin calls is a safe choice
    // (a host on a public address would set a token instead).
    settings.open_admin_api |= settings.admin_token.is_none();
    // Start the subsystem inside this app's actix System.
    let webhooks = Webhooks::start(settings).await?;
    let routes = webhooks
        .routes()
        .prefix("/webhooks/v1")
        .metrics(Some("/internal/metrics"))
        .healthz(None)
        .openapi(Some("/webhooks/openapi.json"))
        .into_configure();
    let data = web::Data::new(webhooks.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/orders", web::post().to(create_order))
            .route("/healthz", web::get().to(|| async { HttpResponse::Ok().body("ok") }))
            .configure(routes.clone())
    })
    // Let the webhook subsystem drain on SIGTERM instead of actix-server stopping the System.
    .disable_signals()
    .bind(("127.0.0.1", 3000))?
    .run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    tracing::info!("Servio demo app on http://127.0.0.1:3000 (POST /orders)");
    servio_webhooks::app::shutdown_signal().await;
    handle.stop(true).await;
    webhooks.shutdown().await;
    Ok(())
}
