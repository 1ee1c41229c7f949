//! Billing export formats, and how each becomes FOCUS columns. The format is told by the
//! header. Each row becomes the values of [`COLUMNS`] (text, `None` for null), checked and
//! normalised: amounts exact as written, times in UTC (as written when they are, as RFC 3339
//! otherwise, so each starts with its UTC date), tags a JSON object.

use std::borrow::Cow;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Utc};
use csv::StringRecord;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A converted value: text, `None` for null.
pub type Field<'r> = Option<Cow<'r, str>>;

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
    "resource_group",
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
    // The rest of FOCUS 1.2.
    "availability_zone",
    "billing_account_type",
    "capacity_reservation_id",
    "capacity_reservation_status",
    "charge_frequency",
    "commitment_discount_category",
    "commitment_discount_id",
    "commitment_discount_name",
    "commitment_discount_quantity",
    "commitment_discount_status",
    "commitment_discount_type",
    "commitment_discount_unit",
    "contracted_unit_price",
    "invoice_id",
    "list_unit_price",
    "pricing_category",
    "pricing_currency",
    "pricing_currency_contracted_unit_price",
    "pricing_currency_effective_cost",
    "pricing_currency_list_unit_price",
    "service_subcategory",
    "sku_meter",
    "sku_price_details",
    "sku_price_id",
    "sub_account_type",
    // The export's `x_` columns, as one JSON object.
    "extensions",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Amount,
    Time,
    /// A JSON object of strings (FOCUS Tags).
    Tags,
    /// A JSON object kept as written (SkuPriceDetails, the `x_` columns).
    Json,
}

/// The kind of each of [`COLUMNS`].
pub fn kinds() -> &'static [Kind] {
    static KINDS: std::sync::OnceLock<Vec<Kind>> = std::sync::OnceLock::new();
    KINDS.get_or_init(|| COLUMNS.iter().map(|c| kind_of(c)).collect())
}

fn kind_of(column: &str) -> Kind {
    match column {
        "billed_cost"
        | "effective_cost"
        | "list_cost"
        | "contracted_cost"
        | "pricing_quantity"
        | "consumed_quantity"
        | "dbu_count"
        | "dbu_rate"
        | "commitment_discount_quantity"
        | "contracted_unit_price"
        | "list_unit_price"
        | "pricing_currency_contracted_unit_price"
        | "pricing_currency_effective_cost"
        | "pricing_currency_list_unit_price" => Kind::Amount,
        "charge_period_start"
        | "charge_period_end"
        | "billing_period_start"
        | "billing_period_end" => Kind::Time,
        "tags" => Kind::Tags,
        "sku_price_details" | "extensions" => Kind::Json,
        _ => Kind::Text,
    }
}

/// Strata's dimensions FOCUS has no column for, as `x_` columns (its FOCUS export writes them;
/// Microsoft's FOCUS exports write the first): read into their own columns, not `extensions`.
pub const STRATA_EXTENSIONS: &[(&str, &str)] = &[
    ("x_ResourceGroupName", "resource_group"),
    ("x_WorkspaceId", "workspace_id"),
    ("x_ClusterId", "cluster_id"),
    ("x_JobId", "job_id"),
    ("x_UserEmail", "user_email"),
    ("x_SkuName", "sku_name"),
    ("x_DbuCount", "dbu_count"),
    ("x_DbuRate", "dbu_rate"),
];

/// Where the `x_` columns go in a converted row.
const EXTENSIONS: usize = super::rollup::column("extensions");

/// Columns a row cannot be loaded without.
const REQUIRED: &[&str] = &["billed_cost", "billing_currency", "charge_period_start"];

/// The columns FOCUS (1.0 to 1.2 alike) makes mandatory: a FOCUS file without one of them is
/// refused, unless the import gives it a value in `defaults`.
pub const FOCUS_MANDATORY: &[&str] = &[
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "ContractedCost",
    "EffectiveCost",
    "InvoiceIssuerName",
    "ListCost",
    "PricingQuantity",
    "PricingUnit",
    "ProviderName",
    "PublisherName",
    "ServiceCategory",
    "ServiceName",
];

/// Checks the `defaults` of an import request: an object of values by column name (FOCUS's,
/// compared loosely), each valid for its column. Returns them by FOCUS name, normalised.
pub fn check_defaults(given: &Value) -> Result<Value, String> {
    let Value::Object(given) = given else {
        return Err(
            "must be a JSON object of column values, like {\"BillingCurrency\": \"USD\"}".into(),
        );
    };
    let mut checked = Map::new();
    for (name, value) in given {
        let Some(at) = focus_names().iter().position(|n| key(n) == key(name)) else {
            return Err(format!("{name} is not a column a record has"));
        };
        let text = match value {
            Value::String(s) => s.trim().to_string(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Object(_) if matches!(kinds()[at], Kind::Tags | Kind::Json) => value.to_string(),
            _ => return Err(format!("{name} must be a string or a number")),
        };
        if text.is_empty() {
            return Err(format!("{name} must not be empty"));
        }
        let normalised = normalise(COLUMNS[at], kinds()[at], Cow::Borrowed(&text))?;
        checked.insert(
            focus_names()[at].clone(),
            Value::String(normalised.into_owned()),
        );
    }
    Ok(Value::Object(checked))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// FinOps FOCUS 1.0 to 1.2 CSV.
    Focus,
    /// AWS Cost and Usage Report (CUR, and CUR 2.0's snake_case columns).
    AwsCur,
    /// Azure cost export (EA and MCA, actual and amortized).
    Azure,
    /// OCI cost report.
    Oci,
    /// Google Cloud billing export (BigQuery's columns, as CSV: `service.description`, ...).
    Gcp,
    /// Databricks `system.billing.usage`, with a price (`list_price`, `pricing.default`) or a
    /// cost column joined in (the table itself has quantities only).
    Databricks,
}

pub const FORMATS: &[Format] = &[
    Format::Focus,
    Format::AwsCur,
    Format::Azure,
    Format::Oci,
    Format::Gcp,
    Format::Databricks,
];

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Focus => "focus",
            Format::AwsCur => "aws_cur",
            Format::Azure => "azure",
            Format::Oci => "oci",
            Format::Gcp => "gcp",
            Format::Databricks => "databricks",
        }
    }

    /// The format's name for people.
    pub fn title(self) -> &'static str {
        match self {
            Format::Focus => "FOCUS",
            Format::AwsCur => "an AWS Cost and Usage Report",
            Format::Azure => "an Azure cost export",
            Format::Oci => "an OCI cost report",
            Format::Gcp => "a Google Cloud billing export",
            Format::Databricks => "Databricks usage",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        FORMATS.iter().copied().find(|f| f.as_str() == text)
    }

    /// The format a header belongs to.
    pub fn detect(header: &StringRecord) -> Option<Self> {
        let names: Vec<String> = header.iter().map(key).collect();
        let has = |name: &str| names.iter().any(|n| *n == key(name));
        if has("BilledCost") && has("ChargePeriodStart") {
            Some(Format::Focus)
        } else if has("lineItem/UnblendedCost") && has("lineItem/UsageStartDate") {
            Some(Format::AwsCur)
        } else if AZURE_COST.iter().any(|c| has(c))
            && AZURE_DAY.iter().any(|c| has(c))
            && (has("ConsumedService") || has("MeterCategory") || has("MeterId"))
        {
            Some(Format::Azure)
        } else if has("cost/myCost") && has("lineItem/intervalUsageStart") {
            Some(Format::Oci)
        } else if has("cost") && has("usage_start_time") && has("service.description") {
            Some(Format::Gcp)
        } else if has("usage_quantity") && has("sku_name") && has("workspace_id") {
            Some(Format::Databricks)
        } else {
            None
        }
    }
}

/// Azure's cost column in each schema: MCA and EA since 2020 (`CostInBillingCurrency`), the
/// 2019 usage schemas and pay-as-you-go (`PreTaxCost`), and the older EA export (`Cost`).
const AZURE_COST: &[&str] = &["CostInBillingCurrency", "PreTaxCost", "Cost"];
/// Azure's usage day: `Date`, or the pay-as-you-go and 2019 EA `UsageDateTime`.
const AZURE_DAY: &[&str] = &["Date", "UsageDateTime", "UsageDate"];
/// Azure's billing currency: EA `BillingCurrencyCode`, MCA and older EA `BillingCurrency`,
/// pay-as-you-go `Currency`.
const AZURE_CURRENCY: &[&str] = &["BillingCurrencyCode", "BillingCurrency", "Currency"];

