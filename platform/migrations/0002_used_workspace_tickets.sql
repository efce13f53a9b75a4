-- Workspace tickets (the envproxy's one-minute links from the dashboard to a workspace's own
-- origin) are single-use across every envproxy replica and restart: the manager records each
-- redeemed ticket's random nonce here, insert-if-absent, so exactly one redemption wins.
-- A row is kept until its ticket has expired (plus a margin for clocks that disagree), then
-- deleted by a later redemption; an unexpired row is never deleted.

CREATE TABLE used_workspace_tickets (
    nonce      TEXT PRIMARY KEY CHECK (nonce <> '' AND length(nonce) <= 128),
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX used_workspace_tickets_expires_at_idx ON used_workspace_tickets (expires_at);
