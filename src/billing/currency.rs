//! Currencies: amounts stay in their billing currency in the records. A view that sums across
//! currencies converts with the tenant's own rate table (`/currency-rates`), and says which
//! rates it used and which amounts it could not convert (and so left out). Nothing is mixed
//! silently.

use std::collections::{BTreeMap, HashMap};

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::{Role, TenantAuth};
use crate::error::AppResult;
use crate::http::{Json, Validator};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_rates, put_rates))
}

/// Whether `code` looks like an ISO 4217 code (three capital letters).
pub fn is_currency_code(code: &str) -> bool {
    code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase())
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct CurrencyRates {
    /// The currency the rates are quoted in; null until rates are configured.
    pub base_currency: Option<String>,
    /// What one unit of each currency is worth in the base currency.
    #[schema(example = json!({"EUR": 1.08, "GBP": 1.27}))]
    pub rates: BTreeMap<String, f64>,
    #[serde(default, skip_deserializing)]
    pub updated_at: Option<DateTime<Utc>>,
}

/// The tenant's currency rate table.
#[utoipa::path(get, path = "/currency-rates", tag = "billing",
    responses((status = 200, body = CurrencyRates)), security(("bearer" = []), ("api_key" = [])))]
async fn get_rates(
    State(state): State<AppState>,
    auth: TenantAuth,
) -> AppResult<Json<CurrencyRates>> {
    Ok(Json(load_table(&state.db, auth.tenant_id).await?))
}

/// Replaces the tenant's currency rate table (admin).
#[utoipa::path(put, path = "/currency-rates", tag = "billing", request_body = CurrencyRates,
    responses((status = 200, body = CurrencyRates), (status = 422)),
    security(("bearer" = []), ("api_key" = [])))]
async fn put_rates(
    State(state): State<AppState>,
    auth: TenantAuth,
    Json(body): Json<CurrencyRates>,
) -> AppResult<Json<CurrencyRates>> {
    auth.require(Role::Admin)?;
    let mut v = Validator::new();
    let base = body.base_currency.unwrap_or_default().to_ascii_uppercase();
    v.check(
        is_currency_code(&base),
        "base_currency",
        "must be a three-letter ISO 4217 code",
    );
    let mut rates = Vec::new();
    for (currency, rate) in &body.rates {
        let currency = currency.to_ascii_uppercase();
        let field = format!("rates.{currency}");
        v.check(
            is_currency_code(&currency),
            &field,
            "must be a three-letter ISO 4217 code",
        );
        v.check(
            rate.is_finite() && *rate > 0.0,
            &field,
            "must be a positive number",
        );
        v.check(
            currency != base || *rate == 1.0,
            &field,
            "the base currency's rate is 1",
        );
        if currency != base {
            rates.push((currency, *rate));
        }
    }
    v.check(rates.len() <= 200, "rates", "at most 200 currencies");
    v.finish()?;
    let mut tx = state.db.begin().await?;
    sqlx::query!(
        "INSERT INTO currency_bases (tenant_id, base_currency) VALUES ($1, $2)
         ON CONFLICT (tenant_id) DO UPDATE SET base_currency = $2, updated_at = now()",
        auth.tenant_id,
        base
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!(
        "DELETE FROM currency_rates WHERE tenant_id = $1",
        auth.tenant_id
    )
    .execute(&mut *tx)
    .await?;
    let (currencies, values): (Vec<String>, Vec<f64>) = rates.into_iter().unzip();
    sqlx::query!(
        "INSERT INTO currency_rates (tenant_id, currency, rate)
         SELECT $1, c, r::numeric FROM UNNEST($2::text[], $3::float8[]) AS t (c, r)",
        auth.tenant_id,
        &currencies,
        &values
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Json(load_table(&state.db, auth.tenant_id).await?))
}

async fn load_table(db: &sqlx::PgPool, tenant_id: Uuid) -> AppResult<CurrencyRates> {
    // One query: every cost view asks.
    let rows = sqlx::query!(
        r#"SELECT b.base_currency, b.updated_at, r.currency AS "currency?", r.rate::float8 AS rate
           FROM currency_bases b LEFT JOIN currency_rates r ON r.tenant_id = b.tenant_id
           WHERE b.tenant_id = $1"#,
        tenant_id
    )
    .fetch_all(db)
    .await?;
    Ok(CurrencyRates {
        base_currency: rows.first().map(|r| r.base_currency.clone()),
        updated_at: rows.first().map(|r| r.updated_at),
        rates: rows
            .into_iter()
            .filter_map(|r| Some((r.currency?, r.rate?)))
            .collect(),
    })
}

/// How a view's amounts are brought into one currency, and what it could not bring.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct CurrencyNote {
    /// The currency every amount in the answer is in.
    pub currency: String,
    /// The rates used for amounts billed in other currencies (one unit of each, in `currency`).
    pub converted: BTreeMap<String, f64>,
    /// Amounts in currencies with no configured rate, by currency: not in any sum.
    pub not_converted: BTreeMap<String, f64>,
}

/// Converts amounts into one currency for a view.
pub struct Money {
    table: CurrencyRates,
    /// What one unit of each currency is worth in the target (the target itself: 1); empty
    /// until the target is known.
    factors: HashMap<String, f64>,
    note: CurrencyNote,
}

