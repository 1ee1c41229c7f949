-- Every FOCUS 1.2 column a record can carry (mandatory, conditional and recommended), and the
-- provider's own `x_` columns as one JSON object. Added to the partitioned parent, so every
-- tenant's and import's table gets them (no rewrite: they have no default).
ALTER TABLE cost_records
    ADD COLUMN availability_zone                      text,
    ADD COLUMN billing_account_type                   text,
    ADD COLUMN capacity_reservation_id                text,
    ADD COLUMN capacity_reservation_status            text,
    ADD COLUMN charge_frequency                       text,
    ADD COLUMN commitment_discount_category           text,
    ADD COLUMN commitment_discount_id                 text,
    ADD COLUMN commitment_discount_name               text,
    ADD COLUMN commitment_discount_quantity           numeric,
    ADD COLUMN commitment_discount_status             text,
    ADD COLUMN commitment_discount_type               text,
    ADD COLUMN commitment_discount_unit               text,
    ADD COLUMN contracted_unit_price                  numeric,
    ADD COLUMN invoice_id                             text,
    ADD COLUMN list_unit_price                        numeric,
    ADD COLUMN pricing_category                       text,
    ADD COLUMN pricing_currency                       text,
    ADD COLUMN pricing_currency_contracted_unit_price numeric,
    ADD COLUMN pricing_currency_effective_cost        numeric,
    ADD COLUMN pricing_currency_list_unit_price       numeric,
    ADD COLUMN service_subcategory                    text,
    ADD COLUMN sku_meter                              text,
    ADD COLUMN sku_price_details                      jsonb,
    ADD COLUMN sku_price_id                           text,
    ADD COLUMN sub_account_type                       text,
    -- The export's `x_`-prefixed columns, by their names as written.
    ADD COLUMN extensions                             jsonb;

-- A time as FOCUS writes it: ISO 8601 in UTC with a `Z`, with a fraction only when it has one.
CREATE FUNCTION focus_time(t timestamptz) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN rtrim(rtrim(to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'), '0'), '.') || 'Z';
