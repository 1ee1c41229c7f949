//! `GET /billing/export`: the tenant's cost records as a FOCUS 1.2 CSV file, streamed as they
//! are read (gzipped when asked), so any other FOCUS tool, or another Strata, can read them.
//! Strata's own dimensions that FOCUS has no column for (resource group, the Databricks
//! workspace, cluster, job, user, SKU and DBUs) travel as `x_` columns, which an import reads
//! back; the export's own `x_` columns follow.

use std::io::Write;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::mpsc;
use utoipa::IntoParams;
use uuid::Uuid;

use super::formats::STRATA_EXTENSIONS;
use super::records::day_bounds;
use crate::auth::TenantAuth;
use crate::error::AppResult;
use crate::http::Params;
use crate::state::AppState;

/// The FOCUS 1.2 columns, in the order the export writes them (the specification's); then come
/// [`STRATA_EXTENSIONS`] and the records' own `x_` columns. The SQL below selects the same, in
/// the same order.
pub const EXPORT_COLUMNS: &[&str] = &[
    "AvailabilityZone",
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingAccountType",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "CapacityReservationId",
    "CapacityReservationStatus",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargeFrequency",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "CommitmentDiscountCategory",
    "CommitmentDiscountId",
    "CommitmentDiscountName",
    "CommitmentDiscountQuantity",
    "CommitmentDiscountStatus",
    "CommitmentDiscountType",
    "CommitmentDiscountUnit",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ContractedCost",
    "ContractedUnitPrice",
    "EffectiveCost",
    "InvoiceId",
    "InvoiceIssuerName",
    "ListCost",
    "ListUnitPrice",
    "PricingCategory",
    "PricingCurrency",
    "PricingCurrencyContractedUnitPrice",
    "PricingCurrencyEffectiveCost",
    "PricingCurrencyListUnitPrice",
    "PricingQuantity",
    "PricingUnit",
    "ProviderName",
    "PublisherName",
    "RegionId",
    "RegionName",
    "ResourceId",
    "ResourceName",
    "ResourceType",
    "ServiceCategory",
    "ServiceName",
    "ServiceSubcategory",
    "SkuId",
    "SkuMeter",
    "SkuPriceDetails",
    "SkuPriceId",
    "SubAccountId",
    "SubAccountName",
    "SubAccountType",
    "Tags",
];

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// First day (UTC) of the charges; default: the first record.
    pub start_date: Option<NaiveDate>,
    /// Last day (UTC), inclusive; default: the last record.
    pub end_date: Option<NaiveDate>,
    /// `true`: a gzipped file (`.csv.gz`).
    pub gzip: Option<bool>,
}

/// Bytes handed to the response at a time.
const PIECE: usize = 256 << 10;

/// The tenant's cost records as FOCUS 1.2 CSV (one row per record, oldest first), streamed.
#[utoipa::path(get, path = "/billing/export", tag = "billing", params(ExportQuery),
    responses((status = 200, content_type = "text/csv", description = "FOCUS 1.2 CSV (gzipped with `gzip=true`)"), (status = 422)),
    security(("bearer" = []), ("api_key" = [])))]
pub(super) async fn export(
    State(state): State<AppState>,
    auth: TenantAuth,
    query: Params<ExportQuery>,
) -> AppResult<Response> {
    let query = query.for_tenant(auth.tenant_id)?;
    let (from, until) = day_bounds(query.start_date, query.end_date)?;
    let gzip = query.gzip.unwrap_or(false);
    // The export's own `x_` columns, found first: a CSV header is written once.
    let extra: Vec<String> = sqlx::query_scalar!(
        r#"SELECT DISTINCT jsonb_object_keys(extensions) AS "key!" FROM cost_records
           WHERE tenant_id = $1 AND charge_period_start >= $2 AND charge_period_start < $3
             AND extensions IS NOT NULL
           ORDER BY 1"#,
        auth.tenant_id,
        from,
        until
    )
    .fetch_all(&state.db)
    .await?
    .into_iter()
    .filter(|key| {
        !EXPORT_COLUMNS.iter().any(|c| c.eq_ignore_ascii_case(key))
            && !STRATA_EXTENSIONS
                .iter()
                .any(|(x, _)| x.eq_ignore_ascii_case(key))
    })
    .collect();

    let (pieces, received) = mpsc::channel::<std::io::Result<Bytes>>(4);
    let tenant_id = auth.tenant_id;
    tokio::spawn(async move {
        if let Err(err) = write(&state, tenant_id, (from, until), &extra, gzip, &pieces).await {
            // The client sees the body end early, not a silently short file.
            tracing::warn!(tenant_id = %tenant_id, error = %err, "the FOCUS export stopped");
            let _ = pieces.send(Err(std::io::Error::other(err))).await;
        }
    });
    let body = Body::from_stream(futures::stream::unfold(
        received,
        |mut received| async move { received.recv().await.map(|piece| (piece, received)) },
    ));
    let name = format!(
        "focus-{}-{}.csv{}",
        query
            .start_date
            .map(|d| d.to_string())
            .unwrap_or("start".into()),
        query
            .end_date
            .map(|d| d.to_string())
            .unwrap_or("end".into()),
        if gzip { ".gz" } else { "" }
    );
    let content_type = if gzip {
        "application/gzip"
    } else {
        "text/csv; charset=utf-8"
    };
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        body,
    )
        .into_response())
}

