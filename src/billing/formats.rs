//! Billing export formats, and how each becomes FOCUS columns. The format is told by the
//! header. Each row becomes the values of [`COLUMNS`] (text, `None` for null), checked and
//! normalised: amounts exact as written, times in RFC 3339 UTC, tags a JSON object.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use csv::StringRecord;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The cost record columns an import fills, in the order they are copied.
pub const COLUMNS: &[&str] = &[
    "billed_cost",
    "effective_cost",
    "list_cost",
    "contracted_cost",
    "billing_currency",
    "charge_period_start",
    "charge_period_end",
    "billing_period_start",
    "billing_period_end",
    "charge_category",
    "charge_class",
    "charge_description",
    "billing_account_id",
    "billing_account_name",
    "sub_account_id",
    "sub_account_name",
    "provider_name",
    "publisher_name",
    "invoice_issuer_name",
    "service_name",
    "service_category",
    "region_id",
    "region_name",
    "resource_id",
    "resource_name",
    "resource_type",
    "sku_id",
    "pricing_quantity",
    "pricing_unit",
    "consumed_quantity",
    "consumed_unit",
    "tags",
    "workspace_id",
    "cluster_id",
    "job_id",
    "user_email",
    "sku_name",
    "dbu_count",
    "dbu_rate",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Amount,
    Time,
    Tags,
}

fn kind_of(column: &str) -> Kind {
    match column {
        "billed_cost" | "effective_cost" | "list_cost" | "contracted_cost" | "pricing_quantity"
        | "consumed_quantity" | "dbu_count" | "dbu_rate" => Kind::Amount,
        "charge_period_start"
        | "charge_period_end"
        | "billing_period_start"
        | "billing_period_end" => Kind::Time,
        "tags" => Kind::Tags,
        _ => Kind::Text,
    }
}

/// Columns a row cannot be loaded without.
const REQUIRED: &[&str] = &["billed_cost", "billing_currency", "charge_period_start"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// FinOps FOCUS 1.0 to 1.2 CSV.
    Focus,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Focus => "focus",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "focus" => Some(Format::Focus),
            _ => None,
        }
    }

    /// The format a header belongs to.
    pub fn detect(header: &StringRecord) -> Option<Self> {
        let has = |name: &str| header.iter().any(|h| h.trim().eq_ignore_ascii_case(name));
        if has("BilledCost") && has("ChargePeriodStart") {
            return Some(Format::Focus);
        }
        None
    }
}

/// Reads one format's rows as cost record values.
pub struct Converter {
    /// For each of [`COLUMNS`], the source column it comes from.
    sources: Vec<Option<usize>>,
}

impl Converter {
    pub fn new(format: Format, header: &StringRecord) -> Result<Self, String> {
        let index = |name: &str| {
            header.iter().position(|h| {
                h.trim()
                    .trim_start_matches('\u{feff}')
                    .eq_ignore_ascii_case(name)
            })
        };
        let sources = match format {
            Format::Focus => COLUMNS.iter().map(|c| index(&focus_name(c))).collect(),
        };
        let converter = Self { sources };
        for required in REQUIRED {
            let at = COLUMNS.iter().position(|c| c == required).unwrap_or(0);
            if converter.sources[at].is_none() {
                return Err(format!("the header has no {} column", focus_name(required)));
            }
        }
        Ok(converter)
    }

    /// The row's values, or why it cannot be loaded.
    pub fn convert(&self, record: &StringRecord) -> Result<Vec<Option<String>>, String> {
        let mut values = Vec::with_capacity(COLUMNS.len());
        for (column, source) in COLUMNS.iter().zip(&self.sources) {
            let raw = source.and_then(|i| record.get(i)).map(str::trim);
            let raw = raw.filter(|v| !v.is_empty() && !v.eq_ignore_ascii_case("NULL"));
            let value = match raw {
                None => None,
                Some(raw) => Some(normalise(column, raw)?),
            };
            if value.is_none() && REQUIRED.contains(column) {
                return Err(format!("{} is empty", focus_name(column)));
            }
            values.push(value);
        }
        Ok(values)
    }
}

/// A column's FOCUS name: `billed_cost` is `BilledCost`, `sub_account_id` is `SubAccountId`.
fn focus_name(column: &str) -> String {
    column
        .split('_')
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

fn normalise(column: &str, raw: &str) -> Result<String, String> {
    match kind_of(column) {
        Kind::Text => Ok(raw.to_string()),
        Kind::Amount => amount(raw)
            .map(str::to_string)
            .ok_or_else(|| format!("{} is not a number: {raw:?}", focus_name(column))),
        Kind::Time => time(raw)
            .map(|t| t.to_rfc3339())
            .ok_or_else(|| format!("{} is not a time: {raw:?}", focus_name(column))),
        Kind::Tags => Ok(tags(raw).to_string()),
    }
}

/// A decimal number as written (digits, one point, an exponent), kept exact.
pub fn amount(raw: &str) -> Option<&str> {
    let (mantissa, exponent) = match raw.find(['e', 'E']) {
        Some(at) => (&raw[..at], Some(&raw[at + 1..])),
        None => (raw, None),
    };
    let digits = mantissa.strip_prefix(['-', '+']).unwrap_or(mantissa);
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let valid_mantissa = !(whole.is_empty() && fraction.is_empty())
        && whole.bytes().all(|b| b.is_ascii_digit())
        && fraction.bytes().all(|b| b.is_ascii_digit());
    let valid_exponent = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && e.len() <= 4 && e.bytes().all(|b| b.is_ascii_digit())
    });
    (valid_mantissa && valid_exponent).then_some(raw)
}

