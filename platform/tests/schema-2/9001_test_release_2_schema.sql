-- TEST ONLY (feature test-schema-2): the schema change of the tests' release "2.0": a column and
-- a table 1.0 does not have, so that a rollback with the data can be told from one without.
ALTER TABLE users ADD COLUMN locale TEXT NOT NULL DEFAULT 'en';

CREATE TABLE release_2_notes (
    id         BIGSERIAL PRIMARY KEY,
    note       TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