/// A header name compared loosely: `lineItem/UnblendedCost` (CUR) and `line_item_unblended_cost`
/// (CUR 2.0) are the same column, as are `CostInBillingCurrency` and `costInBillingCurrency`.
fn key(name: &str) -> String {
    name.trim_start_matches('\u{feff}')
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Reads one format's rows as cost record values.
pub struct Converter {
    format: Format,
    /// Header position by loose name.
    index: std::collections::HashMap<String, usize>,
    /// CUR's `resourceTags/user:team` columns: (tag key, position).
    tag_columns: Vec<(String, usize)>,
    /// FOCUS: each of [`COLUMNS`]' position in the header, found once rather than per row.
    focus_positions: Vec<Option<usize>>,
    /// `x_` columns: (name, position).
    extension_columns: Vec<(String, usize)>,
    /// The import's value for each of [`COLUMNS`] where a row has none.
    defaults: Vec<Option<String>>,
    /// Fields in the header: a row with fewer is refused.
    header_len: usize,
}

impl Converter {
    /// A converter for files with this header. `defaults` holds values by FOCUS column name
    /// (as [`check_defaults`] returns them) for columns the file lacks or leaves empty.
    pub fn new(format: Format, header: &StringRecord, defaults: &Value) -> Result<Self, String> {
        let mut index = std::collections::HashMap::new();
        for (i, name) in header.iter().enumerate() {
            index.entry(key(name)).or_insert(i);
        }
        let tag_columns = header
            .iter()
            .enumerate()
            .filter_map(|(i, name)| {
                // CUR's `resourceTags/user:team`, OCI's `tags/Operations.CostCenter`.
                name.strip_prefix("resourceTags/")
                    .or_else(|| name.strip_prefix("tags/"))
                    .map(|tag| (tag.strip_prefix("user:").unwrap_or(tag).to_string(), i))
            })
            .collect();
        let focus_positions = COLUMNS
            .iter()
            .zip(focus_names())
            .map(|(&column, name)| match column {
                // Made from every other `x_` column (below).
                "extensions" => None,
                _ => match STRATA_EXTENSIONS.iter().find(|(_, c)| *c == column) {
                    // Strata's own dimensions (and Microsoft's resource group).
                    Some((extension, _)) => index
                        .get(&key(extension))
                        .or_else(|| index.get(&key(name)))
                        .copied(),
                    None => index.get(&key(name)).copied(),
                },
            })
            .collect();
        let defaults: Vec<Option<String>> = focus_names()
            .iter()
            .map(|name| {
                defaults
                    .get(name)
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .collect();
        // FOCUS's `x_` columns (and anything else a FOCUS file adds), kept by name.
        let extension_columns = header
            .iter()
            .enumerate()
            .filter(|(_, name)| {
                let name = name.trim_start_matches('\u{feff}');
                (name.starts_with("x_") || name.starts_with("X_"))
                    && !STRATA_EXTENSIONS
                        .iter()
                        .any(|(x, _)| x.eq_ignore_ascii_case(name))
            })
            .map(|(i, name)| (name.trim_start_matches('\u{feff}').to_string(), i))
            .collect();
        let converter = Self {
            format,
            index,
            tag_columns,
            extension_columns,
            focus_positions,
            defaults,
            header_len: header.len(),
        };
        let required: &[&str] = match format {
            Format::Focus => FOCUS_MANDATORY,
            Format::AwsCur => &[
                "lineItem/UnblendedCost",
                "lineItem/CurrencyCode",
                "lineItem/UsageStartDate",
            ],
            // Azure's schemas name these differently: checked below.
            Format::Azure => &[],
            Format::Oci => &[
                "cost/myCost",
                "cost/currencyCode",
                "lineItem/intervalUsageStart",
            ],
            Format::Gcp => &["cost", "currency", "usage_start_time"],
            Format::Databricks => &["usage_quantity", "usage_start_time", "sku_name"],
        };
        let defaulted = |name: &str| {
            focus_names()
                .iter()
                .position(|n| n == name)
                .is_some_and(|at| converter.defaults[at].is_some())
        };
        let missing: Vec<&str> = required
            .iter()
            .copied()
            .filter(|name| !converter.index.contains_key(&key(name)) && !defaulted(name))
            .collect();
        if !missing.is_empty() {
            let example = missing
                .iter()
                .map(|name| format!("\"{name}\": \"...\""))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(format!(
                "the file has no {} column{} ({} requires {}): add {}, or give the import a value \
                 for each in defaults, like {{{example}}}",
                missing.join(", "),
                if missing.len() == 1 { "" } else { "s" },
                format.title(),
                if missing.len() == 1 { "it" } else { "them" },
                if missing.len() == 1 { "it" } else { "them" },
            ));
        }
        if format == Format::Azure {
            let has = |names: &[&str]| names.iter().any(|n| converter.index.contains_key(&key(n)));
            let mut missing = Vec::new();
            if !has(AZURE_COST) {
                missing.push("a cost (CostInBillingCurrency, PreTaxCost or Cost)");
            }
            if !has(AZURE_DAY) {
                missing.push("a usage date (Date or UsageDateTime)");
            }
            // EA's 2019 usage schema names no currency: the import gives it.
            if !has(AZURE_CURRENCY) && !defaulted("BillingCurrency") {
                missing.push(
                    "a currency (BillingCurrencyCode, BillingCurrency or Currency; or give \
                     BillingCurrency in defaults)",
                );
            }
            if !missing.is_empty() {
                return Err(format!(
                    "the Azure export has no column for {}",
                    missing.join(", ")
                ));
            }
        }
        Ok(converter)
    }

    /// The row's values, or why it cannot be loaded. FOCUS values are borrowed from the record
    /// where normalising leaves them as written (most are): no copy per field.
    pub fn convert<'r>(&'r self, record: &'r StringRecord) -> Result<Vec<Field<'r>>, String> {
        if record.len() < self.header_len {
            return Err(format!(
                "the row has {} fields where the header has {}",
                record.len(),
                self.header_len
            ));
        }
        if record.len() > self.header_len
            && record
                .iter()
                .skip(self.header_len)
                .any(|f| !f.trim().is_empty())
        {
            return Err(format!(
                "the row has {} fields where the header has {}",
                record.len(),
                self.header_len
            ));
        }
        let owned = |row: Vec<Option<String>>| -> Vec<Field<'r>> {
            row.into_iter().map(|v| v.map(Cow::Owned)).collect()
        };
        let raw: Vec<Field<'r>> = match self.format {
            Format::Focus => {
                let mut row: Vec<Field<'r>> = self
                    .focus_positions
                    .iter()
                    .map(|&at| value(record, at?).map(Cow::Borrowed))
                    .collect();
                row[EXTENSIONS] = self.extensions(record).map(Cow::Owned);
                row
            }
            Format::AwsCur => owned(self.aws(record)?),
            Format::Azure => owned(self.azure(record)?),
            Format::Oci => owned(self.oci(record)?),
            Format::Gcp => owned(self.gcp(record)?),
            Format::Databricks => owned(self.databricks(record)?),
        };
        let mut values = Vec::with_capacity(COLUMNS.len());
        for (((column, &kind), raw), default) in
            COLUMNS.iter().zip(kinds()).zip(raw).zip(&self.defaults)
        {
            let value = match raw {
                // Defaults were normalised when the import was asked for.
                None => default.as_deref().map(Cow::Borrowed),
                Some(raw) => Some(normalise(column, kind, raw)?),
            };
            if value.is_none() && REQUIRED.contains(column) {
                return Err(format!("{} is empty", focus_name(column)));
            }
            values.push(value);
        }
        Ok(values)
    }

    /// The row's `x_` columns with a value, as a JSON object.
    fn extensions(&self, record: &StringRecord) -> Option<String> {
        if self.extension_columns.is_empty() {
            return None;
        }
        let found: Map<String, Value> = self
            .extension_columns
            .iter()
            .filter_map(|(name, at)| {
                let text = value(record, *at)?;
                Some((name.clone(), Value::String(text.to_string())))
            })
            .collect();
        (!found.is_empty()).then(|| Value::Object(found).to_string())
    }

    /// A column's value: `None` when the column is absent, empty or the literal `NULL`.
    fn get<'r>(&self, record: &'r StringRecord, name: &str) -> Option<&'r str> {
        // Called for every column of every row: the loose name is made on the stack.
        let mut buffer = [0u8; 256];
        let mut len = 0;
        for b in name.trim_start_matches('\u{feff}').bytes() {
            if b.is_ascii_alphanumeric() {
                *buffer.get_mut(len)? = b.to_ascii_lowercase();
                len += 1;
            }
        }
        let loose = std::str::from_utf8(&buffer[..len]).ok()?;
        value(record, *self.index.get(loose)?)
    }

    /// AWS CUR to FOCUS, after focus_converters' `aws-cur` rules.
    fn aws(&self, r: &StringRecord) -> Result<Vec<Option<String>>, String> {
        let v = |name: &str| self.get(r, name);
        let line_type = v("lineItem/LineItemType").unwrap_or_default();
        let usage = v("lineItem/UsageAmount");
        let effective = match line_type {
            "SavingsPlanCoveredUsage" => {
                v("savingsPlan/SavingsPlanEffectiveCost").map(str::to_string)
            }
            "SavingsPlanRecurringFee" => Some(decimal_op(
                v("savingsPlan/TotalCommitmentToDate"),
                v("savingsPlan/UsedCommitment"),
                |a, b| a - b,
            )?),
            "SavingsPlanNegation" | "SavingsPlanUpfrontFee" => Some("0".into()),
            "DiscountedUsage" => v("reservation/EffectiveCost").map(str::to_string),
            "RIFee" => Some(decimal_op(
                v("reservation/UnusedAmortizedUpfrontFeeForBillingPeriod"),
                v("reservation/UnusedRecurringFee"),
                |a, b| a + b,
            )?),
            "Fee" if v("reservation/ReservationARN").is_some() => Some("0".into()),
            _ => v("lineItem/UnblendedCost").map(str::to_string),
        };
        let list = match v("pricing/publicOnDemandRate") {
            Some(rate) => Some(decimal_op(Some(rate), usage, |a, b| a * b)?),
            None => v("pricing/publicOnDemandCost").map(str::to_string),
        };
        let category = match line_type {
            "Tax" => Some("Tax"),
            "Fee" | "SavingsPlanUpfrontFee" | "RIFee" | "SavingsPlanRecurringFee" => {
                Some("Purchase")
            }
            "Usage"
            | "SavingsPlanCoveredUsage"
            | "SavingsPlanNegation"
            | "DiscountedUsage"
            | "BundledDiscount"
            | "Discount"
            | "PrivateRateDiscount"
            | "EdpDiscount" => Some("Usage"),
            "Credit" | "Refund" => Some("Adjustment"),
            _ => None,
        };
        let product = v("lineItem/ProductCode");
        let resource = v("lineItem/ResourceId");
        let arn_part = |i: usize| {
            resource
                .filter(|id| id.starts_with("arn:"))
                .and_then(|id| id.split(':').nth(i))
                .filter(|p| !p.is_empty())
        };
        let mut tags: serde_json::Map<String, Value> = self
            .tag_columns(r)
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        // CUR 2.0 keeps them in one map column.
        if let Some(Value::Object(more)) =
            v("resource_tags").and_then(|t| serde_json::from_str(t).ok())
        {
            tags.extend(more);
        }
        let mut row = empty_row();
        let mut set = |column: &str, value: Option<String>| set_column(&mut row, column, value);
        let text = |s: Option<&str>| s.map(str::to_string);
        set(
            "billed_cost",
            text(v("lineItem/NetUnblendedCost").or(v("lineItem/UnblendedCost"))),
        );
        set("effective_cost", effective);
        set("list_cost", list);
        set("billing_currency", text(v("lineItem/CurrencyCode")));
        set("charge_period_start", text(v("lineItem/UsageStartDate")));
        set("charge_period_end", text(v("lineItem/UsageEndDate")));
        set(
            "billing_period_start",
            text(v("bill/BillingPeriodStartDate")),
        );
        set("billing_period_end", text(v("bill/BillingPeriodEndDate")));
        set("charge_category", category.map(str::to_string));
        set(
            "charge_description",
            text(v("lineItem/LineItemDescription")),
        );
        set("billing_account_id", text(v("bill/PayerAccountId")));
        set("sub_account_id", text(v("lineItem/UsageAccountId")));
        set("provider_name", Some("AWS".into()));
        set("publisher_name", text(v("lineItem/LegalEntity")));
        set("invoice_issuer_name", text(v("bill/InvoicingEntity")));
        set("service_name", text(product));
        set(
            "service_category",
            Some(
                product
                    .and_then(aws_category)
                    .unwrap_or("Other")
                    .to_string(),
            ),
        );
        set(
            "region_id",
            text(v("product/region").or(v("product/regionCode"))),
        );
        set("resource_id", text(resource));
        set("resource_name", text(arn_part(6).or(arn_part(5))));
        set(
            "resource_type",
            text(arn_part(5).filter(|_| arn_part(6).is_some())),
        );
        set("sku_id", text(v("product/sku")));
        set(
            "pricing_quantity",
            text(v("reservation/TotalReservedUnits").or(usage)),
        );
        set("pricing_unit", text(v("pricing/unit")));
        set("consumed_quantity", text(usage));
        set("consumed_unit", text(v("pricing/unit")));
        // Commitments: the Savings Plan or reservation a line belongs to, and whether it is
        // usage the commitment covered.
        let savings_plan = v("savingsPlan/SavingsPlanARN");
        let reservation = v("reservation/ReservationARN");
        set("commitment_discount_id", text(savings_plan.or(reservation)));
        let (discount_category, discount_type) = match (savings_plan, reservation) {
            (Some(_), _) => (Some("Spend"), Some("Savings Plan")),
            (None, Some(_)) => (Some("Usage"), Some("Reserved Instance")),
            (None, None) => (None, None),
        };
        set(
            "commitment_discount_category",
            discount_category.map(str::to_string),
        );
        set(
            "commitment_discount_type",
            discount_type.map(str::to_string),
        );
        set(
            "commitment_discount_status",
            matches!(line_type, "SavingsPlanCoveredUsage" | "DiscountedUsage")
                .then(|| "Used".into()),
        );
        set(
            "pricing_category",
            match (line_type, v("pricing/term").or(v("product/PurchaseOption"))) {
                ("SavingsPlanCoveredUsage" | "DiscountedUsage", _) => Some("Committed".into()),
                (_, Some("OnDemand" | "On-Demand")) => Some("Standard".into()),
                (_, Some("Spot" | "Spot Instances")) => Some("Dynamic".into()),
                (_, Some("Reserved" | "Reserved Instances")) => Some("Committed".into()),
                _ => None,
            },
        );
        set("invoice_id", text(v("bill/InvoiceId")));
        set("availability_zone", text(v("lineItem/AvailabilityZone")));
        set("region_name", text(v("product/location")));
        set(
            "sku_price_id",
            text(v("pricing/RateCode").or(v("pricing/RateId"))),
        );
        set("list_unit_price", text(v("pricing/publicOnDemandRate")));
        set("billing_account_name", text(v("bill/PayerAccountName")));
        set("sub_account_name", text(v("lineItem/UsageAccountName")));
        set(
            "tags",
            (!tags.is_empty()).then(|| Value::Object(tags).to_string()),
        );
        Ok(row)
    }

    /// Azure Cost Management exports to FOCUS: every schema of cost details (EA since 2019,
    /// the older EA export with `Cost` and `BillingCurrency`, MCA, pay-as-you-go), actual or
    /// amortized, after the FinOps toolkit's conversion guide ("Convert Cost Management data to
    /// FOCUS"). Where Strata differs:
    /// - One file at a time: the guide combines both datasets (amortized rows, plus the
    ///   commitment purchases and refunds of actual cost); Strata converts each as it comes, and
    ///   the later dataset of a scope replaces the earlier (see `billing/import.rs`).
    /// - Unused commitment (`UnusedReservation`, `UnusedSavingsPlan`) has BilledCost 0, as FOCUS
    ///   defines it (the invoice carries the purchase); the guide's rule, read literally, keeps
    ///   its cost there too.
    /// - The charge period is the usage day (`Date` to the next day), the provider `Microsoft`
    ///   (as Azure's own FOCUS export names it), the service name the lowercased consumed
    ///   service, the region id the location lowercased without spaces; no PricingUnits or
    ///   Regions lookup (PricingQuantity is the quantity as written, RegionName the location).
    fn azure(&self, r: &StringRecord) -> Result<Vec<Option<String>>, String> {
        let v = |name: &str| self.get(r, name);
        let first = |names: &[&str]| names.iter().find_map(|n| v(n));
        let text = |s: Option<&str>| s.map(str::to_string);
        let day = first(AZURE_DAY)
            .map(|d| time(d).ok_or_else(|| format!("Date is not a date: {d:?}")))
            .transpose()?;
        let cost = first(AZURE_COST);
        // MCA bills by billing profile; its files have an invoice id and a pricing currency.
        let mca = self.index.contains_key("costinpricingcurrency")
            || self.index.contains_key("invoiceid");
        let charge_type = v("ChargeType").unwrap_or("Usage");
        let pricing_model = v("PricingModel")
            .map(|m| m.replace(' ', "").to_ascii_lowercase())
            .unwrap_or_default();
        let commitment = matches!(pricing_model.as_str(), "reservation" | "savingsplan");
        let unused = matches!(charge_type, "UnusedReservation" | "UnusedSavingsPlan");
        let purchase = matches!(charge_type, "Purchase" | "Refund");
        let category = match charge_type {
            "Usage" | "Purchase" | "Credit" | "Tax" => charge_type,
            "UnusedReservation" | "UnusedSavingsPlan" => "Usage",
            "Refund" => "Purchase",
            _ => "Adjustment",
        };
        // What the invoice says: commitment-covered usage and unused commitment are paid by
        // the purchase; what it cost: purchases are spread over the usage instead.
        let billed = if commitment && (charge_type == "Usage" || unused) {
            Some("0")
        } else {
            cost
        };
        let effective = if commitment && purchase {
            Some("0")
        } else {
            cost
        };
        // Azure writes the same service in several cases (`Microsoft.Compute`, `microsoft.compute`).
        let service = v("ConsumedService").map(str::to_ascii_lowercase);
        let service = service.as_deref();
        let quantity = first(&["Quantity", "UsageQuantity"]);
        let multiply = |price: Option<&str>| match (price, quantity) {
            (Some(price), Some(quantity)) => {
                decimal_op(Some(price), Some(quantity), |a, b| a * b).map(Some)
            }
            _ => Ok(None),
        };
        let list = match v("PaygCostInBillingCurrency") {
            Some(list) => Some(list.to_string()),
            None => multiply(v("PayGPrice"))?,
        };
        let benefit = first(&["benefitId", "ReservationId"]);
        let benefit_lower = benefit.map(str::to_ascii_lowercase).unwrap_or_default();
        let (discount_category, discount_type) = if benefit_lower.contains("/microsoft.capacity/")
            || (benefit.is_some() && pricing_model == "reservation")
        {
            (Some("Usage"), Some("Reservation"))
        } else if benefit_lower.contains("/microsoft.billingbenefits/")
            || (benefit.is_some() && pricing_model == "savingsplan")
        {
            (Some("Spend"), Some("Savings Plan"))
        } else {
            (None, None)
        };
        let frequency = v("Frequency").map(|f| match f {
            "OneTime" => "One-Time",
            "Recurring" => "Recurring",
            "UsageBased" => "Usage-Based",
            _ => "Other",
        });
        let location = v("ResourceLocation");
        let region_id = location.map(|l| l.replace(' ', "").to_ascii_lowercase());
        let mut row = empty_row();
        let mut set = |column: &str, value: Option<String>| set_column(&mut row, column, value);
        set("billed_cost", text(billed));
        set("effective_cost", text(effective));
        set("list_cost", list);
        set("contracted_cost", multiply(v("UnitPrice"))?);
        set("billing_currency", text(first(AZURE_CURRENCY)));
        set("charge_period_start", day.map(|d| d.to_rfc3339()));
        set(
            "charge_period_end",
            day.map(|d| (d + chrono::Days::new(1)).to_rfc3339()),
        );
        set("billing_period_start", text(v("BillingPeriodStartDate")));
        set(
            "billing_period_end",
            // The export's end is the last day, FOCUS's the day after.
            v("BillingPeriodEndDate")
                .and_then(time)
                .map(|d| (d + chrono::Days::new(1)).to_rfc3339()),
        );
        set("charge_category", Some(category.into()));
        set(
            "charge_class",
            (charge_type == "Refund").then(|| "Correction".into()),
        );
        set("charge_frequency", frequency.map(str::to_string));
        set(
            "charge_description",
            text(first(&["ProductName", "Product", "MeterName"])),
        );
        if mca {
            set("billing_account_id", text(v("BillingProfileId")));
            set("billing_account_name", text(v("BillingProfileName")));
            set("billing_account_type", Some("Billing Profile".into()));
        } else {
            set("billing_account_id", text(v("BillingAccountId")));
            set("billing_account_name", text(v("BillingAccountName")));
            set(
                "billing_account_type",
                v("BillingAccountId").map(|_| "Billing Account".into()),
            );
        }
        let subscription = first(&["SubscriptionId", "SubscriptionGuid"]);
        set("sub_account_id", text(subscription));
        set("sub_account_name", text(v("SubscriptionName")));
        set(
            "sub_account_type",
            subscription.map(|_| "Subscription".into()),
        );
        set("provider_name", Some("Microsoft".into()));
        set(
            "publisher_name",
            Some(v("PublisherName").unwrap_or("Microsoft").into()),
        );
        set(
            "invoice_issuer_name",
            Some(v("PartnerName").unwrap_or("Microsoft").into()),
        );
        set("invoice_id", text(v("InvoiceId")));
        set("service_name", text(service));
        set(
            "service_category",
            Some(
                service
                    .and_then(azure_category)
                    .unwrap_or("Other")
                    .to_string(),
            ),
        );
        set("region_id", region_id);
        set("region_name", text(location));
        set("availability_zone", text(v("AvailabilityZone")));
        set("resource_id", text(first(&["ResourceId", "InstanceId"])));
        set(
            "resource_group",
            text(first(&["ResourceGroup", "ResourceGroupName"])),
        );
        set(
            "resource_name",
            text(v("ResourceName")).or_else(|| {
                first(&["ResourceId", "InstanceId"])
                    .and_then(|id| id.rsplit('/').next())
                    .filter(|n| !n.is_empty())
                    .map(str::to_string)
            }),
        );
        set("sku_id", text(first(&["ProductId", "MeterId"])));
        set("sku_meter", text(v("MeterName")));
        set("sku_price_details", text(v("AdditionalInfo")));
        set("list_unit_price", text(v("PayGPrice")));
        set("contracted_unit_price", text(v("UnitPrice")));
        set(
            "pricing_currency",
            text(v("PricingCurrency").or(v("PricingCurrencyCode"))),
        );
        set(
            "pricing_category",
            match pricing_model.as_str() {
                "ondemand" => Some("Standard".into()),
                "spot" => Some("Dynamic".into()),
                "reservation" | "savingsplan" => Some("Committed".into()),
                _ => None,
            },
        );
        set("pricing_quantity", text(quantity));
        set("pricing_unit", text(v("UnitOfMeasure")));
        set(
            "consumed_quantity",
            text(quantity.filter(|_| charge_type == "Usage")),
        );
        set(
            "consumed_unit",
            text(v("UnitOfMeasure").filter(|_| charge_type == "Usage")),
        );
        set("commitment_discount_id", text(benefit));
        set(
            "commitment_discount_name",
            text(first(&["benefitName", "ReservationName"])),
        );
        set(
            "commitment_discount_category",
            discount_category.map(str::to_string),
        );
        set(
            "commitment_discount_type",
            discount_type.map(str::to_string),
        );
        set(
            "commitment_discount_status",
            if unused {
                Some("Unused".into())
            } else if commitment && charge_type == "Usage" {
                Some("Used".into())
            } else {
                None
            },
        );
        set("tags", text(v("Tags")));
        Ok(row)
    }
}

