-- Provisioned resources accrue cost: one record per resource and hour, grown by each spending
-- sync until the hour is over.
ALTER TABLE resources ADD COLUMN cost_accrued_until timestamptz;
CREATE UNIQUE INDEX cost_records_accrual_key ON cost_records (resource_ref, charge_period_start)
    WHERE import_id IS NULL;
