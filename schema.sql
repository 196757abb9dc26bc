-- Notifications service: the authoritative SQLite schema.
--
-- Every statement is idempotent (IF NOT EXISTS) so `notifications init-db` can run on a
-- database of any earlier version. The version number lives in `PRAGMA user_version`;
-- the service sets it after applying this file and refuses to open a database whose
-- version is newer than the one it knows.
--
-- Times are integers: microseconds since the Unix epoch, UTC. Ids are lower-case UUID
-- strings with dashes.
--
-- Version 4 added the state columns of the inbox API version 2 (`seen_at`, `archived_at`,
-- `collapsed_count`) and the change log (`changes`, filled by triggers). The service adds
-- the columns to an older table itself (ALTER TABLE) before it runs this file; the
-- statements marked "upgrade" below then bring an older database's data and indexes up to
-- date, and do nothing on a new or current one.

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
    -- When the user first saw it (it stopped being "new"); never cleared. Reading implies
    -- seeing: every write that sets `read_at` sets `seen_at` too when it is NULL.
    seen_at         BIGINT,
    -- When the user archived it; NULL while it is not archived.
    archived_at     BIGINT,
    -- How many further notifications were collapsed into this one.
    collapsed_count INTEGER      NOT NULL DEFAULT 0,
    -- Version 5: the producer's collapse key (see the block of version 5 at the end).
    collapse_key    VARCHAR(255)
);

-- Upgrade (version 3 and older): reading implies seeing, also for rows read before
-- `seen_at` existed. It runs before the triggers below exist, so it logs no changes.
UPDATE notifications SET seen_at = read_at WHERE seen_at IS NULL AND read_at IS NOT NULL;

CREATE UNIQUE INDEX IF NOT EXISTS ux_notifications_id
    ON notifications (id);

-- First page of a user's list, newest first (dataset variant without a dataset filter;
-- version 2 lists, which skip archived rows, and their totals read `archived_at` from it).
-- Upgrade: version 3 had this index without `archived_at`.
DROP INDEX IF EXISTS ix_notifications_user_created;
CREATE INDEX IF NOT EXISTS ix_notifications_user_timeline
    ON notifications (user_id, created_at, seq, archived_at);

-- First page of a user's list for one dataset.
CREATE INDEX IF NOT EXISTS ix_notifications_user_dataset_created
    ON notifications (user_id, dataset_id, created_at, seq);

-- First page of a user's inbox in one organization (and version 2 lists and totals of a
-- token with an organization). Upgrade: version 3 had this index without `archived_at`.
DROP INDEX IF EXISTS ix_notifications_user_org_created;
CREATE INDEX IF NOT EXISTS ix_notifications_user_org_timeline
    ON notifications (user_id, organization_id, created_at, seq, archived_at);

-- Unread counts and mark-all-read touch only unread rows. Unseen rows are unread ones too
-- (reading implies seeing), so version 2's unread and unseen counts of unarchived rows
-- read this index alone. `read_at` (NULL in every entry) makes it a covering index for
-- the counts, which name it: SQLite does not take a partial index's own condition as a
-- column it holds. Upgrade: version 3 had it without the state columns.
DROP INDEX IF EXISTS ix_notifications_unread;
CREATE INDEX IF NOT EXISTS ix_notifications_unread_state
    ON notifications (user_id, organization_id, dataset_id, archived_at, seen_at, read_at)
    WHERE read_at IS NULL;

-- A user's archived rows, newest first (version 2 lists with `archived=true`). New rows are
-- never archived, so inserts do not touch it.
CREATE INDEX IF NOT EXISTS ix_notifications_archived
    ON notifications (user_id, created_at, seq)
    WHERE archived_at IS NOT NULL;

-- Idempotent ingest: one row per (user, dedupe_key).
CREATE UNIQUE INDEX IF NOT EXISTS ux_notifications_dedupe
    ON notifications (user_id, dedupe_key)
    WHERE dedupe_key IS NOT NULL;

-- Named values the service keeps (the change log's floor below, retention's runs).
-- NOT NULL is spelled out: SQLite lets a non-INTEGER primary key hold NULL otherwise.
CREATE TABLE IF NOT EXISTS counters (
    name  VARCHAR(64) NOT NULL PRIMARY KEY,
    value BIGINT      NOT NULL DEFAULT 0
);

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