impl Converter {
    /// OCI cost report to FOCUS, after focus_converters' `oci` rules (billed cost is
    /// `cost/myCost`, what the line cost; the rules' `myCostOverage` is only the overage).
    fn oci(&self, r: &StringRecord) -> Result<Vec<Option<String>>, String> {
        let v = |name: &str| self.get(r, name);
        let text = |s: Option<&str>| s.map(str::to_string);
        let start = v("lineItem/intervalUsageStart");
        let month = start
            .and_then(time)
            .map(|t| t.date_naive().with_day(1).unwrap_or(t.date_naive()));
        let mut row = empty_row();
        let mut set = |column: &str, value: Option<String>| set_column(&mut row, column, value);
        set("billed_cost", text(v("cost/myCost")));
        set("effective_cost", text(v("cost/myCost")));
        set(
            "list_cost",
            match (v("cost/unitPrice"), v("usage/billedQuantity")) {
                (Some(price), Some(quantity)) => {
                    Some(decimal_op(Some(price), Some(quantity), |a, b| a * b)?)
                }
                _ => None,
            },
        );
        set("billing_currency", text(v("cost/currencyCode")));
        set("charge_period_start", text(start));
        set("charge_period_end", text(v("lineItem/intervalUsageEnd")));
        set("billing_period_start", month.map(|m| m.to_string()));
        set(
            "billing_period_end",
            month
                .and_then(|m| m.checked_add_months(chrono::Months::new(1)))
                .map(|m| m.to_string()),
        );
        set(
            "charge_category",
            Some(
                if v("cost/isCorrection") == Some("true") {
                    "Adjustment"
                } else {
                    "Usage"
                }
                .into(),
            ),
        );
        set("charge_description", text(v("product/Description")));
        set("billing_account_id", text(v("cost/subscriptionId")));
        set("sub_account_id", text(v("lineItem/tenantId")));
        set("sub_account_name", text(v("product/compartmentName")));
        set("provider_name", Some("Oracle".into()));
        set("publisher_name", Some("Oracle".into()));
        set("invoice_issuer_name", Some("Oracle".into()));
        set("service_name", text(v("product/service")));
        set("region_id", text(v("product/region")));
        set("resource_id", text(v("product/resourceId")));
        set("sku_id", text(v("cost/productSku")));
        set("pricing_quantity", text(v("usage/billedQuantity")));
        set("pricing_unit", text(v("cost/skuUnitDescription")));
        set(
            "consumed_quantity",
            text(v("usage/consumedQuantity").or(v("usage/billedQuantity"))),
        );
        set(
            "consumed_unit",
            text(v("usage/consumedQuantityUnits").or(v("cost/skuUnitDescription"))),
        );
        set("tags", self.tag_columns(r));
        Ok(row)
    }

