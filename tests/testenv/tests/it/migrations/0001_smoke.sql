-- A migration that the smoke test applies to prove sqlx migrations run against the test server.
CREATE TABLE smoke_notes (
    id BIGSERIAL PRIMARY KEY,
    body TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
