-- An uploaded file waits for its import in a table of its own, not in rows of one shared
-- table: the import drops the table when it is done, which costs nothing, where deleting a
-- gigabyte of rows cost seconds inside the import's transaction (each row's TOAST pieces are
-- deleted one by one). Uploads reach their table through the functions below (its name is
-- made from the import's id), so no statement outside them names a table.

CREATE FUNCTION billing_upload_table(import uuid) RETURNS text
    LANGUAGE sql IMMUTABLE
    RETURN 'billing_upload_' || replace(import::text, '-', '');

-- Made in the upload's transaction: a failed upload leaves no table. Stored uncompressed: a
-- piece is read once, and gzipped exports do not compress.
CREATE FUNCTION billing_upload_create(import uuid) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('CREATE TABLE %I (seq integer PRIMARY KEY, data bytea NOT NULL)',
                   billing_upload_table(import));
    EXECUTE format('ALTER TABLE %I ALTER COLUMN data SET STORAGE EXTERNAL',
                   billing_upload_table(import));
END $$;

CREATE FUNCTION billing_upload_put(import uuid, piece integer, bytes bytea) RETURNS void
    LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('INSERT INTO %I (seq, data) VALUES ($1, $2)', billing_upload_table(import))
        USING piece, bytes;
END $$;

-- A piece of the upload; null past the last one (or when the upload is gone).
CREATE FUNCTION billing_upload_piece(import uuid, piece integer) RETURNS bytea
    LANGUAGE plpgsql STABLE AS $$
DECLARE
    found bytea;
BEGIN
    IF to_regclass(billing_upload_table(import)) IS NULL THEN
        RETURN NULL;
    END IF;
    EXECUTE format('SELECT data FROM %I WHERE seq = $1', billing_upload_table(import))
        INTO found USING piece;
    RETURN found;
END $$;

CREATE FUNCTION billing_upload_drop(import uuid) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('DROP TABLE IF EXISTS %I', billing_upload_table(import));
END $$;

-- A deleted import (or tenant) takes its waiting upload along.
CREATE FUNCTION billing_upload_of_deleted_import() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM billing_upload_drop(OLD.id);
    RETURN NULL;
END $$;
CREATE TRIGGER billing_imports_drop_upload AFTER DELETE ON billing_imports
    FOR EACH ROW EXECUTE FUNCTION billing_upload_of_deleted_import();

-- Uploads still waiting move to their tables.
DO $$
DECLARE
    waiting uuid;
BEGIN
    FOR waiting IN SELECT DISTINCT import_id FROM billing_import_chunks LOOP
        PERFORM billing_upload_create(waiting);
        EXECUTE format('INSERT INTO %I (seq, data) SELECT seq, data FROM billing_import_chunks
                        WHERE import_id = %L', billing_upload_table(waiting), waiting);
    END LOOP;
END $$;
DROP TABLE billing_import_chunks;