    /// The tag columns' non-empty values as a JSON object.
    fn tag_columns(&self, r: &StringRecord) -> Option<String> {
        let tags: serde_json::Map<String, Value> = self
            .tag_columns
            .iter()
            .filter_map(|(name, i)| {
                let value = r.get(*i)?.trim();
                (!value.is_empty()).then(|| (name.clone(), Value::String(value.to_string())))
            })
            .collect();
        (!tags.is_empty()).then(|| Value::Object(tags).to_string())
    }

    /// Google Cloud billing export to FOCUS, after focus_converters' `gcp` rules, except that
    /// the billing period (`invoice.month`) is taken in UTC, not Pacific time.
    fn gcp(&self, r: &StringRecord) -> Result<Vec<Option<String>>, String> {
        let v = |name: &str| self.get(r, name);
        let text = |s: Option<&str>| s.map(str::to_string);
        let cost = v("cost");
        // Credits: a JSON list of {amount} (as BigQuery writes it), or its sum.
        let credits = match v("credits") {
            Some(list) => serde_json::from_str::<Value>(list)
                .ok()
                .and_then(|l| l.as_array().cloned())
                .unwrap_or_default()
                .iter()
                .filter_map(|c| match &c["amount"] {
                    Value::Number(n) => Some(n.to_string()),
                    Value::String(s) => Some(s.clone()),
                    _ => None,
                })
                .try_fold("0".to_string(), |sum, amount| {
                    decimal_op(Some(&sum), Some(&amount), |a, b| a + b)
                })?,
            None => v("credits.amount").unwrap_or("0").to_string(),
        };
        let net = decimal_op(cost, Some(&credits), |a, b| a + b)?;
        let effective = if net.starts_with('-') || net == "0" {
            "0".to_string()
        } else {
            net
        };
        let month = v("invoice.month")
            .and_then(|m| chrono::NaiveDate::parse_from_str(&format!("{m}01"), "%Y%m%d").ok());
        let category = match v("cost_type") {
            Some("tax") => "Tax",
            Some("adjustment") | Some("credit") => "Adjustment",
            Some("rounding_error") => "Adjustment",
            _ => "Usage",
        };
        let service = v("service.description");
        let mut row = empty_row();
        let mut set = |column: &str, value: Option<String>| set_column(&mut row, column, value);
        set("billed_cost", text(cost));
        set("effective_cost", Some(effective));
        set("list_cost", text(v("cost_at_list")));
        set("billing_currency", text(v("currency")));
        set("charge_period_start", text(v("usage_start_time")));
        set("charge_period_end", text(v("usage_end_time")));
        set("billing_period_start", month.map(|m| m.to_string()));
        set(
            "billing_period_end",
            month
                .and_then(|m| m.checked_add_months(chrono::Months::new(1)))
                .map(|m| m.to_string()),
        );
        set("charge_category", Some(category.into()));
        set("charge_description", text(v("sku.description")));
        set("billing_account_id", text(v("billing_account_id")));
        set("sub_account_id", text(v("project.id")));
        set("sub_account_name", text(v("project.name")));
        set("provider_name", Some("Google Cloud".into()));
        set(
            "publisher_name",
            Some(v("seller_name").unwrap_or("Google Cloud").into()),
        );
        set("invoice_issuer_name", Some("Google Cloud".into()));
        set("service_name", text(service));
        set(
            "service_category",
            Some(
                service
                    .and_then(gcp_category)
                    .unwrap_or("Other")
                    .to_string(),
            ),
        );
        set(
            "region_id",
            text(v("location.region").or(v("location.location"))),
        );
        set("resource_id", text(v("resource.global_name")));
        set("resource_name", text(v("resource.name")));
        set("sku_id", text(v("sku.id")));
        set("pricing_quantity", text(v("usage.amount_in_pricing_units")));
        set("pricing_unit", text(v("usage.pricing_unit")));
        set("consumed_quantity", text(v("usage.amount")));
        set("consumed_unit", text(v("usage.unit")));
        set("tags", labels(v("labels")));
        Ok(row)
    }

