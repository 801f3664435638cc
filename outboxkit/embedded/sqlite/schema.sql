-- outboxkit SQLite schema, version 1. {table}[_suffix] becomes a quoted, validated identifier;
-- {message_columns} the message columns of codec.MESSAGE_COLUMN_DEFS.
-- Times are seconds since the epoch read from SQLite's own clock (the database clock).
CREATE TABLE IF NOT EXISTS {table} (
    position INTEGER PRIMARY KEY AUTOINCREMENT,
    shard INTEGER NOT NULL,
    {message_columns},
    enqueued_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    available_at REAL NOT NULL,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS {table}_claim ON {table} (shard, position);
CREATE INDEX IF NOT EXISTS {table}_delayed ON {table} (shard, available_at);
CREATE TABLE IF NOT EXISTS {table}_dead (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    shard INTEGER NOT NULL,
    {message_columns},
    attempts INTEGER NOT NULL,
    error TEXT NOT NULL,
    failed_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS {table}_dead_id ON {table}_dead (id);
CREATE TABLE IF NOT EXISTS {table}_leases (
    shard INTEGER PRIMARY KEY,
    owner TEXT,
    token INTEGER NOT NULL DEFAULT 0,
    expires_at REAL
);
CREATE TABLE IF NOT EXISTS {table}_instances (
    owner TEXT PRIMARY KEY,
    expires_at REAL NOT NULL
);
