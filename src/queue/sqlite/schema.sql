-- One row per accepted delivery. delivery_id is UNIQUE: that is the
-- deduplication, and it survives restarts. Times are Unix milliseconds.
-- seq is a plain rowid (no AUTOINCREMENT, which costs a write to
-- sqlite_sequence in every commit); it only orders rows.
-- Bodies live outside the database, in append-only segment files
-- (body_log.rs); a row says where its body lies. Rows stored by schema
-- version 1 keep theirs in the `bodies` table.
CREATE TABLE IF NOT EXISTS deliveries (
    seq             INTEGER PRIMARY KEY,
    delivery_id     TEXT    NOT NULL UNIQUE,
    event           TEXT    NOT NULL,
    action          TEXT,
    hook_id         TEXT,
    target_type     TEXT,
    target_id       TEXT,
    content_kind    TEXT    NOT NULL,          -- json | form
    received_at     INTEGER NOT NULL,
    state           TEXT    NOT NULL,          -- queued | running | done | dead
    attempts        INTEGER NOT NULL DEFAULT 0,   -- towards WEBHOOKD_MAX_ATTEMPTS; reset by replay
    runs            INTEGER NOT NULL DEFAULT 0,   -- every attempt ever, never reset
    next_attempt_at INTEGER NOT NULL,
    lease_until     INTEGER,
    last_error      TEXT,
    finished_at     INTEGER,
    body_segment    INTEGER,                   -- NULL: the body is in `bodies`
    body_offset     INTEGER,
    body_len        INTEGER,
    installation_id INTEGER                    -- the payload's installation.id: its credential under App auth
                                               -- (NULL: none, or stored before schema version 3)
);
CREATE TABLE IF NOT EXISTS bodies (
    seq  INTEGER PRIMARY KEY,                  -- deliveries.seq
    body BLOB    NOT NULL                      -- exactly as received and signed
);
-- Only waiting rows are indexed: claiming removes a row from this index and
-- finishing touches no index at all, which keeps each commit's write small.
-- (Pruning, hourly, scans instead.)
CREATE INDEX IF NOT EXISTS deliveries_queued ON deliveries (next_attempt_at, seq) WHERE state = 'queued';
-- Claims take turns between installations (fairness): one installation's
-- due rows, oldest first, without scanning the others'.
CREATE INDEX IF NOT EXISTS deliveries_queued_by_installation
    ON deliveries (installation_id, next_attempt_at, seq) WHERE state = 'queued';
-- One row the store's writer rewrites to learn whether the database takes
-- writes again after a write failed (writer.rs, probe).
CREATE TABLE IF NOT EXISTS write_probe (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    probed_at INTEGER NOT NULL
);
-- The recovery of deliveries GitHub failed to make (schema version 4;
-- ledger.rs). Per hook (a spec such as `app` or `repo:o/r:34`): the newest
-- delivered_at a completed pass examined.
CREATE TABLE IF NOT EXISTS recovery_checkpoints (
    hook         TEXT    PRIMARY KEY,
    delivered_at INTEGER NOT NULL
);
-- Redeliveries requested from GitHub, per delivery id; forgotten after
-- GitHub's 3 days.
CREATE TABLE IF NOT EXISTS recovery_requests (
    delivery_id TEXT    PRIMARY KEY,
    hook        TEXT    NOT NULL,
    times       INTEGER NOT NULL,
    last_at     INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS recovery_requests_last_at ON recovery_requests (last_at);
-- Hooks learned from deliveries received (at most 1,000, the least
-- recently seen dropped).
CREATE TABLE IF NOT EXISTS recovery_hooks (
    spec    TEXT    PRIMARY KEY,
    seen_at INTEGER NOT NULL
);
PRAGMA user_version = 4;
