-- Billing imports know which file they are, so that a period delivered in several files adds up
-- instead of each file replacing the last.
--
-- A file's identity is its provider, its billing period and its key: the URL without its query
-- string, the `source_key` the request gave, or the uploaded file's name. Identical content (as
-- CSV, after gzip) is the same file whatever its key. `replace_mode = 'period'` makes an import
-- the whole truth for its billing periods (restatements, and manifests listing every part).
-- `dataset` says whether an export holds actual or amortized cost: the two are views of the
-- same charges, so loading one replaces the other for the same provider, account and period.
ALTER TABLE billing_imports
    ADD COLUMN source_key     text,
    ADD COLUMN content_sha256 text,
    ADD COLUMN replace_mode   text NOT NULL DEFAULT 'file' CHECK (replace_mode IN ('file', 'period')),
    ADD COLUMN dataset        text CHECK (dataset IN ('actual', 'amortized')),
    -- Values for columns a file lacks (or leaves empty), by FOCUS column name.
    ADD COLUMN defaults       jsonb NOT NULL DEFAULT '{}',
    -- URL imports: the part URLs given with the request (a manifest's own list is read by the
    -- worker); kept like `url`, and shown without their query strings.
    ADD COLUMN parts          text[],
    ADD COLUMN parts_read     integer NOT NULL DEFAULT 0,
    -- The later import that replaced every billing period this one held.
    ADD COLUMN replaced_by    uuid;

-- Imports before this change were keyed by their file name or URL.
UPDATE billing_imports
SET source_key = COALESCE(filename, regexp_replace(url, '[?#].*$', ''));

CREATE INDEX billing_imports_source_key_idx ON billing_imports (tenant_id, source_key);

-- Uploaded pieces are read once and deleted: compressing them (pglz) cost more time than the
-- disk it saved, and gzipped exports do not compress at all.
ALTER TABLE billing_import_chunks ALTER COLUMN data SET STORAGE EXTERNAL;