    /// Databricks `system.billing.usage` to FOCUS: the cost is the joined cost column, or the
    /// DBUs times the joined price; a row with neither is refused.
    fn databricks(&self, r: &StringRecord) -> Result<Vec<Option<String>>, String> {
        let v = |name: &str| self.get(r, name);
        let text = |s: Option<&str>| s.map(str::to_string);
        let quantity = v("usage_quantity");
        let rate = v("list_price")
            .or(v("pricing.default"))
            .or(v("dbu_rate"))
            .or(v("price"));
        let cost = match (v("cost").or(v("usage_cost")).or(v("list_cost")), rate) {
            (Some(cost), _) => cost.to_string(),
            (None, Some(rate)) => decimal_op(quantity, Some(rate), |a, b| a * b)?,
            (None, None) => {
                return Err(
                    "no cost: join system.billing.list_prices (pricing.default) as list_price"
                        .into(),
                );
            }
        };
        let metadata = |column: &str, field: &str| {
            v(column)
                .and_then(|m| serde_json::from_str::<Value>(m).ok())
                .and_then(|m| m.get(field).and_then(Value::as_str).map(str::to_string))
        };
        let mut row = empty_row();
        let mut set = |column: &str, value: Option<String>| set_column(&mut row, column, value);
        set("billed_cost", Some(cost.clone()));
        set("effective_cost", Some(cost.clone()));
        set("list_cost", Some(cost));
        set(
            "billing_currency",
            Some(v("currency_code").unwrap_or("USD").into()),
        );
        set("charge_period_start", text(v("usage_start_time")));
        set("charge_period_end", text(v("usage_end_time")));
        set("charge_category", Some("Usage".into()));
        set("charge_description", text(v("sku_name")));
        set("billing_account_id", text(v("account_id")));
        set("sub_account_id", text(v("workspace_id")));
        set("provider_name", Some("Databricks".into()));
        set("publisher_name", Some("Databricks".into()));
        set("invoice_issuer_name", Some("Databricks".into()));
        set(
            "service_name",
            text(v("billing_origin_product").or(v("sku_name"))),
        );
        set("service_category", Some("AI and Machine Learning".into()));
        set("region_id", text(v("cloud_region").or(v("region"))));
        set("sku_id", text(v("sku_name")));
        set("pricing_quantity", text(quantity));
        set("pricing_unit", text(v("usage_unit")));
        set("consumed_quantity", text(quantity));
        set("consumed_unit", text(v("usage_unit")));
        set("tags", text(v("custom_tags")));
        set("workspace_id", text(v("workspace_id")));
        set(
            "cluster_id",
            text(v("usage_metadata.cluster_id"))
                .or_else(|| metadata("usage_metadata", "cluster_id")),
        );
        set(
            "job_id",
            text(v("usage_metadata.job_id")).or_else(|| metadata("usage_metadata", "job_id")),
        );
        set(
            "user_email",
            text(v("identity_metadata.run_as")).or_else(|| metadata("identity_metadata", "run_as")),
        );
        set("sku_name", text(v("sku_name")));
        set("dbu_count", text(quantity));
        set("dbu_rate", text(rate));
        Ok(row)
    }
}

/// Google Cloud labels: a JSON list of {key, value}, or an object.
fn labels(raw: Option<&str>) -> Option<String> {
    let parsed: Value = serde_json::from_str(raw?).ok()?;
    let map: serde_json::Map<String, Value> = match parsed {
        Value::Array(items) => items
            .iter()
            .filter_map(|l| Some((l["key"].as_str()?.to_string(), l["value"].clone())))
            .collect(),
        Value::Object(map) => map,
        _ => return None,
    };
    Some(Value::Object(map).to_string())
}

