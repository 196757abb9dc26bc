-- Notifications service: the authoritative SQLite schema.
--
-- Every statement is idempotent (IF NOT EXISTS) so `notifications init-db` can run on a
-- database of any earlier version. The version number lives in `PRAGMA user_version`;
-- the service sets it after applying this file and refuses to open a database whose
-- version is newer than the one it knows.
--
-- Times are integers: microseconds since the Unix epoch, UTC. Ids are lower-case UUID
-- strings with dashes.

CREATE TABLE IF NOT EXISTS notifications (
    -- Monotonic, never reused (AUTOINCREMENT), so it is safe as the SSE event id even
    -- after old rows are purged.
    seq             INTEGER      NOT NULL PRIMARY KEY AUTOINCREMENT,
    id              VARCHAR(36)  NOT NULL,
    user_id         VARCHAR(255) NOT NULL,
    organization_id VARCHAR(255),
    dataset_id      VARCHAR(36),
    kind            VARCHAR(255) NOT NULL DEFAULT '',
    entity_type     VARCHAR(255) NOT NULL DEFAULT '',
    entity_id       VARCHAR(255) NOT NULL DEFAULT '',
    title           TEXT         NOT NULL DEFAULT '',
    body            TEXT,
    link            TEXT,
    metadata        TEXT         NOT NULL DEFAULT '{}',
    dedupe_key      VARCHAR(255),
    created_at      BIGINT       NOT NULL,
    read_at         BIGINT,
    -- Value of the `read` counter when the row was marked read: lets a watcher find
    -- "read-state changes since N" without scanning the table.
    read_seq        BIGINT
);

CREATE UNIQUE INDEX IF NOT EXISTS ux_notifications_id
    ON notifications (id);

-- First page of a user's list, newest first (dataset variant without a dataset filter).
CREATE INDEX IF NOT EXISTS ix_notifications_user_created
    ON notifications (user_id, created_at, seq);

-- First page of a user's list for one dataset.
CREATE INDEX IF NOT EXISTS ix_notifications_user_dataset_created
    ON notifications (user_id, dataset_id, created_at, seq);

-- First page of a user's inbox in one organization.
CREATE INDEX IF NOT EXISTS ix_notifications_user_org_created
    ON notifications (user_id, organization_id, created_at, seq);

-- Unread counts and mark-all-read touch only unread rows.
CREATE INDEX IF NOT EXISTS ix_notifications_unread
    ON notifications (user_id, organization_id, dataset_id)
    WHERE read_at IS NULL;

-- Read-state changes after a given counter value.
CREATE INDEX IF NOT EXISTS ix_notifications_read_seq
    ON notifications (read_seq)
    WHERE read_seq IS NOT NULL;

-- Idempotent ingest: one row per (user, dedupe_key).
CREATE UNIQUE INDEX IF NOT EXISTS ux_notifications_dedupe
    ON notifications (user_id, dedupe_key)
    WHERE dedupe_key IS NOT NULL;

-- Named monotonic counters (currently `read`, bumped once per mark-read operation).
-- NOT NULL is spelled out: SQLite lets a non-INTEGER primary key hold NULL otherwise.
CREATE TABLE IF NOT EXISTS counters (
    name  VARCHAR(64) NOT NULL PRIMARY KEY,
    value BIGINT      NOT NULL DEFAULT 0
);

INSERT OR IGNORE INTO counters (name, value) VALUES ('read', 0);
-- Bumped when unread rows are deleted (purge), so streams recount unread totals.
INSERT OR IGNORE INTO counters (name, value) VALUES ('purge', 0);

-- Open streams, one row each, so the per-user stream limits hold across every worker of
-- the node. The worker holding a lease refreshes `expires_at`; a lease of a worker that
-- died simply expires, so a crash never locks a user out. `kind` says which limit a lease
-- counts against (`organization` or `dataset`); version 3 added it, and the service adds
-- it to an older table itself (ALTER TABLE), since this statement leaves one as it is.
CREATE TABLE IF NOT EXISTS stream_leases (
    id         VARCHAR(32)  NOT NULL PRIMARY KEY,
    user_id    VARCHAR(255) NOT NULL,
    owner      VARCHAR(128) NOT NULL,
    expires_at BIGINT       NOT NULL,
    kind       VARCHAR(16)  NOT NULL DEFAULT 'organization'
);

CREATE INDEX IF NOT EXISTS ix_stream_leases_user
    ON stream_leases (user_id, expires_at);

CREATE INDEX IF NOT EXISTS ix_stream_leases_owner
    ON stream_leases (owner);
