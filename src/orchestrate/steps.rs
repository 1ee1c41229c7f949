//! The steps of an orchestration, kept on its task (`tasks.steps`) so a client polling the
//! task sees each step's status, and the resources and deployments it made. A retried job reads
//! them back and resumes where it was.

use std::time::Duration;

use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::jobs::{JobContext, JobError};
use crate::state::AppState;

pub struct Steps {
    task_id: Uuid,
    steps: Vec<Value>,
}

impl Steps {
    /// Steps named `names`, all `pending`.
    pub fn pending(task_id: Uuid, names: &[&str]) -> Self {
        Self {
            task_id,
            steps: names
                .iter()
                .map(|name| json!({"name": name, "status": "pending"}))
                .collect(),
        }
    }

    /// The task's steps as stored.
    pub async fn load(ctx: &JobContext) -> Result<Self, JobError> {
        let steps = sqlx::query_scalar!("SELECT steps FROM tasks WHERE id = $1", ctx.task_id)
            .fetch_one(&ctx.state.db)
            .await?;
        Ok(Self {
            task_id: ctx.task_id,
            steps: steps.as_array().cloned().unwrap_or_default(),
        })
    }

    pub fn get(&self, name: &str) -> Option<&Map<String, Value>> {
        self.steps
            .iter()
            .find(|s| s["name"] == name)
            .and_then(Value::as_object)
    }

    pub fn status(&self, name: &str) -> &str {
        self.get(name)
            .and_then(|s| s.get("status"))
            .and_then(Value::as_str)
            .unwrap_or("pending")
    }

    /// A field of a step (an id it recorded).
    pub fn id(&self, name: &str, field: &str) -> Option<Uuid> {
        self.get(name)?.get(field)?.as_str()?.parse().ok()
    }

    /// Merges `fields` into the step (adding it if new); `save` writes it.
    pub fn set(&mut self, name: &str, fields: Value) {
        let index = match self.steps.iter().position(|s| s["name"] == name) {
            Some(index) => index,
            None => {
                self.steps.push(json!({"name": name, "status": "pending"}));
                self.steps.len() - 1
            }
        };
        if let (Some(step), Some(fields)) = (self.steps[index].as_object_mut(), fields.as_object())
        {
            step.extend(fields.clone());
        }
    }

    pub async fn save(&self, conn: &mut sqlx::PgConnection) -> sqlx::Result<()> {
        sqlx::query!(
            "UPDATE tasks SET steps = $2, updated_at = now() WHERE id = $1",
            self.task_id,
            Value::Array(self.steps.clone())
        )
        .execute(conn)
        .await?;
        Ok(())
    }

    /// `set` and `save`.
    pub async fn update(
        &mut self,
        state: &AppState,
        name: &str,
        fields: Value,
    ) -> Result<(), JobError> {
        self.set(name, fields);
        let mut conn = state.db.acquire().await?;
        self.save(&mut conn).await?;
        Ok(())
    }

    pub fn into_value(self) -> Value {
        Value::Array(self.steps)
    }
}

/// Waits for a task to finish; returns its status and error. A cancelled job stops waiting.
pub async fn wait_for_task(
    ctx: &JobContext,
    task_id: Uuid,
) -> Result<(String, Option<String>), JobError> {
    loop {
        let task = sqlx::query!("SELECT status, error FROM tasks WHERE id = $1", task_id)
            .fetch_one(&ctx.state.db)
            .await?;
        if matches!(task.status.as_str(), "succeeded" | "failed" | "cancelled") {
            return Ok((task.status, task.error));
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = ctx.cancel.cancelled() => return Err(JobError::Cancelled),
        }
    }
}
