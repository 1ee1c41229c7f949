//! `GET /ws/deployments/{id}/logs?from_seq=N`: the stored lines after N, then live lines, then
//! `{"type":"end","status":...}`. Lines are read from the table, in `seq` order, so a client
//! that reconnects with its last `seq` misses nothing and sees nothing twice, whichever process
//! ran Terraform and whichever API replica it talks to.

use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;
use utoipa::IntoParams;
use uuid::Uuid;

use super::logs::lines_after;
use crate::auth::QueryOrHeaderAuth;
use crate::error::AppResult;
use crate::events::Event;
use crate::http::{Path, Query};
use crate::state::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WsLogQuery {
    /// Send lines after this sequence number (default 0: all).
    pub from_seq: Option<i64>,
    /// An access token or API key, for clients that cannot set headers.
    pub token: Option<String>,
}

/// Follow a deployment's log live (WebSocket).
#[utoipa::path(get, path = "/ws/deployments/{id}/logs", tag = "deployments",
    params(("id" = Uuid, Path), WsLogQuery),
    responses((status = 101, description = "WebSocket: `{seq, ts, level, type, message}` messages, then `{type: \"end\", status}`"),
              (status = 404)),
    security(("bearer" = []), ("api_key" = [])))]
pub async fn deployment_logs(
    State(state): State<AppState>,
    QueryOrHeaderAuth(auth): QueryOrHeaderAuth,
    Path(id): Path<Uuid>,
    Query(query): Query<WsLogQuery>,
    upgrade: WebSocketUpgrade,
) -> AppResult<Response> {
    // 404 before the upgrade, for another tenant's deployment too.
    super::fetch(&state, auth.tenant_id, id).await?;
    let from_seq = query.from_seq.unwrap_or(0).max(0);
    Ok(upgrade.on_upgrade(move |socket| stream(state, id, from_seq, socket)))
}

/// How often the stream re-reads even without a notification (a safety net, not the path).
const RECHECK: Duration = Duration::from_secs(5);

async fn stream(state: AppState, id: Uuid, mut last: i64, mut socket: WebSocket) {
    // Subscribe before the first read, so a line written in between is announced to us.
    let mut events = state.events.subscribe().await;
    loop {
        // The status is read before the lines: once it is final, the lines read after it are all.
        let status = match sqlx::query_scalar!("SELECT status FROM deployments WHERE id = $1", id)
            .fetch_one(&state.db)
            .await
        {
            Ok(status) => status,
            Err(_) => return,
        };
        loop {
            let Ok(lines) = lines_after(&state.db, id, last, 1000).await else {
                return;
            };
            let count = lines.len();
            for line in lines {
                last = line.seq;
                let text = serde_json::to_string(&line).unwrap_or_default();
                if socket.send(Message::Text(text.into())).await.is_err() {
                    return;
                }
            }
            if count < 1000 {
                break;
            }
        }
        if matches!(status.as_str(), "succeeded" | "failed" | "cancelled") {
            let end = json!({"type": "end", "status": status, "last_seq": last});
            let _ = socket.send(Message::Text(end.to_string().into())).await;
            let _ = socket.send(Message::Close(None)).await;
            return;
        }
        // Wait for news of this deployment (or anything that says re-read), or the client.
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Ok(Event::Deployment(d)) if d == id => break,
                    Ok(Event::Resync) | Err(RecvError::Lagged(_)) => break,
                    Ok(_) => continue,
                    Err(RecvError::Closed) => return,
                },
                message = socket.recv() => match message {
                    Some(Ok(Message::Text(text))) if text.trim() == "ping" => {
                        if socket.send(Message::Text(json!({"type": "pong"}).to_string().into())).await.is_err() {
                            return;
                        }
                    }
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                    Some(Ok(_)) => continue,
                },
                _ = tokio::time::sleep(RECHECK) => break,
            }
        }
    }
}