-- The change log: one entry per change to a notification, appended in the transaction of
-- the change by the triggers below, whatever wrote it (the APIs, ingest, the commands, a
-- sqlite3 shell). `position` only grows (AUTOINCREMENT: never reused, even after the
-- oldest entries are deleted) and entries commit in position order, because SQLite has one
-- writer at a time: a reader that has seen position N has seen every change up to N.
-- `change` is `created`, `updated` (seen_at, read_at or archived_at took a new value) or
-- `deleted`; the state columns hold the state after the change (for `deleted`, the state
-- the notification had). There is no time column: a SQL function call in a trigger makes
-- SQLite keep a statement journal for every inserted row (measured: three times what the
-- trigger costs an insert otherwise), so retention dates entries by `change_marks`.
CREATE TABLE IF NOT EXISTS changes (
    position        INTEGER      NOT NULL PRIMARY KEY AUTOINCREMENT,
    change          VARCHAR(16)  NOT NULL,
    notification_id VARCHAR(36)  NOT NULL,
    seq             BIGINT       NOT NULL,
    user_id         VARCHAR(255) NOT NULL,
    organization_id VARCHAR(255),
    dataset_id      VARCHAR(36),
    kind            VARCHAR(255) NOT NULL DEFAULT '',
    seen_at         BIGINT,
    read_at         BIGINT,
    archived_at     BIGINT
);

-- A user's changes after a position (a stream's replay after Last-Event-ID).
CREATE INDEX IF NOT EXISTS ix_changes_user
    ON changes (user_id, position);

-- The log's head as the retention pass saw it, and when: every entry at or below a mark's
-- position is at least as old as the mark. Entries at or below the newest mark older than
-- NOTIFICATIONS_CHANGELOG_RETENTION are deleted.
CREATE TABLE IF NOT EXISTS change_marks (
    position  INTEGER NOT NULL PRIMARY KEY,
    marked_at BIGINT  NOT NULL
);

-- The highest position retention has deleted: a reader at or above it misses nothing; a
-- reader below it may have missed changes and must start again (a stream's `reset`).
INSERT OR IGNORE INTO counters (name, value) VALUES ('changes_floor', 0);

-- The triggers compute nothing beyond the row itself: no lookups, and no SQL function
-- calls (see the note on `changes`).
CREATE TRIGGER IF NOT EXISTS tr_notifications_created
AFTER INSERT ON notifications
BEGIN
    INSERT INTO changes (change, notification_id, seq, user_id, organization_id, dataset_id,
                         kind, seen_at, read_at, archived_at)
    VALUES ('created', NEW.id, NEW.seq, NEW.user_id, NEW.organization_id, NEW.dataset_id,
            NEW.kind, NEW.seen_at, NEW.read_at, NEW.archived_at);
END;

CREATE TRIGGER IF NOT EXISTS tr_notifications_updated
AFTER UPDATE OF seen_at, read_at, archived_at ON notifications
WHEN OLD.seen_at IS NOT NEW.seen_at OR OLD.read_at IS NOT NEW.read_at
     OR OLD.archived_at IS NOT NEW.archived_at
BEGIN
    INSERT INTO changes (change, notification_id, seq, user_id, organization_id, dataset_id,
                         kind, seen_at, read_at, archived_at)
    VALUES ('updated', NEW.id, NEW.seq, NEW.user_id, NEW.organization_id, NEW.dataset_id,
            NEW.kind, NEW.seen_at, NEW.read_at, NEW.archived_at);
END;

CREATE TRIGGER IF NOT EXISTS tr_notifications_deleted
AFTER DELETE ON notifications
BEGIN
    INSERT INTO changes (change, notification_id, seq, user_id, organization_id, dataset_id,
                         kind, seen_at, read_at, archived_at)
    VALUES ('deleted', OLD.id, OLD.seq, OLD.user_id, OLD.organization_id, OLD.dataset_id,
            OLD.kind, OLD.seen_at, OLD.read_at, OLD.archived_at);
END;

-- Version 5: preferences and collapse keys (see docs/api-v2.md). The service adds the
-- `collapse_key` column to an older `notifications` table itself (ALTER TABLE) before it
-- runs this file.
--
-- `collapse_key`: a producer's key; a new notification with the key of its user's unread,
-- unarchived notification replaces it (deleted, and the new one stored with
-- `collapsed_count` one higher, in one transaction). This index makes "at most one unread,
-- unarchived notification per (user, collapse key)" a property of the table, whoever
-- writes: a second one cannot be stored. A notification that is marked unread or
-- unarchived again leaves its collapse group (its key is cleared), so bringing one back
-- never collides with a newer one that holds the key. Reading or archiving takes a row out
-- of the index, which is what lets the next one with its key be stored beside it.
CREATE UNIQUE INDEX IF NOT EXISTS ux_notifications_collapse
    ON notifications (user_id, collapse_key)
    WHERE collapse_key IS NOT NULL AND read_at IS NULL AND archived_at IS NULL;

-- A user's preferences (version 2's /preferences, `notifications preferences`): what
-- ingest and `notifications send` do not store for the user unless the item is critical.
-- Per user, whatever the organization. Each list is a JSON array of text: kinds
-- (`review.created`, or a prefix pattern `review.*`) and dataset ids (lower-case UUIDs).
CREATE TABLE IF NOT EXISTS preferences (
    user_id        VARCHAR(255) NOT NULL PRIMARY KEY,
    muted_kinds    TEXT         NOT NULL DEFAULT '[]',
    muted_datasets TEXT         NOT NULL DEFAULT '[]',
    updated_at     BIGINT       NOT NULL
);

