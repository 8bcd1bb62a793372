//! Versioned schema migrations (`PRAGMA user_version`), applied at start-up.

use rusqlite::Connection;
use rusqlite_migration::{M, Migrations};

use crate::db::StoreError;

/// The migrations, oldest first. Never edit a released one: append a new one.
const MIGRATIONS: &[&str] = &[
    // 1: projects, sessions, their event logs, per-project secrets.
    r#"
    CREATE TABLE projects (
        name          TEXT PRIMARY KEY,
        display_name  TEXT NOT NULL DEFAULT '',
        description   TEXT NOT NULL DEFAULT '',
        created_at    INTEGER NOT NULL,
        settings      TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE sessions (
        id                 INTEGER PRIMARY KEY,
        project            TEXT NOT NULL REFERENCES projects(name) ON DELETE CASCADE,
        name               TEXT NOT NULL,
        created_at         INTEGER NOT NULL,
        resource_version   INTEGER NOT NULL DEFAULT 1,
        display_name       TEXT NOT NULL DEFAULT '',
        initial_prompt     TEXT NOT NULL DEFAULT '',
        phase              TEXT NOT NULL DEFAULT 'Pending',
        object             TEXT NOT NULL,
        last_activity      INTEGER,
        run_generation     INTEGER NOT NULL DEFAULT 0,
        runner_token_hash  BLOB,
        runner_pid         INTEGER,
        runner_start_ticks INTEGER,
        runner_acked       INTEGER NOT NULL DEFAULT 0,
        run_summary        TEXT,
        handled_through    INTEGER NOT NULL DEFAULT 0,
        last_seq           INTEGER NOT NULL DEFAULT 0,
        UNIQUE (project, name)
    );
    CREATE INDEX sessions_newest ON sessions (project, created_at DESC, id DESC);
    CREATE INDEX sessions_phase ON sessions (phase);
    CREATE INDEX sessions_token ON sessions (runner_token_hash);
    CREATE TABLE events (
        session_id INTEGER NOT NULL,
        seq        INTEGER NOT NULL,
        ts         INTEGER NOT NULL,
        kind       TEXT NOT NULL,
        body       TEXT NOT NULL,
        PRIMARY KEY (session_id, seq)
    ) WITHOUT ROWID;
    CREATE TABLE secrets (
        project TEXT NOT NULL REFERENCES projects(name) ON DELETE CASCADE,
        key     TEXT NOT NULL,
        value   TEXT NOT NULL,
        PRIMARY KEY (project, key)
    );
    "#,
    // 2: substring search over sessions through a trigram index, kept in step by triggers
    //    that fire only when a searchable column really changes (status writes do not).
    r#"
    CREATE VIRTUAL TABLE sessions_search USING fts5(
        name, display_name, initial_prompt,
        content = 'sessions', content_rowid = 'id', tokenize = 'trigram'
    );
    CREATE TRIGGER sessions_search_insert AFTER INSERT ON sessions BEGIN
        INSERT INTO sessions_search (rowid, name, display_name, initial_prompt)
        VALUES (new.id, new.name, new.display_name, new.initial_prompt);
    END;
    CREATE TRIGGER sessions_search_delete AFTER DELETE ON sessions BEGIN
        INSERT INTO sessions_search (sessions_search, rowid, name, display_name, initial_prompt)
        VALUES ('delete', old.id, old.name, old.display_name, old.initial_prompt);
    END;
    CREATE TRIGGER sessions_search_update AFTER UPDATE OF name, display_name, initial_prompt ON sessions
    WHEN old.name IS NOT new.name OR old.display_name IS NOT new.display_name
        OR old.initial_prompt IS NOT new.initial_prompt
    BEGIN
        INSERT INTO sessions_search (sessions_search, rowid, name, display_name, initial_prompt)
        VALUES ('delete', old.id, old.name, old.display_name, old.initial_prompt);
        INSERT INTO sessions_search (rowid, name, display_name, initial_prompt)
        VALUES (new.id, new.name, new.display_name, new.initial_prompt);
    END;
    INSERT INTO sessions_search (sessions_search) VALUES ('rebuild');
    "#,
    // 3: less write amplification under load. Events move to an append-only rowid table (new
    //    rows land on the last page instead of one page per session) with a small index for
    //    per-session reads, and the counters bumped by every event leave the wide session rows
    //    for a narrow table. Before this, 5 MB/s of events made 129 MB/s of WAL.
    r#"
    CREATE TABLE events_v3 (
        id         INTEGER PRIMARY KEY,
        session_id INTEGER NOT NULL,
        seq        INTEGER NOT NULL,
        ts         INTEGER NOT NULL,
        kind       TEXT NOT NULL,
        body       TEXT NOT NULL
    );
    INSERT INTO events_v3 (session_id, seq, ts, kind, body)
        SELECT session_id, seq, ts, kind, body FROM events ORDER BY session_id, seq;
    DROP TABLE events;
    ALTER TABLE events_v3 RENAME TO events;
    CREATE UNIQUE INDEX events_by_session ON events (session_id, seq);
    CREATE INDEX events_user_messages ON events (session_id, seq) WHERE kind = 'user_message';
    CREATE TABLE session_log (
        session_id      INTEGER PRIMARY KEY REFERENCES sessions(id) ON DELETE CASCADE,
        last_seq        INTEGER NOT NULL DEFAULT 0,
        runner_acked    INTEGER NOT NULL DEFAULT 0,
        handled_through INTEGER NOT NULL DEFAULT 0,
        last_activity   INTEGER
    );
    INSERT INTO session_log (session_id, last_seq, runner_acked, handled_through, last_activity)
        SELECT id, last_seq, runner_acked, handled_through, last_activity FROM sessions;
    ALTER TABLE sessions DROP COLUMN last_seq;
    ALTER TABLE sessions DROP COLUMN runner_acked;
    ALTER TABLE sessions DROP COLUMN handled_through;
    ALTER TABLE sessions DROP COLUMN last_activity;
    "#,
    // 4: event logs apart from session records, keyed by the session's uid: in Kubernetes mode
    //    sessions are custom resources and only the logs live here, and a session created
    //    again under an old name must get a new log. The log keeps what the server alone
    //    knows of a run (its generation, acknowledged runner events, handled messages, last
    //    activity, totals); the local driver keeps its processes in the workspace. Log ids
    //    are never reused (AUTOINCREMENT): the hub keys viewers and runners by them.
    r#"
    CREATE TABLE logs (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        uid             TEXT NOT NULL UNIQUE,
        generation      INTEGER NOT NULL DEFAULT 0,
        last_seq        INTEGER NOT NULL DEFAULT 0,
        runner_acked    INTEGER NOT NULL DEFAULT 0,
        handled_through INTEGER NOT NULL DEFAULT 0,
        last_activity   INTEGER,
        run_summary     TEXT
    );
    INSERT INTO logs (id, uid, generation, last_seq, runner_acked, handled_through, last_activity, run_summary)
        SELECT s.id, COALESCE(json_extract(s.object, '$.metadata.uid'), 'migrated-' || s.id),
               s.run_generation, l.last_seq, l.runner_acked, l.handled_through, l.last_activity,
               s.run_summary
        FROM sessions s JOIN session_log l ON l.session_id = s.id;
    DROP TABLE session_log;
    ALTER TABLE events RENAME COLUMN session_id TO log_id;
    ALTER TABLE sessions ADD COLUMN uid TEXT;
    UPDATE sessions SET uid = (SELECT uid FROM logs WHERE logs.id = sessions.id);
    ALTER TABLE sessions DROP COLUMN runner_pid;
    ALTER TABLE sessions DROP COLUMN runner_start_ticks;
    ALTER TABLE sessions DROP COLUMN run_summary;
    "#,
    // 5: who may use the installation: access keys, one-time login tokens, browser sessions,
    //    each stored as the SHA-256 of its secret.
    r#"
    CREATE TABLE access_keys (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        name         TEXT NOT NULL,
        hash         BLOB NOT NULL UNIQUE,
        prefix       TEXT NOT NULL,
        created_at   INTEGER NOT NULL,
        last_used_at INTEGER
    );
    CREATE TABLE login_tokens (
        hash       BLOB PRIMARY KEY,
        expires_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE web_sessions (
        hash         BLOB PRIMARY KEY,
        created_at   INTEGER NOT NULL,
        last_seen_at INTEGER NOT NULL,
        expires_at   INTEGER NOT NULL
    ) WITHOUT ROWID;
    "#,
    // 6: the turns a log leaves open (user messages without their turn's result), kept as
    //    events are appended, so a page showing only the latest events still knows whether
    //    the agent is busy. Logs of earlier versions start at zero.
    r#"
    ALTER TABLE logs ADD COLUMN open_turns INTEGER NOT NULL DEFAULT 0;
    "#,
    // 7: roles. An access key may open one project with a role (view, edit, admin) and
    //    expire; a key without a project is the owner's, as every key was before. A browser
    //    signed in with a key has that key's access, and ends with it.
    r#"
    ALTER TABLE access_keys ADD COLUMN project TEXT;
    ALTER TABLE access_keys ADD COLUMN role TEXT;
    ALTER TABLE access_keys ADD COLUMN expires_at INTEGER;
    ALTER TABLE access_keys ADD COLUMN created_by TEXT;
    CREATE INDEX access_keys_project ON access_keys (project);
    ALTER TABLE web_sessions ADD COLUMN key_id INTEGER REFERENCES access_keys(id) ON DELETE CASCADE;
    "#,
    // 8: a log's latest MCP server state is read on each session page: found by a small
    //    index, not by scanning the log back to its start.
    r#"
    CREATE INDEX events_mcp_status ON events (log_id, seq) WHERE kind = 'mcp_status';
    "#,
    // 9: likewise a log's latest workflow (its slash commands, on each session page).
    r#"
    CREATE INDEX events_workflow ON events (log_id, seq) WHERE kind = 'workflow';
    "#,
    // 10: a log's turns and the conversations they were in (what a fork continues after):
    //     read without scanning the rest of the log.
    r#"
    CREATE INDEX events_turns ON events (log_id, seq) WHERE kind IN ('agent_started', 'turn_result');
    "#,
    // 11: a log's reports of its work (what an attempt changed, its pull requests), read for
    //     the comparison of attempts without scanning the log.
    r#"
    CREATE INDEX events_work ON events (log_id, seq) WHERE kind IN ('changes', 'pull_request');
    "#,
];

/// Brings the database to the newest schema.
pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let migrations = Migrations::new(MIGRATIONS.iter().map(|sql| M::up(sql)).collect());
    migrations
        .to_latest(conn)
        .map_err(|e| StoreError::Io(format!("migrating the database: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_valid_and_idempotent() {
        let migrations = Migrations::new(MIGRATIONS.iter().map(|sql| M::up(sql)).collect());
        assert!(migrations.validate().is_ok());
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        migrate(&mut conn).unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
    }

    /// A database written before logs left the session rows keeps every session's log,
    /// now under the session's uid.
    #[test]
    fn logs_move_to_their_sessions_uids() {
        let mut conn = Connection::open_in_memory().unwrap();
        let migrations = Migrations::new(MIGRATIONS.iter().map(|sql| M::up(sql)).collect());
        migrations.to_version(&mut conn, 3).unwrap();
        conn.execute_batch(
            r#"
            INSERT INTO projects (name, created_at) VALUES ('p', 0);
            INSERT INTO sessions (id, project, name, created_at, object, run_generation, run_summary)
                VALUES (7, 'p', 's', 0, '{"metadata":{"uid":"u-7"}}', 2, '{"turns":3}'),
                       (8, 'p', 't', 0, '{"metadata":{}}', 0, NULL);
            INSERT INTO session_log (session_id, last_seq, runner_acked, handled_through, last_activity)
                VALUES (7, 2, 5, 1, 1000), (8, 0, 0, 0, NULL);
            INSERT INTO events (session_id, seq, ts, kind, body)
                VALUES (7, 1, 1, 'user_message', '{}'), (7, 2, 2, 'log', '{}');
            "#,
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let log: (i64, i64, i64, i64, Option<String>) = conn
            .query_row(
                "SELECT id, generation, last_seq, runner_acked, run_summary FROM logs WHERE uid = 'u-7'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .unwrap();
        assert_eq!(log, (7, 2, 2, 5, Some(r#"{"turns":3}"#.into())));
        let events: i64 = conn
            .query_row("SELECT COUNT(*) FROM events WHERE log_id = 7", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(events, 2);
        // A session that had no uid gets one, the same as its log's.
        let uid: String = conn
            .query_row("SELECT uid FROM sessions WHERE id = 8", [], |r| r.get(0))
            .unwrap();
        let log_uid: String = conn
            .query_row("SELECT uid FROM logs WHERE id = 8", [], |r| r.get(0))
            .unwrap();
        assert_eq!(uid, log_uid);
    }
}
