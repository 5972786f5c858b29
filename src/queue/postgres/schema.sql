-- The PostgreSQL store, shared by every webhookd instance of a deployment.
-- Times are Unix milliseconds read from the database's clock
-- (webhookd_now_ms), so that instances whose clocks differ agree on leases
-- and due times.
-- Truncated, not rounded: a due time is never reached half a millisecond
-- early. The statement's start, so that one statement sees one time.
CREATE OR REPLACE FUNCTION webhookd_now_ms() RETURNS bigint
    LANGUAGE sql STABLE AS $$ SELECT floor(extract(epoch FROM statement_timestamp()) * 1000)::bigint $$;

-- One row per accepted delivery. delivery_id is UNIQUE: the deduplication,
-- across instances and restarts, within the retention.
CREATE TABLE IF NOT EXISTS webhookd_deliveries (
    seq             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id     text    NOT NULL UNIQUE,
    event           text    NOT NULL,
    action          text,
    hook_id         text,
    target_type     text,
    target_id       text,
    content_kind    text    NOT NULL,             -- json | form
    received_at     bigint  NOT NULL,
    state           text    NOT NULL,             -- queued | running | done | dead
    attempts        integer NOT NULL DEFAULT 0,   -- towards WEBHOOKD_MAX_ATTEMPTS; reset by replay
    runs            integer NOT NULL DEFAULT 0,   -- every attempt ever, never reset
    next_attempt_at bigint  NOT NULL,
    received_by     text,                         -- the instance that stored it (a closing one finishes only these)
    owner           text,                         -- the instance holding the lease (state running)
    lease_until     bigint,
    lease_token     bigint,                       -- this claim; an outcome must carry it to be recorded
    last_error      text,
    finished_at     bigint,
    installation_id bigint,                       -- the payload's installation.id: its credential under App auth
    body            bytea   NOT NULL              -- exactly as received and signed
);
-- Bodies compressed with lz4 where the server has it (PostgreSQL 14+ built
-- with lz4): pglz took a third of the server's CPU on the accept path
-- (bench/run.sh). Otherwise the server's default stays.
DO $$
BEGIN
    ALTER TABLE webhookd_deliveries ALTER COLUMN body SET COMPRESSION lz4;
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'webhookd: lz4 compression unavailable (%), bodies use the server default', SQLERRM;
END $$;
-- Waiting rows only: claims per installation, oldest first (turns between
-- installations walk this index). A claim stops at the first due row of its
-- walk; there is no index by due time: no statement walks one, and the
-- planner sorted every waiting row by it (40 ms at 16,000 waiting).
CREATE INDEX IF NOT EXISTS webhookd_deliveries_queued
    ON webhookd_deliveries (coalesce(installation_id, -1), seq) WHERE state = 'queued';
DROP INDEX IF EXISTS webhookd_deliveries_due;
-- Oldest first without sorting the backlog (one credential: token, dry run).
CREATE INDEX IF NOT EXISTS webhookd_deliveries_queued_by_age
    ON webhookd_deliveries (seq) WHERE state = 'queued';
-- Leases to renew or take over.
CREATE INDEX IF NOT EXISTS webhookd_deliveries_leased
    ON webhookd_deliveries (lease_until) WHERE state = 'running';
-- Pruning by age.
CREATE INDEX IF NOT EXISTS webhookd_deliveries_finished
    ON webhookd_deliveries (finished_at) WHERE state IN ('done', 'dead');

-- Credentials paused for a GitHub rate limit, for every instance:
-- `token` or `installation:ID`.
CREATE TABLE IF NOT EXISTS webhookd_pauses (
    credential text   PRIMARY KEY,
    until_ms   bigint NOT NULL
);

-- The next moment a content-creating write may go, per credential, so that
-- WEBHOOKD_GITHUB_WRITE_INTERVAL spaces writes across every instance.
CREATE TABLE IF NOT EXISTS webhookd_write_slots (
    credential text   PRIMARY KEY,
    next_ms    bigint NOT NULL
);

-- Housekeeping bookkeeping (the one instance holding the housekeeping lock
-- writes it).
CREATE TABLE IF NOT EXISTS webhookd_housekeeping (
    id          integer PRIMARY KEY CHECK (id = 1),
    pruned_at   bigint  NOT NULL
);

-- The recovery of deliveries GitHub failed to make (schema version 2;
-- ledger.rs), shared by the instances. Per hook (a spec such as `app` or
-- `repo:o/r:34`): the newest delivered_at a completed pass examined.
CREATE TABLE IF NOT EXISTS webhookd_recovery_checkpoints (
    hook         text   PRIMARY KEY,
    delivered_at bigint NOT NULL
);
-- Redeliveries requested from GitHub, per delivery id; forgotten after
-- GitHub's 3 days.
CREATE TABLE IF NOT EXISTS webhookd_recovery_requests (
    delivery_id text    PRIMARY KEY,
    hook        text    NOT NULL,
    times       integer NOT NULL,
    last_at     bigint  NOT NULL
);
CREATE INDEX IF NOT EXISTS webhookd_recovery_requests_last_at ON webhookd_recovery_requests (last_at);
-- Hooks learned from deliveries received (at most 1,000, the least
-- recently seen dropped).
CREATE TABLE IF NOT EXISTS webhookd_recovery_hooks (
    spec    text   PRIMARY KEY,
    seen_at bigint NOT NULL
);