/// The times real exports write: RFC 3339, `2024-09-01 00:00:00` (UTC), with fractions, a
/// bare date, and Azure's `9/2/2023`.
pub fn time(raw: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Some(t.with_timezone(&Utc));
    }
    let trimmed = raw.trim_end_matches('Z').trim_end_matches(" UTC");
    for format in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(trimmed, format) {
            return Some(t.and_utc());
        }
    }
    for format in ["%Y-%m-%d", "%m/%d/%Y", "%Y/%m/%d"] {
        if let Ok(d) = NaiveDate::parse_from_str(trimmed, format) {
            return d.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
        }
    }
    None
}

/// Tags as a JSON object of strings: FOCUS writes a JSON object; Azure's older exports write its
/// members without braces; anything else is kept under `_raw`.
pub fn tags(raw: &str) -> Value {
    let parsed = serde_json::from_str::<Value>(raw)
        .ok()
        .or_else(|| serde_json::from_str::<Value>(&format!("{{{raw}}}")).ok());
    match parsed {
        Some(Value::Object(map)) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::String(s) => Value::String(s),
                        other => Value::String(other.to_string()),
                    };
                    (k, v)
                })
                .collect(),
        ),
        _ => {
            let mut map = Map::new();
            map.insert("_raw".into(), Value::String(raw.to_string()));
            Value::Object(map)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_kept_exact_and_checked() {
        assert_eq!(amount("0.00000080000"), Some("0.00000080000"));
        assert_eq!(amount("-12.5"), Some("-12.5"));
        assert_eq!(amount("1.5E-7"), Some("1.5E-7"));
        assert_eq!(amount(".5"), Some(".5"));
        for bad in ["", ".", "NaN", "inf", "1,5", "12a", "1e", "--1"] {
            assert_eq!(amount(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_times_of_real_exports_are_read_as_utc() {
        let expect = "2024-09-18T22:00:00+00:00";
        for raw in [
            "2024-09-18 22:00:00",
            "2024-09-18T22:00:00Z",
            "2024-09-18T22:00:00.000Z",
            "2024-09-19T00:00:00+02:00",
        ] {
            assert_eq!(time(raw).unwrap().to_rfc3339(), expect, "{raw}");
        }
        assert_eq!(
            time("9/2/2023").unwrap().to_rfc3339(),
            "2023-09-02T00:00:00+00:00"
        );
        assert!(time("yesterday").is_none());
    }

    #[test]
    fn tags_become_an_object_of_strings() {
        assert_eq!(
            tags(r#"{"env": "dev", "n": 1}"#),
            serde_json::json!({"env": "dev", "n": "1"})
        );
        assert_eq!(
            tags(r#""tagA": "valueA","tagB": "valueB""#),
            serde_json::json!({"tagA": "valueA", "tagB": "valueB"})
        );
        assert_eq!(tags("oops"), serde_json::json!({"_raw": "oops"}));
    }

    #[test]
    fn a_focus_row_is_read_by_column_name_with_nulls_and_required_columns() {
        let header = StringRecord::from(vec![
            "BilledCost",
            "BillingCurrency",
            "ChargePeriodStart",
            "ServiceName",
            "Tags",
        ]);
        assert_eq!(Format::detect(&header), Some(Format::Focus));
        let converter = Converter::new(Format::Focus, &header).unwrap();
        let row = converter
            .convert(&StringRecord::from(vec![
                "1.25",
                "USD",
                "2024-09-01 00:00:00",
                "NULL",
                "NULL",
            ]))
            .unwrap();
        assert_eq!(row[0].as_deref(), Some("1.25"));
        assert_eq!(row[5].as_deref(), Some("2024-09-01T00:00:00+00:00"));
        assert!(row[COLUMNS.iter().position(|c| *c == "service_name").unwrap()].is_none());
        let missing = converter.convert(&StringRecord::from(vec!["", "USD", "2024-09-01", "", ""]));
        assert_eq!(missing, Err("BilledCost is empty".to_string()));
        assert!(Converter::new(Format::Focus, &StringRecord::from(vec!["BilledCost"])).is_err());
    }
}
