-- The outbox of alert changes export sinks read in order. Transactions that add to it
-- hold an advisory lock first, so positions become visible in the order they were
-- given: a reader past position n never later finds a row below n.
CREATE TABLE alert_events (
    seq BIGSERIAL PRIMARY KEY,
    alert_id BIGINT NOT NULL,
    trigger TEXT NOT NULL,
    time_ms BIGINT NOT NULL
);
CREATE INDEX alerts_open_kind ON alerts (kind) WHERE status = 'open';
