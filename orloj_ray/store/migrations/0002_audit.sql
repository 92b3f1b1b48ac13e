-- orloj-ray PostgreSQL store, schema version 2: the governance audit trail (append-only).

-- Ids come from a counter row locked until commit, as event ids do, so a reader paging with
-- "id > after" never misses a record that commits late.
CREATE TABLE orloj_audit_seq (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    last_id  bigint NOT NULL
);
INSERT INTO orloj_audit_seq (last_id) VALUES (0);

CREATE TABLE orloj_audit (
    id     bigint PRIMARY KEY,
    record jsonb NOT NULL       -- the record without its id; filters are containment tests
);
CREATE INDEX orloj_audit_record ON orloj_audit USING gin (record jsonb_path_ops);
