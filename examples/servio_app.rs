//! A tiny Servio-like application that embeds the webhook subsystem.
//!
//! Its own `POST /orders` creates an order and publishes `order.created`; the admin REST API,
//! `/metrics` and `/healthz` of servio-webhooks are mounted into the same `App`.
//!
//! ```sh
//! WEBHOOKS_ALLOW_PRIVATE_TARGETS=true cargo run --example servio_app
//! curl -s -XPOST localhost:3000/v1/webhooks -H 'content-type: application/json' -d '{"url":"http://127.0.0.1:9000/hook"}'
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
        Err(e) => HttpResponse::ServiceUnavailable().json(serde_json::json!({"error": e.to_string()})),
    }
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let settings = Settings {
        database_url: std::env::var("WEBHOOKS_DATABASE_URL")
            .unwrap_or_else(|_| "sqlite://servio-app-webhooks.db".into()),
        allow_private_targets: std::env::var("WEBHOOKS_ALLOW_PRIVATE_TARGETS").is_ok_and(|v| v == "true"),
        ..Settings::default()
    };
    // Start the subsystem inside this app's actix System.
    let webhooks = Webhooks::start(settings).await?;
    let routes = webhooks.configure();
    let data = web::Data::new(webhooks.clone());
    let server = HttpServer::new(move || {
        App::new().app_data(data.clone()).route("/orders", web::post().to(create_order)).configure(routes.clone()) // /v1/..., /metrics, /healthz
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
