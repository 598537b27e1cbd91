-- The webhook outbox: one row per (trigger, change event). Rows are written in the same
-- step that lets the replication slot move past the event, so a crash loses none, and the
-- unique key makes writing the same event again (after WAL is re-read) a no-op.
CREATE TABLE walgate.webhook_deliveries (
    id bigserial PRIMARY KEY,
    trigger_name text NOT NULL,
    event_id text NOT NULL,
    -- Primary-key values of the changed row as JSON text; deliveries with the same trigger and
    -- row key are sent in id order, one at a time.
    row_key text NOT NULL,
    body text NOT NULL,
    commit_time timestamptz NOT NULL,
    status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    -- A worker that claimed the row owns it until then; an expired lease is claimable again.
    leased_until timestamptz,
    last_status integer,
    last_error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    UNIQUE (trigger_name, event_id)
);

CREATE INDEX webhook_deliveries_due
    ON walgate.webhook_deliveries (next_attempt_at, id)
    WHERE status = 'pending';

CREATE INDEX webhook_deliveries_row_order
    ON walgate.webhook_deliveries (trigger_name, row_key, id)
    WHERE status = 'pending';

CREATE INDEX webhook_deliveries_finished
    ON walgate.webhook_deliveries (status, finished_at)
    WHERE status <> 'pending';
