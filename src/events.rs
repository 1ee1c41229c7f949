//! Live events across processes: workers `pg_notify`, and each API process keeps one
//! `LISTEN` connection whose notifications it fans out to its WebSocket clients. Notifications
//! only say *that* something changed; clients read the rows, so nothing is lost to a missed
//! notification (after a reconnect everyone is told to catch up).

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sqlx::PgPool;
use tokio::sync::{OnceCell, broadcast};
use uuid::Uuid;

use crate::deployments::logs::LOG_CHANNEL;

/// The channel resource changes are announced on, with a JSON payload.
pub const EVENTS_CHANNEL: &str = "strata_events";

#[derive(Debug, Clone)]
pub enum Event {
    /// New lines, or a new status, for this deployment.
    Deployment(Uuid),
    /// A resource changed (`{"type":"resource_change", ...}` with its `tenant_id`).
    Resource {
        tenant_id: Uuid,
        payload: Arc<Value>,
    },
    /// The listener reconnected: notifications may have been missed; re-read.
    Resync,
}

#[derive(Clone)]
pub struct EventHub {
    db: PgPool,
    tx: broadcast::Sender<Event>,
    listening: Arc<OnceCell<()>>,
}

impl EventHub {
    pub fn new(db: PgPool) -> Self {
        let (tx, _) = broadcast::channel(4096);
        Self {
            db,
            tx,
            listening: Arc::default(),
        }
    }

    /// A receiver of every event from now on. The first call starts the listener.
    pub async fn subscribe(&self) -> broadcast::Receiver<Event> {
        let rx = self.tx.subscribe();
        self.listening
            .get_or_init(|| async {
                let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
                tokio::spawn(listen(self.db.clone(), self.tx.clone(), ready_tx));
                // Wait (briefly) until LISTEN is in place, so nothing after this call is missed.
                let _ = tokio::time::timeout(Duration::from_secs(5), ready_rx).await;
            })
            .await;
        rx
    }
}

async fn listen(db: PgPool, tx: broadcast::Sender<Event>, ready: tokio::sync::oneshot::Sender<()>) {
    let mut ready = Some(ready);
    loop {
        let session = async {
            let mut listener = sqlx::postgres::PgListener::connect_with(&db).await?;
            listener.listen_all([LOG_CHANNEL, EVENTS_CHANNEL]).await?;
            match ready.take() {
                Some(ready) => {
                    let _ = ready.send(());
                }
                None => {
                    let _ = tx.send(Event::Resync);
                }
            }
            loop {
                let notification = listener.recv().await?;
                let event = match notification.channel() {
                    LOG_CHANNEL => notification.payload().parse().ok().map(Event::Deployment),
                    _ => serde_json::from_str::<Value>(notification.payload())
                        .ok()
                        .and_then(|payload| {
                            let tenant_id = payload.get("tenant_id")?.as_str()?.parse().ok()?;
                            Some(Event::Resource {
                                tenant_id,
                                payload: Arc::new(payload),
                            })
                        }),
                };
                if let Some(event) = event {
                    let _ = tx.send(event);
                }
            }
            #[allow(unreachable_code)]
            Ok::<(), sqlx::Error>(())
        };
        if let Err(err) = session.await {
            tracing::warn!(error = %err, "event listener lost its connection; reconnecting");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Announces an event (a JSON object with its `type`) to every `/ws/events` client of the
/// tenant. Sent at the commit of the transaction `conn` is in, if any.
pub async fn announce(
    conn: &mut sqlx::PgConnection,
    tenant_id: Uuid,
    mut payload: Value,
) -> sqlx::Result<()> {
    if let Some(object) = payload.as_object_mut() {
        object.insert("tenant_id".into(), Value::String(tenant_id.to_string()));
    }
    sqlx::query!(
        "SELECT pg_notify($1, $2)",
        EVENTS_CHANNEL,
        payload.to_string()
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Announces a resource change to every `/ws/events` client of the tenant.
pub async fn resource_changed(
    conn: &mut sqlx::PgConnection,
    tenant_id: Uuid,
    resource_id: Uuid,
    provider_id: Uuid,
    action: &str,
    status: &str,
) -> sqlx::Result<()> {
    let payload = serde_json::json!({
        "type": "resource_change",
        "action": action,
        "resource_id": resource_id,
        "provider_id": provider_id,
        "status": status,
    });
    announce(conn, tenant_id, payload).await
}

/// `GET /ws/events`: resource changes and finished billing imports of the caller's tenant as
/// they happen; a text `ping` is answered with `{"type":"pong"}`.
#[utoipa::path(get, path = "/ws/events", tag = "resources",
    params(("token" = Option<String>, Query, description = "An access token or API key, for clients that cannot set headers")),
    responses((status = 101, description = "WebSocket: `{type: \"resource_change\", action, resource_id, provider_id, status}`, `{type: \"import.completed\", import_id, task_id, rows_loaded, rows_rejected, rows_replaced}` and `{type: \"import.failed\", import_id, task_id, error}` messages")),
    security(("bearer" = []), ("api_key" = [])))]
pub async fn ws_events(
    axum::extract::State(state): axum::extract::State<crate::state::AppState>,
    crate::auth::QueryOrHeaderAuth(auth): crate::auth::QueryOrHeaderAuth,
    upgrade: axum::extract::ws::WebSocketUpgrade,
) -> axum::response::Response {
    let tenant_id = auth.tenant_id;
    upgrade.on_upgrade(move |socket| forward(state.events.clone(), tenant_id, socket))
}

async fn forward(hub: EventHub, tenant_id: Uuid, mut socket: axum::extract::ws::WebSocket) {
    use axum::extract::ws::Message;
    use tokio::sync::broadcast::error::RecvError;
    let mut events = hub.subscribe().await;
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(Event::Resource { tenant_id: t, payload }) if t == tenant_id => {
                    let mut payload = (*payload).clone();
                    if let Some(object) = payload.as_object_mut() {
                        object.remove("tenant_id");
                    }
                    if socket.send(Message::Text(payload.to_string().into())).await.is_err() {
                        return;
                    }
                }
                Ok(_) | Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return,
            },
            message = socket.recv() => match message {
                Some(Ok(Message::Text(text))) if text.trim() == "ping" => {
                    let pong = serde_json::json!({"type": "pong"}).to_string();
                    if socket.send(Message::Text(pong.into())).await.is_err() {
                        return;
                    }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => continue,
            },
        }
    }
}