-- ---- Outbound webhooks (schema version 5) -------------------------------------------------
-- An endpoint receives the change log's entries of the events it asked for. `position` is
-- the last change-log position it has turned into deliveries: the sender reads the entries
-- after it and, in one writer transaction, stores their deliveries and moves it (only if it
-- is still the position read, so two senders can never turn one change into two
-- deliveries). Change-log retention never deletes an entry above the lowest `position`.
-- `secret` is the signing key (the base64 after `whsec_`): the service needs it to sign.
CREATE TABLE IF NOT EXISTS webhook_endpoints (
    id         VARCHAR(32)  NOT NULL PRIMARY KEY,
    url        TEXT         NOT NULL,
    events     VARCHAR(255) NOT NULL,
    secret     VARCHAR(128) NOT NULL,
    position   BIGINT       NOT NULL,
    created_at BIGINT       NOT NULL
);

-- One change for one endpoint: its body is frozen when it is made, so every attempt sends
-- the same bytes under the same `id` (the `webhook-id` header). `status` is `pending`,
-- `delivered` or `failed`; a pending delivery is attempted at `next_attempt_at`, and retried
-- until `window_start` plus the retry window (24 hours), then it is `failed`.
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id              VARCHAR(40)  NOT NULL PRIMARY KEY,
    endpoint_id     VARCHAR(32)  NOT NULL,
    position        BIGINT       NOT NULL,
    type            VARCHAR(32)  NOT NULL,
    body            TEXT         NOT NULL,
    status          VARCHAR(16)  NOT NULL DEFAULT 'pending',
    attempts        INTEGER      NOT NULL DEFAULT 0,
    created_at      BIGINT       NOT NULL,
    window_start    BIGINT       NOT NULL,
    next_attempt_at BIGINT       NOT NULL,
    last_attempt_at BIGINT,
    last_status     INTEGER,
    last_error      TEXT,
    delivered_at    BIGINT
);

-- An endpoint's deliveries in change-log order; one delivery per (endpoint, change).
CREATE UNIQUE INDEX IF NOT EXISTS ux_webhook_deliveries_position
    ON webhook_deliveries (endpoint_id, position);

-- The next delivery an endpoint is owed: its oldest pending one.
CREATE INDEX IF NOT EXISTS ix_webhook_deliveries_pending
    ON webhook_deliveries (endpoint_id, position)
    WHERE status = 'pending';

-- Delivered deliveries by age, for their retention (NOTIFICATIONS_CHANGELOG_RETENTION).
CREATE INDEX IF NOT EXISTS ix_webhook_deliveries_delivered
    ON webhook_deliveries (delivered_at)
    WHERE status = 'delivered';

-- Who sends: one row, held by one worker of one node at a time, renewed while it lives. A
-- lease not renewed lapses at `expires_at`, and another worker takes over.
CREATE TABLE IF NOT EXISTS webhook_sender_lease (
    name       VARCHAR(32)  NOT NULL PRIMARY KEY,
    owner      VARCHAR(128) NOT NULL,
    expires_at BIGINT       NOT NULL
);

-- Version 5: the change log replaced what streams read before it. Upgrade: the `read` and
-- `purge` counters (moved by every mark-read and purge of unread rows) and the index on
-- `read_seq` (the counter's value when a row was marked read) go. SQLite has no DROP
-- COLUMN IF EXISTS, so the service drops the `read_seq` column itself, with its index,
-- before it runs this file (engine.py, DROPPED_COLUMNS); a database upgraded by running
-- this file by hand keeps the column, which nothing reads or writes any more.
DELETE FROM counters WHERE name IN ('read', 'purge');
DROP INDEX IF EXISTS ix_notifications_read_seq;
