//! The sandbox's DNS host: zones and records in Postgres, with Cloudflare's rules. A sandbox
//! provider hosts the zones its settings list (`dns_zones`, by default `example.com`).

use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use super::{DnsError, Record, RecordData, unavailable};

/// The zone a sandbox provider hosts when its settings name none.
pub const DEFAULT_ZONE: &str = "example.com";

pub struct SandboxDns {
    db: PgPool,
    provider_id: Uuid,
    zones: Vec<String>,
}

struct Row {
    id: String,
    name: String,
    record_type: String,
    content: String,
    ttl: i32,
    proxied: bool,
}

impl From<Row> for Record {
    fn from(row: Row) -> Self {
        Record {
            id: row.id,
            name: row.name,
            record_type: row.record_type,
            content: row.content,
            ttl: u32::try_from(row.ttl).unwrap_or_default(),
            proxied: row.proxied,
        }
    }
}

impl SandboxDns {
    pub fn new(db: PgPool, provider_id: Uuid, settings: &Value) -> Self {
        let zones = match settings.get("dns_zones").and_then(Value::as_array) {
            Some(zones) => zones
                .iter()
                .filter_map(Value::as_str)
                .map(|z| z.trim_end_matches('.').to_ascii_lowercase())
                .collect(),
            None => vec![DEFAULT_ZONE.to_string()],
        };
        Self {
            db,
            provider_id,
            zones,
        }
    }