fn empty_row() -> Vec<Option<String>> {
    vec![None; COLUMNS.len()]
}

/// The field at a position: `None` when it is absent, empty or the literal `NULL`.
fn value(record: &StringRecord, at: usize) -> Option<&str> {
    let value = record.get(at)?.trim();
    (!value.is_empty() && !value.eq_ignore_ascii_case("NULL")).then_some(value)
}

fn set_column(row: &mut [Option<String>], column: &str, value: Option<String>) {
    if let Some(at) = COLUMNS.iter().position(|c| *c == column) {
        row[at] = value;
    }
}

/// `a op b` exactly; a missing operand counts as zero.
fn decimal_op(
    a: Option<&str>,
    b: Option<&str>,
    op: fn(rust_decimal::Decimal, rust_decimal::Decimal) -> rust_decimal::Decimal,
) -> Result<String, String> {
    let parse = |s: Option<&str>| match s {
        None => Ok(rust_decimal::Decimal::ZERO),
        Some(s) => s
            .parse::<rust_decimal::Decimal>()
            .or_else(|_| rust_decimal::Decimal::from_scientific(s))
            .map_err(|_| format!("{s:?} is not a number")),
    };
    Ok(op(parse(a)?, parse(b)?).normalize().to_string())
}

/// The FOCUS ServiceCategory of an AWS product code.
fn aws_category(product_code: &str) -> Option<&'static str> {
    static MAP: std::sync::OnceLock<Mapping> = std::sync::OnceLock::new();
    MAP.get_or_init(|| mapping(include_str!("../../data/mappings/aws_category_mapping.csv")))
        .get(product_code)
        .copied()
}

/// The FOCUS ServiceCategory of an Azure consumed service (`microsoft.compute`).
fn azure_category(service: &str) -> Option<&'static str> {
    static MAP: std::sync::OnceLock<Mapping> = std::sync::OnceLock::new();
    MAP.get_or_init(|| {
        mapping(include_str!(
            "../../data/mappings/azure_category_mapping.csv"
        ))
    })
    .get(service.to_ascii_lowercase().as_str())
    .copied()
}

/// The FOCUS ServiceCategory of a Google Cloud service description (`Compute Engine`).
fn gcp_category(service: &str) -> Option<&'static str> {
    static MAP: std::sync::OnceLock<Mapping> = std::sync::OnceLock::new();
    MAP.get_or_init(|| mapping(include_str!("../../data/mappings/gcp_category_mapping.csv")))
        .get(service)
        .copied()
}

type Mapping = std::collections::HashMap<&'static str, &'static str>;

/// A two-column mapping file with a header (see data/mappings/PROVENANCE.md).
fn mapping(file: &'static str) -> Mapping {
    file.lines()
        .skip(1)
        .filter_map(|line| line.trim().split_once(','))
        .collect()
}

/// A column's FOCUS name: `billed_cost` is `BilledCost`, `sub_account_id` is `SubAccountId`.
/// The FOCUS name of every column in [`COLUMNS`], made once.
fn focus_names() -> &'static [String] {
    static NAMES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    NAMES.get_or_init(|| COLUMNS.iter().map(|c| focus_name(c)).collect())
}

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

fn normalise<'r>(column: &str, kind: Kind, raw: Cow<'r, str>) -> Result<Cow<'r, str>, String> {
    match kind {
        // Postgres text holds no NUL; the row is refused rather than the whole import failing.
        Kind::Text if raw.contains('\0') => {
            Err(format!("{} holds a NUL character", focus_name(column)))
        }
        Kind::Text => Ok(raw),
        Kind::Amount => match amount(&raw) {
            Some(_) => Ok(raw),
            None => Err(format!("{} is not a number: {raw:?}", focus_name(column))),
        },
        // UTC as `2024-09-18 22:00:00` (or with `T`, `Z`) stays as written.
        Kind::Time if plain_utc_time(&raw).is_some() => Ok(raw),
        Kind::Time => time(&raw)
            .map(|t| Cow::Owned(rfc3339(t)))
            .ok_or_else(|| format!("{} is not a time: {raw:?}", focus_name(column))),
        Kind::Tags => Ok(Cow::Owned(tags(&raw).to_string())),
        // An object as written; anything else is kept as text under `_raw`.
        Kind::Json => match serde_json::from_str::<Value>(&raw) {
            Ok(Value::Object(_)) => Ok(raw),
            _ => Ok(Cow::Owned(serde_json::json!({ "_raw": raw }).to_string())),
        },
    }
}

/// A time as RFC 3339 in UTC, as `DateTime::to_rfc3339` writes it (`2024-09-18T22:00:00+00:00`,
/// with a fraction if any), without its general formatting machinery: every row has four.
pub fn rfc3339(time: DateTime<Utc>) -> String {
    use chrono::Timelike;
    let (date, clock) = (time.date_naive(), time.time());
    if !(0..=9999).contains(&date.year()) || clock.nanosecond() != 0 {
        return time.to_rfc3339();
    }
    let mut out = String::with_capacity(25);
    let mut digits = |n: u32, width: u32, after: &str| {
        for place in (0..width).rev() {
            out.push(char::from(b'0' + (n / 10u32.pow(place) % 10) as u8));
        }
        out.push_str(after);
    };
    digits(date.year() as u32, 4, "-");
    digits(date.month(), 2, "-");
    digits(date.day(), 2, "T");
    digits(clock.hour(), 2, ":");
    digits(clock.minute(), 2, ":");
    digits(clock.second(), 2, "");
    out.push_str("+00:00");
    out
}

/// `YYYY-MM-DD HH:MM:SS` or `YYYY-MM-DDTHH:MM:SS`, optionally followed by `Z` or `+00:00`: what
/// nearly every export writes, read by position; anything else goes the general way.
fn plain_utc_time(raw: &str) -> Option<DateTime<Utc>> {
    let b = raw.as_bytes();
    if b.len() < 19 || !matches!(&b[19..], b"" | b"Z" | b"+00:00") {
        return None;
    }
    let digits = |range: std::ops::Range<usize>| {
        b[range].iter().try_fold(0u32, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
        })
    };
    if b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b' ' | b'T')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(digits(0..4)? as i32, digits(5..7)?, digits(8..10)?)?;
    let clock = chrono::NaiveTime::from_hms_opt(digits(11..13)?, digits(14..16)?, digits(17..19)?)?;
    Some(date.and_time(clock).and_utc())
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
        // Postgres reads exponents up to 1000.
        !e.is_empty()
            && e.len() <= 4
            && e.bytes().all(|b| b.is_ascii_digit())
            && e.parse::<u32>().is_ok_and(|e| e <= 1000)
    });
    (valid_mantissa && valid_exponent).then_some(raw)
}

