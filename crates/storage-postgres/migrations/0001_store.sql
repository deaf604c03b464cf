-- The derived data of the Store trait: sessions, authentication events, alerts, the
-- apply order, replayed history, counters and each node's applied journal position.
-- Names that lists sort or page by use the "C" collation, so that keyset paging and
-- the order of lists are byte order whatever the database's locale.
CREATE TABLE applied (
    node TEXT PRIMARY KEY,
    segment BIGINT NOT NULL,
    "offset" BIGINT NOT NULL
);
CREATE TABLE sessions (
    id BIGSERIAL PRIMARY KEY,
    session_key TEXT COLLATE "C" NOT NULL UNIQUE,
    user_name TEXT COLLATE "C",
    user_raw TEXT,
    nas TEXT COLLATE "C" NOT NULL,
    nas_ip TEXT COLLATE "C",
    session_id TEXT,
    client_ip TEXT,
    device TEXT,
    framed_ip TEXT,
    framed_ipv6 TEXT,
    started_at BIGINT NOT NULL,
    stopped_at BIGINT,
    updated_at BIGINT NOT NULL,
    open BOOLEAN NOT NULL,
    session_time BIGINT,
    input_octets BIGINT,
    output_octets BIGINT,
    input_packets BIGINT,
    output_packets BIGINT,
    terminate_cause TEXT,
    details JSONB NOT NULL,
    location JSONB,
    start_seq BIGINT,
    start_time BIGINT,
    stop_seq BIGINT,
    reset_seq BIGINT,
    start_seen BOOLEAN NOT NULL DEFAULT false,
    stale BOOLEAN NOT NULL DEFAULT false,
    interim_gap BIGINT
);
CREATE INDEX sessions_start_seq ON sessions (start_seq) WHERE start_seq IS NOT NULL;
CREATE INDEX sessions_stop_seq ON sessions (stop_seq) WHERE stop_seq IS NOT NULL;
CREATE INDEX sessions_reset_seq ON sessions (reset_seq) WHERE reset_seq IS NOT NULL;
CREATE INDEX sessions_user ON sessions (user_name);
CREATE INDEX sessions_user_raw ON sessions (user_raw);
CREATE INDEX sessions_open_by_nas ON sessions (nas) WHERE open;
CREATE INDEX sessions_open_by_nas_ip ON sessions (nas_ip) WHERE open OR stale;
CREATE INDEX sessions_started ON sessions (started_at, id);

CREATE TABLE auth_events (
    id BIGSERIAL PRIMARY KEY,
    time_ms BIGINT NOT NULL,
    user_name TEXT COLLATE "C" NOT NULL,
    event JSONB NOT NULL,
    seq BIGINT
);
CREATE INDEX auth_events_seq ON auth_events (seq);
CREATE INDEX auth_events_time ON auth_events (time_ms, id);
CREATE INDEX auth_events_user ON auth_events (user_name, time_ms);

CREATE TABLE alerts (
    id BIGSERIAL PRIMARY KEY,
    kind TEXT NOT NULL,
    severity TEXT COLLATE "C" NOT NULL,
    user_name TEXT COLLATE "C" NOT NULL,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    event_time BIGINT NOT NULL,
    last_event_time BIGINT NOT NULL,
    status TEXT NOT NULL,
    classification TEXT,
    message TEXT NOT NULL,
    evidence JSONB NOT NULL,
    fold_key TEXT NOT NULL,
    count BIGINT NOT NULL,
    ip TEXT
);
CREATE INDEX alerts_open_fold ON alerts (fold_key) WHERE status = 'open';
CREATE INDEX alerts_user ON alerts (user_name);
CREATE TABLE alert_causes (
    cause TEXT NOT NULL,
    kind TEXT NOT NULL,
    alert_id BIGINT NOT NULL,
    PRIMARY KEY (cause, kind)
);
CREATE TABLE alert_comments (
    id BIGSERIAL PRIMARY KEY,
    alert_id BIGINT NOT NULL,
    time_ms BIGINT NOT NULL,
    text TEXT NOT NULL
);
CREATE INDEX alert_comments_alert ON alert_comments (alert_id);
-- 'seq': the next place in the order records and authentication events are applied in.
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
-- The place of each session event (s: Start, t: Stop, r: NAS reset) the first time it
-- was applied; kept through a rebuild so that history keeps its order.
CREATE TABLE feed_order (
    key TEXT PRIMARY KEY,
    seq BIGINT NOT NULL
);
-- Records read from history files: not in a journal, applied again by a rebuild.
CREATE TABLE replayed (
    seq BIGINT PRIMARY KEY,
    record JSONB NOT NULL
);
-- Each node's ingestion counters.
CREATE TABLE counters (
    node TEXT NOT NULL,
    client TEXT COLLATE "C" NOT NULL,
    reason TEXT COLLATE "C" NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (node, client, reason)
);
INSERT INTO meta (key, value) VALUES ('seq', 1);