    pub async fn zone_id(&self, name: &str) -> Result<String, DnsError> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if !self.zones.contains(&name) {
            return Err(DnsError::ZoneNotFound(name));
        }
        // A hosted zone's row appears on first use; its id then stays.
        sqlx::query!(
            "INSERT INTO sandbox_dns_zones (id, provider_id, name) VALUES ($1, $2, $3)
             ON CONFLICT (provider_id, name) DO NOTHING",
            Uuid::new_v4().simple().to_string(),
            self.provider_id,
            name
        )
        .execute(&self.db)
        .await
        .map_err(unavailable)?;
        sqlx::query_scalar!(
            "SELECT id FROM sandbox_dns_zones WHERE provider_id = $1 AND name = $2",
            self.provider_id,
            name
        )
        .fetch_one(&self.db)
        .await
        .map_err(unavailable)
    }

    /// Checks that the zone is this provider's, and locks it until `tx` ends, so checks for
    /// clashing records and the write that follows them are one step.
    async fn lock_zone(
        &self,
        tx: &mut sqlx::PgConnection,
        zone_id: &str,
    ) -> Result<String, DnsError> {
        sqlx::query_scalar!(
            "SELECT name FROM sandbox_dns_zones WHERE id = $1 AND provider_id = $2 FOR UPDATE",
            zone_id,
            self.provider_id
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| DnsError::ZoneNotFound(zone_id.to_string()))
    }

    pub async fn find(
        &self,
        zone_id: &str,
        name: &str,
        record_type: &str,
    ) -> Result<Vec<Record>, DnsError> {
        let mut tx = self.db.begin().await.map_err(unavailable)?;
        self.lock_zone(&mut tx, zone_id).await?;
        let rows = sqlx::query_as!(
            Row,
            "SELECT id, name, record_type, content, ttl, proxied FROM sandbox_dns_records
             WHERE zone_id = $1 AND lower(name) = lower($2) AND record_type = $3 ORDER BY created_on, id",
            zone_id,
            name,
            record_type
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(unavailable)?;
        Ok(rows.into_iter().map(Record::from).collect())
    }

    pub async fn get(&self, zone_id: &str, id: &str) -> Result<Record, DnsError> {
        let mut tx = self.db.begin().await.map_err(unavailable)?;
        self.lock_zone(&mut tx, zone_id).await?;
        sqlx::query_as!(
            Row,
            "SELECT id, name, record_type, content, ttl, proxied FROM sandbox_dns_records
             WHERE zone_id = $1 AND id = $2",
            zone_id,
            id
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(unavailable)?
        .map(Record::from)
        .ok_or_else(|| DnsError::RecordNotFound(id.to_string()))
    }

    /// Cloudflare's rules: no two identical records, and a CNAME shares its name with nothing.
    async fn check_clashes(
        tx: &mut sqlx::PgConnection,
        zone_id: &str,
        data: &RecordData,
        except: &str,
    ) -> Result<(), DnsError> {
        let same_name = sqlx::query!(
            "SELECT record_type, content FROM sandbox_dns_records
             WHERE zone_id = $1 AND lower(name) = lower($2) AND id <> $3",
            zone_id,
            data.name,
            except
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(unavailable)?;
        if same_name
            .iter()
            .any(|r| r.record_type == data.record_type && r.content == data.content)
        {
            return Err(DnsError::Conflict(
                "An identical record already exists. (code 81058)".into(),
            ));
        }
        if !same_name.is_empty()
            && (data.record_type == "CNAME" || same_name.iter().any(|r| r.record_type == "CNAME"))
        {
            return Err(DnsError::Conflict(
                "An A, AAAA, or CNAME record with that host already exists. (code 81053)".into(),
            ));
        }
        Ok(())
    }

    fn check_in_zone(zone: &str, data: &RecordData) -> Result<(), DnsError> {
        let name = data.name.to_ascii_lowercase();
        if name == zone || name.ends_with(&format!(".{zone}")) {
            Ok(())
        } else {
            Err(DnsError::Rejected(format!(
                "{} is not in zone {zone}",
                data.name
            )))
        }
    }

    pub async fn create(&self, zone_id: &str, data: &RecordData) -> Result<Record, DnsError> {
        let mut tx = self.db.begin().await.map_err(unavailable)?;
        let zone = self.lock_zone(&mut tx, zone_id).await?;
        Self::check_in_zone(&zone, data)?;
        Self::check_clashes(&mut tx, zone_id, data, "").await?;
        let row = sqlx::query_as!(
            Row,
            "INSERT INTO sandbox_dns_records (id, zone_id, name, record_type, content, ttl, proxied)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             RETURNING id, name, record_type, content, ttl, proxied",
            Uuid::new_v4().simple().to_string(),
            zone_id,
            data.name,
            data.record_type,
            data.content,
            data.ttl as i32,
            data.proxied
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        Ok(row.into())
    }

    pub async fn update(
        &self,
        zone_id: &str,
        id: &str,
        data: &RecordData,
    ) -> Result<Record, DnsError> {
        let mut tx = self.db.begin().await.map_err(unavailable)?;
        let zone = self.lock_zone(&mut tx, zone_id).await?;
        Self::check_in_zone(&zone, data)?;
        Self::check_clashes(&mut tx, zone_id, data, id).await?;
        let row = sqlx::query_as!(
            Row,
            "UPDATE sandbox_dns_records SET name = $3, record_type = $4, content = $5, ttl = $6,
                    proxied = $7, modified_on = now()
             WHERE zone_id = $1 AND id = $2
             RETURNING id, name, record_type, content, ttl, proxied",
            zone_id,
            id,
            data.name,
            data.record_type,
            data.content,
            data.ttl as i32,
            data.proxied
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| DnsError::RecordNotFound(id.to_string()))?;
        tx.commit().await.map_err(unavailable)?;
        Ok(row.into())
    }

    pub async fn delete(&self, zone_id: &str, id: &str) -> Result<(), DnsError> {
        let mut tx = self.db.begin().await.map_err(unavailable)?;
        self.lock_zone(&mut tx, zone_id).await?;
        let deleted = sqlx::query!(
            "DELETE FROM sandbox_dns_records WHERE zone_id = $1 AND id = $2",
            zone_id,
            id
        )
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?
        .rows_affected();
        tx.commit().await.map_err(unavailable)?;
        if deleted == 0 {
            return Err(DnsError::RecordNotFound(id.to_string()));
        }
        Ok(())
    }
}