/// The times real exports write: RFC 3339, `2024-09-01 00:00:00` (UTC), with fractions, a
/// bare date, and Azure's `9/2/2023`.
pub fn time(raw: &str) -> Option<DateTime<Utc>> {
    if let Some(t) = plain_utc_time(raw) {
        return Some(t);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Some(t.with_timezone(&Utc));
    }
    let trimmed = raw.trim_end_matches('Z').trim_end_matches(" UTC");
    // OCI writes minutes only (`2024-03-05T10:00Z`).
    for format in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
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
    fn aws_amounts_follow_the_line_item_type() {
        let header = StringRecord::from(vec![
            "lineItem/LineItemType",
            "lineItem/UnblendedCost",
            "lineItem/CurrencyCode",
            "lineItem/UsageStartDate",
            "lineItem/UsageAmount",
            "pricing/publicOnDemandRate",
            "savingsPlan/TotalCommitmentToDate",
            "savingsPlan/UsedCommitment",
            "resourceTags/user:team",
        ]);
        assert_eq!(Format::detect(&header), Some(Format::AwsCur));
        let converter = Converter::new(Format::AwsCur, &header, &Value::Null).unwrap();
        let column = |name: &str| COLUMNS.iter().position(|c| *c == name).unwrap();
        let record = StringRecord::from(vec![
            "SavingsPlanRecurringFee",
            "10.00",
            "USD",
            "2023-11-01T00:00:00.000Z",
            "3",
            "0.1",
            "10.00",
            "7.25",
            "web",
        ]);
        let row = converter.convert(&record).unwrap();
        assert_eq!(row[column("effective_cost")].as_deref(), Some("2.75"));
        assert_eq!(row[column("list_cost")].as_deref(), Some("0.3"));
        assert_eq!(row[column("charge_category")].as_deref(), Some("Purchase"));
        assert_eq!(row[column("provider_name")].as_deref(), Some("AWS"));
        assert_eq!(row[column("tags")].as_deref(), Some(r#"{"team":"web"}"#));
        assert_eq!(row[column("commitment_discount_status")], None);

        let (_, covered) = super::tests::convert(
            &[
                "lineItem/LineItemType",
                "lineItem/UnblendedCost",
                "lineItem/CurrencyCode",
                "lineItem/UsageStartDate",
                "savingsPlan/SavingsPlanARN",
                "savingsPlan/SavingsPlanEffectiveCost",
                "pricing/term",
            ],
            &[
                "SavingsPlanCoveredUsage",
                "0.096",
                "USD",
                "2024-01-05T00:00:00Z",
                "arn:aws:savingsplans::1:savingsplan/sp",
                "0.062",
                "OnDemand",
            ],
        );
        let value = |c: &str| covered[column(c)].as_deref();
        assert_eq!(value("effective_cost"), Some("0.062"));
        assert_eq!(value("commitment_discount_status"), Some("Used"));
        assert_eq!(value("commitment_discount_category"), Some("Spend"));
        assert_eq!(value("commitment_discount_type"), Some("Savings Plan"));
        assert_eq!(value("pricing_category"), Some("Committed"));
    }

    fn convert(header: &[&str], row: &[&str]) -> (Format, Vec<Option<String>>) {
        let header = StringRecord::from(header.to_vec());
        let format = Format::detect(&header).expect("a known header");
        let converter = Converter::new(format, &header, &Value::Null).unwrap();
        let record = StringRecord::from(row.to_vec());
        let values = converter
            .convert(&record)
            .unwrap()
            .into_iter()
            .map(|v| v.map(Cow::into_owned))
            .collect();
        (format, values)
    }

    fn value<'a>(row: &'a [Option<String>], column: &str) -> Option<&'a str> {
        row[COLUMNS.iter().position(|c| *c == column).unwrap()].as_deref()
    }

    #[test]
    fn oci_gcp_and_databricks_rows_become_focus_values() {
        let (format, row) = convert(
            &[
                "lineItem/intervalUsageStart",
                "lineItem/intervalUsageEnd",
                "product/service",
                "cost/myCost",
                "cost/currencyCode",
                "tags/Ops.Team",
            ],
            &[
                "2024-03-05T10:00Z",
                "2024-03-05T11:00Z",
                "COMPUTE",
                "0.42",
                "EUR",
                "web",
            ],
        );
        assert_eq!(format, Format::Oci);
        assert_eq!(value(&row, "billed_cost"), Some("0.42"));
        assert_eq!(
            value(&row, "billing_period_start"),
            Some("2024-03-01T00:00:00+00:00")
        );
        assert_eq!(value(&row, "provider_name"), Some("Oracle"));
        assert_eq!(value(&row, "tags"), Some(r#"{"Ops.Team":"web"}"#));

        let (format, row) = convert(
            &[
                "billing_account_id",
                "service.description",
                "cost",
                "currency",
                "usage_start_time",
                "invoice.month",
                "credits",
                "cost_type",
                "labels",
            ],
            &[
                "0123-4567",
                "Compute Engine",
                "10.00",
                "USD",
                "2024-03-05 10:00:00 UTC",
                "202403",
                r#"[{"amount": -2.5}]"#,
                "regular",
                r#"[{"key":"env","value":"prod"}]"#,
            ],
        );
        assert_eq!(format, Format::Gcp);
        assert_eq!(value(&row, "effective_cost"), Some("7.5"));
        assert_eq!(value(&row, "service_category"), Some("Compute"));
        assert_eq!(
            value(&row, "charge_period_start"),
            Some("2024-03-05T10:00:00+00:00")
        );
        assert_eq!(value(&row, "tags"), Some(r#"{"env":"prod"}"#));

        let header = [
            "account_id",
            "workspace_id",
            "sku_name",
            "usage_start_time",
            "usage_quantity",
            "usage_metadata",
            "identity_metadata",
            "list_price",
        ];
        let (format, row) = convert(
            &header,
            &[
                "acc",
                "123",
                "PREMIUM_JOBS_COMPUTE",
                "2024-03-05T10:00:00Z",
                "4",
                r#"{"job_id":"77","cluster_id":"c-1"}"#,
                r#"{"run_as":"ana@example.com"}"#,
                "0.15",
            ],
        );
        assert_eq!(format, Format::Databricks);
        assert_eq!(value(&row, "billed_cost"), Some("0.6"));
        assert_eq!(
            (
                value(&row, "workspace_id"),
                value(&row, "job_id"),
                value(&row, "cluster_id"),
                value(&row, "user_email")
            ),
            (
                Some("123"),
                Some("77"),
                Some("c-1"),
                Some("ana@example.com")
            )
        );
        let unpriced_record = StringRecord::from(vec![
            "acc",
            "123",
            "SKU",
            "2024-03-05T10:00:00Z",
            "4",
            "{}",
            "{}",
        ]);
        let unpriced_converter = Converter::new(
            Format::Databricks,
            &StringRecord::from(header[..7].to_vec()),
            &Value::Null,
        )
        .unwrap();
        let unpriced = unpriced_converter.convert(&unpriced_record);
        assert!(unpriced.unwrap_err().contains("list_prices"));
    }

    #[test]
    fn every_azure_schema_is_detected_and_commitments_are_amortized() {
        // The older EA export: `Cost` and `BillingCurrency`, a UTF-8 BOM, US dates.
        let (format, row) = convert(
            &[
                "\u{feff}Date",
                "Cost",
                "BillingCurrency",
                "ResourceGroup",
                "ConsumedService",
                "MeterCategory",
                "SubscriptionId",
                "ResourceLocation",
                "Quantity",
                "UnitPrice",
                "PayGPrice",
            ],
            &[
                "9/2/2023",
                "4.50",
                "EUR",
                "RG-Web",
                "Microsoft.Compute",
                "Virtual Machines",
                "sub-1",
                "West Europe",
                "3",
                "1.25",
                "2",
            ],
        );
        assert_eq!(format, Format::Azure);
        assert_eq!(value(&row, "billed_cost"), Some("4.50"));
        assert_eq!(value(&row, "billing_currency"), Some("EUR"));
        assert_eq!(value(&row, "resource_group"), Some("RG-Web"));
        assert_eq!(
            value(&row, "charge_period_start"),
            Some("2023-09-02T00:00:00+00:00")
        );
        assert_eq!(value(&row, "region_id"), Some("westeurope"));
        assert_eq!(value(&row, "region_name"), Some("West Europe"));
        assert_eq!(value(&row, "list_cost"), Some("6"));
        assert_eq!(value(&row, "contracted_cost"), Some("3.75"));
        assert_eq!(value(&row, "service_category"), Some("Compute"));

        // Pay-as-you-go (and EA's 2019 usage schema): PreTaxCost, UsageDateTime, InstanceId.
        let (format, row) = convert(
            &[
                "SubscriptionGuid",
                "ResourceGroup",
                "ResourceLocation",
                "UsageDateTime",
                "MeterCategory",
                "UsageQuantity",
                "PreTaxCost",
                "ConsumedService",
                "InstanceId",
                "Currency",
                "UnitOfMeasure",
            ],
            &[
                "sub-2",
                "rg",
                "eastus",
                "2023-09-03T00:00:00Z",
                "Storage",
                "10",
                "0.10",
                "Microsoft.Storage",
                "/subscriptions/sub-2/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/acct",
                "USD",
                "1 GB/Month",
            ],
        );
        assert_eq!(format, Format::Azure);
        assert_eq!(value(&row, "billed_cost"), Some("0.10"));
        assert_eq!(value(&row, "billing_currency"), Some("USD"));
        assert_eq!(value(&row, "sub_account_id"), Some("sub-2"));
        assert_eq!(value(&row, "resource_name"), Some("acct"));
        assert_eq!(value(&row, "pricing_quantity"), Some("10"));

        // MCA: camelCase, billed by billing profile, with an invoice and a PAYG cost.
        let (format, row) = convert(
            &[
                "invoiceId",
                "billingAccountId",
                "billingProfileId",
                "billingProfileName",
                "date",
                "consumedService",
                "meterCategory",
                "costInBillingCurrency",
                "costInPricingCurrency",
                "billingCurrency",
                "pricingCurrency",
                "paygCostInBillingCurrency",
                "resourceGroupName",
                "chargeType",
                "frequency",
            ],
            &[
                "G123",
                "acct:1",
                "bp-1",
                "Profile",
                "2023-09-04",
                "Microsoft.Sql",
                "SQL Database",
                "2.00",
                "2.00",
                "USD",
                "USD",
                "2.50",
                "rg-db",
                "Refund",
                "OneTime",
            ],
        );
        assert_eq!(format, Format::Azure);
        assert_eq!(value(&row, "billing_account_id"), Some("bp-1"));
        assert_eq!(value(&row, "billing_account_type"), Some("Billing Profile"));
        assert_eq!(value(&row, "invoice_id"), Some("G123"));
        assert_eq!(value(&row, "list_cost"), Some("2.50"));
        assert_eq!(value(&row, "resource_group"), Some("rg-db"));
        assert_eq!(value(&row, "charge_category"), Some("Purchase"));
        assert_eq!(value(&row, "charge_class"), Some("Correction"));
        assert_eq!(value(&row, "charge_frequency"), Some("One-Time"));

        // Amortized EA rows of a reservation: covered usage, unused commitment, the purchase.
        let header = [
            "Date",
            "CostInBillingCurrency",
            "BillingCurrencyCode",
            "ConsumedService",
            "MeterCategory",
            "ChargeType",
            "PricingModel",
            "benefitId",
            "benefitName",
        ];
        let reservation = "/providers/Microsoft.Capacity/reservationOrders/o/reservations/r";
        let amortized = |charge_type: &str| {
            convert(
                &header,
                &[
                    "2023-09-05",
                    "1.20",
                    "USD",
                    "Microsoft.Compute",
                    "Virtual Machines",
                    charge_type,
                    "Reservation",
                    reservation,
                    "vm-ri",
                ],
            )
            .1
        };
        let covered = amortized("Usage");
        assert_eq!(value(&covered, "billed_cost"), Some("0"));
        assert_eq!(value(&covered, "effective_cost"), Some("1.20"));
        assert_eq!(value(&covered, "commitment_discount_status"), Some("Used"));
        assert_eq!(
            value(&covered, "commitment_discount_type"),
            Some("Reservation")
        );
        assert_eq!(
            value(&covered, "commitment_discount_category"),
            Some("Usage")
        );
        assert_eq!(value(&covered, "pricing_category"), Some("Committed"));
        let unused = amortized("UnusedReservation");
        assert_eq!(value(&unused, "billed_cost"), Some("0"));
        assert_eq!(value(&unused, "effective_cost"), Some("1.20"));
        assert_eq!(value(&unused, "charge_category"), Some("Usage"));
        assert_eq!(value(&unused, "commitment_discount_status"), Some("Unused"));
        let purchase = amortized("Purchase");
        assert_eq!(value(&purchase, "billed_cost"), Some("1.20"));
        assert_eq!(value(&purchase, "effective_cost"), Some("0"));
        assert_eq!(value(&purchase, "commitment_discount_status"), None);

        // EA's 2019 usage schema names no currency: refused, unless the import gives one.
        let header = StringRecord::from(vec!["UsageDateTime", "PreTaxCost", "MeterCategory"]);
        assert_eq!(Format::detect(&header), Some(Format::Azure));
        let refused = Converter::new(Format::Azure, &header, &Value::Null)
            .err()
            .unwrap();
        assert!(refused.contains("currency"), "{refused}");
        let defaults = check_defaults(&serde_json::json!({"BillingCurrency": "USD"})).unwrap();
        let converter = Converter::new(Format::Azure, &header, &defaults).unwrap();
        let record = StringRecord::from(vec!["2019-06-01", "1", "Storage"]);
        assert_eq!(
            converter.convert(&record).unwrap()[column("billing_currency")].as_deref(),
            Some("USD")
        );

        // Azure's own FOCUS export is FOCUS, its resource group an `x_` column.
        let header = StringRecord::from(
            FOCUS_MANDATORY
                .iter()
                .copied()
                .chain(["x_ResourceGroupName", "x_SkuMeterCategory"])
                .collect::<Vec<_>>(),
        );
        assert_eq!(Format::detect(&header), Some(Format::Focus));
    }

    #[test]
    fn amounts_are_kept_exact_and_checked() {
        assert_eq!(amount("0.00000080000"), Some("0.00000080000"));
        assert_eq!(amount("-12.5"), Some("-12.5"));
        assert_eq!(amount("1.5E-7"), Some("1.5E-7"));
        assert_eq!(amount(".5"), Some(".5"));
        for bad in ["", ".", "NaN", "inf", "1,5", "12a", "1e", "--1", "1e1001"] {
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
            assert_eq!(rfc3339(time(raw).unwrap()), expect, "{raw}");
        }
        assert_eq!(
            time("9/2/2023").unwrap().to_rfc3339(),
            "2023-09-02T00:00:00+00:00"
        );
        assert!(time("yesterday").is_none());
        for bad in [
            "2024-13-01 00:00:00",
            "2024-02-30T00:00:00Z",
            "2024-09-18 25:00:00",
        ] {
            assert!(time(bad).is_none(), "{bad}");
        }
        assert_eq!(
            rfc3339(time("0987-01-02T03:04:05.25Z").unwrap()),
            "0987-01-02T03:04:05.250+00:00"
        );
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
        // Every missing mandatory column is named at once.
        let refused = Converter::new(Format::Focus, &header, &Value::Null)
            .err()
            .unwrap();
        for name in FOCUS_MANDATORY {
            let present = [
                "BilledCost",
                "BillingCurrency",
                "ChargePeriodStart",
                "ServiceName",
            ];
            assert_eq!(
                refused.contains(name),
                !present.contains(name),
                "{name}: {refused}"
            );
        }
        // Defaults stand in for them (and fill empty values).
        let missing: Map<String, Value> = FOCUS_MANDATORY
            .iter()
            .filter(|n| {
                ![
                    "BilledCost",
                    "BillingCurrency",
                    "ChargePeriodStart",
                    "ServiceName",
                ]
                .contains(n)
            })
            .map(|n| {
                let value =
                    match kind_of(COLUMNS[focus_names().iter().position(|f| f == n).unwrap()]) {
                        Kind::Amount => "0",
                        Kind::Time => "2024-09-01",
                        _ => "x",
                    };
                (n.to_string(), Value::String(value.into()))
            })
            .collect();
        let mut defaults = Value::Object(missing);
        defaults["billingcurrency"] = "EUR".into();
        let defaults = check_defaults(&defaults).unwrap();
        assert_eq!(defaults["BillingCurrency"], "EUR");
        assert_eq!(defaults["BillingPeriodStart"], "2024-09-01T00:00:00+00:00");
        let converter = Converter::new(Format::Focus, &header, &defaults).unwrap();
        let record = StringRecord::from(vec!["1.25", "USD", "2024-09-01 00:00:00", "NULL", "NULL"]);
        let row = converter.convert(&record).unwrap();
        assert_eq!(row[0].as_deref(), Some("1.25"));
        assert_eq!(row[column("billing_currency")].as_deref(), Some("USD"));
        // A UTC time stays as written; others become RFC 3339 in UTC.
        assert_eq!(row[5].as_deref(), Some("2024-09-01 00:00:00"));
        let record = StringRecord::from(vec!["1", "", "2024-09-01T02:00:00+02:00", "", ""]);
        let row = converter.convert(&record).unwrap();
        assert_eq!(row[5].as_deref(), Some("2024-09-01T00:00:00+00:00"));
        assert_eq!(row[column("billing_currency")].as_deref(), Some("EUR"));
        assert!(row[column("service_name")].is_none());
        let missing = StringRecord::from(vec!["", "USD", "2024-09-01", "", ""]);
        assert_eq!(
            converter.convert(&missing),
            Err("BilledCost is empty".to_string())
        );
        // A short row is refused, not loaded with nulls; trailing empty fields are harmless.
        let short = StringRecord::from(vec!["1", "USD", "2024-09-01"]);
        assert_eq!(
            converter.convert(&short),
            Err("the row has 3 fields where the header has 5".to_string())
        );
        let trailing = StringRecord::from(vec!["1", "USD", "2024-09-01", "", "", ""]);
        assert!(converter.convert(&trailing).is_ok());
        let long = StringRecord::from(vec!["1", "USD", "2024-09-01", "", "", "oops"]);
        assert!(converter.convert(&long).is_err());
        for bad in [
            serde_json::json!({"NoSuchColumn": "x"}),
            serde_json::json!({"BilledCost": "abc"}),
            serde_json::json!({"ChargePeriodStart": "yesterday"}),
            serde_json::json!({"BillingCurrency": ["USD"]}),
            serde_json::json!(["USD"]),
        ] {
            assert!(check_defaults(&bad).is_err(), "{bad}");
        }
    }

    fn column(name: &str) -> usize {
        COLUMNS.iter().position(|c| *c == name).unwrap()
    }
}