impl Money {
    /// The view's currency: `asked`, else the tenant's base currency, else (see
    /// [`Money::default_to`]) the currency most of the view's charges are in.
    pub async fn load(db: &sqlx::PgPool, tenant_id: Uuid, asked: Option<&str>) -> AppResult<Self> {
        let asked = asked.map(str::to_ascii_uppercase);
        if let Some(code) = &asked {
            let mut v = Validator::new();
            v.check(
                is_currency_code(code),
                "currency",
                "must be a three-letter ISO 4217 code",
            );
            v.finish()?;
        }
        let table = load_table(db, tenant_id).await?;
        let target = asked.or_else(|| table.base_currency.clone());
        Ok(Self::new(target, table))
    }

    fn new(target: Option<String>, table: CurrencyRates) -> Self {
        let mut money = Self {
            table,
            factors: HashMap::new(),
            note: CurrencyNote::default(),
        };
        if let Some(target) = target {
            money.settle(target);
        }
        money
    }

    fn settle(&mut self, target: String) {
        let table = &self.table;
        self.factors = HashMap::from([(target.clone(), 1.0)]);
        if let Some(base) = &table.base_currency {
            let in_base = |c: &str| {
                if c == base {
                    Some(1.0)
                } else {
                    table.rates.get(c).copied()
                }
            };
            if let Some(target_in_base) = in_base(&target) {
                for currency in table.rates.keys().chain(std::iter::once(base)) {
                    if let Some(rate) = in_base(currency) {
                        self.factors.insert(currency.clone(), rate / target_in_base);
                    }
                }
            }
        }
        self.note.currency = target;
    }

    /// With no currency asked for and no rate table, the view is in the currency most of its
    /// charges (`(currency, records)`) are in; USD when it has none. The first call decides.
    pub fn default_to<'a>(&mut self, charges: impl IntoIterator<Item = (&'a str, i64)>) {
        if !self.factors.is_empty() {
            return;
        }
        let mut counts = BTreeMap::<&str, i64>::new();
        for (currency, records) in charges {
            *counts.entry(currency).or_default() += records;
        }
        let most = counts
            .into_iter()
            .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0)))
            .map_or_else(|| "USD".to_string(), |(c, _)| c.to_string());
        self.settle(most);
    }

    pub fn currency(&mut self) -> &str {
        self.default_to([]);
        &self.note.currency
    }

    /// `amount` (billed in `currency`) in the view's currency; `None`, and noted as left out,
    /// when there is no rate for it.
    pub fn convert(&mut self, currency: &str, amount: f64) -> Option<f64> {
        self.default_to([]);
        match self.factors.get(currency) {
            Some(&factor) => {
                if currency != self.note.currency {
                    self.note.converted.insert(currency.to_string(), factor);
                }
                Some(amount * factor)
            }
            None => {
                *self
                    .note
                    .not_converted
                    .entry(currency.to_string())
                    .or_default() += amount;
                None
            }
        }
    }

    /// The note for the answer, with the amounts left out rounded like every amount.
    pub fn note(mut self) -> CurrencyNote {
        self.default_to([]);
        let mut note = self.note;
        for amount in note.not_converted.values_mut() {
            *amount = super::round(*amount);
        }
        note
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(base: &str, rates: &[(&str, f64)]) -> CurrencyRates {
        CurrencyRates {
            base_currency: Some(base.into()),
            rates: rates.iter().map(|(c, r)| (c.to_string(), *r)).collect(),
            updated_at: None,
        }
    }

    #[test]
    fn amounts_convert_through_the_base_or_are_left_out_and_said() {
        let mut money = Money::new(
            Some("EUR".into()),
            table("USD", &[("EUR", 1.25), ("GBP", 1.5)]),
        );
        assert_eq!(money.convert("EUR", 10.0), Some(10.0));
        assert_eq!(money.convert("USD", 10.0), Some(8.0));
        assert_eq!(money.convert("GBP", 10.0), Some(12.0));
        assert_eq!(money.convert("JPY", 100.0), None);
        assert_eq!(money.convert("JPY", 50.0), None);
        let note = money.note();
        assert_eq!(note.currency, "EUR");
        assert_eq!(note.converted.get("USD"), Some(&0.8));
        assert_eq!(note.not_converted.get("JPY"), Some(&150.0));
        assert!(!note.converted.contains_key("EUR"));

        // No table: the currency of most charges, and only it counts.
        let mut bare = Money::new(
            None,
            CurrencyRates {
                base_currency: None,
                rates: BTreeMap::new(),
                updated_at: None,
            },
        );
        bare.default_to([("EUR", 2), ("USD", 3), ("EUR", 2)]);
        bare.default_to([("USD", 10)]);
        assert_eq!(bare.currency(), "EUR");
        assert_eq!(bare.convert("EUR", 1.0), Some(1.0));
        assert_eq!(bare.convert("USD", 1.0), None);
        // A target the table does not know converts nothing else.
        let mut unknown = Money::new(Some("CHF".into()), table("USD", &[("EUR", 1.25)]));
        assert_eq!(unknown.convert("USD", 1.0), None);
        assert!(is_currency_code("USD") && !is_currency_code("usd") && !is_currency_code("US"));
    }
}