/// Collects what the CSV writer writes, for handing on in pieces (the writer owns one handle,
/// the loop another).
#[derive(Clone, Default)]
struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Sink {
    fn len(&self) -> usize {
        self.0.lock().map(|b| b.len()).unwrap_or(0)
    }

    fn take(&self) -> Vec<u8> {
        self.0
            .lock()
            .map(|mut b| std::mem::take(&mut *b))
            .unwrap_or_default()
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Where the CSV goes: straight into the sink, or through gzip.
enum Output {
    Plain(csv::Writer<Sink>),
    Gzip(csv::Writer<flate2::write::GzEncoder<Sink>>),
}

impl Output {
    fn row<I: IntoIterator<Item = T>, T: AsRef<[u8]>>(&mut self, fields: I) -> csv::Result<()> {
        match self {
            Output::Plain(w) => w.write_record(fields),
            Output::Gzip(w) => w.write_record(fields),
        }
    }

    /// Writes out what is buffered, the gzip trailer last.
    fn finish(self) -> std::io::Result<()> {
        match self {
            Output::Plain(w) => {
                w.into_inner()
                    .map_err(|err| std::io::Error::other(err.to_string()))?;
            }
            Output::Gzip(w) => {
                w.into_inner()
                    .map_err(|err| std::io::Error::other(err.to_string()))?
                    .finish()?;
            }
        }
        Ok(())
    }
}

async fn write(
    state: &AppState,
    tenant_id: Uuid,
    (from, until): (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>),
    extra: &[String],
    gzip: bool,
    pieces: &mpsc::Sender<std::io::Result<Bytes>>,
) -> anyhow::Result<()> {
    let builder = csv::WriterBuilder::new();
    let sink = Sink::default();
    let mut out = if gzip {
        Output::Gzip(builder.from_writer(flate2::write::GzEncoder::new(
            sink.clone(),
            flate2::Compression::fast(),
        )))
    } else {
        Output::Plain(builder.from_writer(sink.clone()))
    };
    let strata = STRATA_EXTENSIONS.iter().map(|(name, _)| *name);
    out.row(
        EXPORT_COLUMNS
            .iter()
            .copied()
            .chain(strata)
            .chain(extra.iter().map(String::as_str)),
    )?;
    let mut rows = sqlx::query!(
        r#"SELECT ARRAY[
               availability_zone, billed_cost::text, billing_account_id, billing_account_name,
               billing_account_type, billing_currency, focus_time(billing_period_end),
               focus_time(billing_period_start), capacity_reservation_id,
               capacity_reservation_status, charge_category, charge_class, charge_description,
               charge_frequency, focus_time(charge_period_end), focus_time(charge_period_start),
               commitment_discount_category, commitment_discount_id, commitment_discount_name,
               commitment_discount_quantity::text, commitment_discount_status,
               commitment_discount_type, commitment_discount_unit, consumed_quantity::text,
               consumed_unit, contracted_cost::text, contracted_unit_price::text,
               effective_cost::text, invoice_id, invoice_issuer_name, list_cost::text,
               list_unit_price::text, pricing_category, pricing_currency,
               pricing_currency_contracted_unit_price::text,
               pricing_currency_effective_cost::text, pricing_currency_list_unit_price::text,
               pricing_quantity::text, pricing_unit, provider_name, publisher_name, region_id,
               region_name, resource_id, resource_name, resource_type, service_category,
               service_name, service_subcategory, sku_id, sku_meter, sku_price_details::text,
               sku_price_id, sub_account_id, sub_account_name, sub_account_type, tags::text,
               resource_group, workspace_id, cluster_id, job_id, user_email, sku_name,
               dbu_count::text, dbu_rate::text
           ] AS "fields!: Vec<Option<String>>", extensions
           FROM cost_records
           WHERE tenant_id = $1 AND charge_period_start >= $2 AND charge_period_start < $3
           ORDER BY charge_period_start, id"#,
        tenant_id,
        from,
        until
    )
    .fetch(&state.db);
    let width = EXPORT_COLUMNS.len() + STRATA_EXTENSIONS.len() + extra.len();
    let mut fields: Vec<String> = Vec::with_capacity(width);
    while let Some(row) = rows.next().await {
        let row = row?;
        fields.clear();
        fields.extend(row.fields.into_iter().map(Option::unwrap_or_default));
        for key in extra {
            let value = match row.extensions.as_ref().and_then(|e| e.get(key)) {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
            };
            fields.push(value);
        }
        out.row(&fields)?;
        if sink.len() >= PIECE {
            let piece = sink.take();
            if pieces.send(Ok(Bytes::from(piece))).await.is_err() {
                return Ok(()); // The client went away.
            }
        }
    }
    out.finish()?;
    let _ = pieces.send(Ok(Bytes::from(sink.take()))).await;
    Ok(())
}
