//! Who may use a local installation, and how they prove it.
//!
//! - The **install secret**: created at the first start in the data directory (mode 0600),
//!   it is the owner's access key (`Authorization: Bearer <secret>`).
//! - **Access keys** made in the UI or the API: named, shown once at creation, stored as
//!   their SHA-256 only, with their last use; revoked at once. An owner's key opens every
//!   project; a project key opens one project with a role, and may expire.
//! - **Login links**: one-time tokens printed by the server (`/login?token=...`), valid for
//!   a day; opening one gives the browser a session.
//! - **Browser sessions**: a random id in an `HttpOnly`, `SameSite=Strict` cookie, stored as
//!   its SHA-256, valid for 30 days after its last use. One signed in with a project key
//!   has that key's access, and ends when the key is revoked or expires.
//!
//! Every secret is 256 random bits, so a plain SHA-256 of it is a safe thing to store.

use std::path::Path;
use std::sync::Arc;

use rand::RngCore;
use rusqlite::{OptionalExtension, params};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::auth::Role;
use crate::db::{Db, StoreError, now_ms};

/// File in the data directory holding the install secret.
pub const INSTALL_SECRET_FILE: &str = "install-secret";
/// Prefix of access keys (the install secret included).
pub const KEY_PREFIX: &str = "ak_";
/// How long a login link stays valid.
pub const LOGIN_LINK_TTL_MS: i64 = 24 * 3600 * 1000;
/// How long a browser session lasts after its last use.
pub const SESSION_TTL_MS: i64 = 30 * 24 * 3600 * 1000;
/// A session's last use is recorded at most this often.
const TOUCH_EVERY_MS: i64 = 60 * 1000;
/// Most access keys.
pub const MAX_KEYS: usize = 100;

/// A new secret: 256 random bits, hex, after `prefix`.
pub fn new_secret(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", hex::encode(bytes))
}

fn hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// An access key as listed (never its value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// Its id.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// Its first characters, to recognise it.
    pub prefix: String,
    /// When it was made (ms since the epoch).
    pub created_ms: i64,
    /// When it was last used, if ever.
    pub last_used_ms: Option<i64>,
    /// The project it opens, with its role; none for the owner's keys.
    pub scope: Option<(String, Role)>,
    /// When it stops working, if ever.
    pub expires_ms: Option<i64>,
    /// Who made it.
    pub created_by: Option<String>,
}

/// A key to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKey {
    /// Its name.
    pub name: String,
    /// The project it opens, with its role; none for an owner's key.
    pub scope: Option<(String, Role)>,
    /// When it stops working, if ever.
    pub expires_ms: Option<i64>,
    /// Who makes it.
    pub created_by: String,
}

/// What a request's credentials turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proof {
    /// The install secret.
    InstallSecret,
    /// An access key.
    Key {
        /// Its id.
        id: i64,
        /// Its name.
        name: String,
        /// The project it opens, with its role; none for an owner's key.
        scope: Option<(String, Role)>,
        /// When it stops working (ms since the epoch), if ever.
        expires_ms: Option<i64>,
    },
    /// A browser session of the owner's.
    Session,
}

const KEY_COLUMNS: &str =
    "id, name, prefix, created_at, last_used_at, project, role, expires_at, created_by";

fn key_info(r: &rusqlite::Row<'_>) -> rusqlite::Result<KeyInfo> {
    key_info_at(r, 0)
}

/// A key read from [`KEY_COLUMNS`] starting at column `at` of a row.
fn key_info_at(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<KeyInfo> {
    Ok(KeyInfo {
        id: r.get(at)?,
        name: r.get(at + 1)?,
        prefix: r.get(at + 2)?,
        created_ms: r.get(at + 3)?,
        last_used_ms: r.get(at + 4)?,
        scope: scope(r.get(at + 5)?, r.get(at + 6)?),
        expires_ms: r.get(at + 7)?,
        created_by: r.get(at + 8)?,
    })
}

/// A key's project and role as stored; a project with a role unknown to this version opens
/// nothing rather than too much (view).
fn scope(project: Option<String>, role: Option<String>) -> Option<(String, Role)> {
    project.map(|p| {
        let role = role.and_then(|r| r.parse().ok()).unwrap_or(Role::View);
        (p, role)
    })
}

/// The identities of a local installation; cheap to clone.
#[derive(Clone)]
pub struct Identities {
    db: Db,
    install_secret: Arc<String>,
}

impl Identities {
    /// Reads the install secret of `data_dir`, creating it (0600) at the first start.
    pub fn open(db: Db, data_dir: &Path) -> Result<Identities, StoreError> {
        let path = data_dir.join(INSTALL_SECRET_FILE);
        let secret = match std::fs::read_to_string(&path) {
            Ok(s) if s.trim().starts_with(KEY_PREFIX) => s.trim().to_owned(),
            Ok(_) => {
                return Err(StoreError::Corrupt(format!(
                    "{} does not hold an access key",
                    path.display()
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let secret = new_secret(KEY_PREFIX);
                match write_private(&path, &secret) {
                    Ok(()) => secret,
                    // Another process (a `--login-url` beside the server) made it first.
                    Err(_) if path.exists() => std::fs::read_to_string(&path)
                        .map_err(|e| StoreError::Io(format!("{}: {e}", path.display())))?
                        .trim()
                        .to_owned(),
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(StoreError::Io(format!("{}: {e}", path.display()))),
        };
        Ok(Identities {
            db,
            install_secret: Arc::new(secret),
        })
    }

    /// Identities whose install secret is given (Kubernetes mode: from a Secret, through
    /// `AMBIENT_INSTALL_SECRET`) instead of kept in the data directory.
    pub fn with_secret(db: Db, secret: &str) -> Result<Identities, StoreError> {
        let secret = secret.trim();
        let random = secret.strip_prefix(KEY_PREFIX).unwrap_or_default();
        if random.len() < 32 || !random.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(StoreError::Corrupt(format!(
                "the install secret must be an access key: {KEY_PREFIX} then at least 32 letters or digits \
                 (for example {KEY_PREFIX}$(openssl rand -hex 32))"
            )));
        }
        Ok(Identities {
            db,
            install_secret: Arc::new(secret.to_owned()),
        })
    }

    /// The install secret (the owner's key).
    pub fn install_secret(&self) -> &str {
        &self.install_secret
    }

    /// What a bearer token proves: the install secret or an access key (whose use is
    /// recorded); `None` for anything else.
    pub async fn check_key(&self, token: &str) -> Result<Option<Proof>, StoreError> {
        if !token.starts_with(KEY_PREFIX) {
            return Ok(None);
        }
        if bool::from(token.as_bytes().ct_eq(self.install_secret.as_bytes())) {
            return Ok(Some(Proof::InstallSecret));
        }
        let h = hash(token);
        // A read on every request; the use is written at most every TOUCH_EVERY_MS, so API
        // clients do not queue behind the single writer. An expired key is no key.
        let found: Option<KeyInfo> = self
            .db
            .read(move |c| {
                Ok(c.query_row(
                    &format!(
                        "SELECT {KEY_COLUMNS} FROM access_keys WHERE hash = ?1 \
                         AND (expires_at IS NULL OR expires_at > ?2)"
                    ),
                    params![h, now_ms()],
                    key_info,
                )
                .optional()?)
            })
            .await?;
        let Some(key) = found else {
            return Ok(None);
        };
        self.touch_key(&key).await?;
        Ok(Some(Proof::Key {
            id: key.id,
            name: key.name,
            scope: key.scope,
            expires_ms: key.expires_ms,
        }))
    }

    /// Whether the access key `id` still works (not revoked, not expired): one read, for a
    /// connection that outlives the request that proved the key.
    pub async fn key_is_valid(&self, id: i64) -> Result<bool, StoreError> {
        self.db
            .read(move |c| {
                let found: Option<i64> = c
                    .query_row(
                        "SELECT id FROM access_keys WHERE id = ?1 \
                         AND (expires_at IS NULL OR expires_at > ?2)",
                        params![id, now_ms()],
                        |r| r.get(0),
                    )
                    .optional()?;
                Ok(found.is_some())
            })
            .await
    }

    /// Makes an access key; returns it (shown this once) and how it is listed. At most
    /// [`MAX_KEYS`] keys exist for the owner, and as many for each project.
    pub async fn create_key(&self, new: NewKey) -> Result<(String, KeyInfo), StoreError> {
        let key = new_secret(KEY_PREFIX);
        let prefix: String = key.chars().take(KEY_PREFIX.len() + 6).collect();
        let h = hash(&key);
        let info = self
            .db
            .write(move |tx, _| {
                let project = new.scope.as_ref().map(|(p, _)| p.clone());
                let count: i64 = tx.query_row(
                    "SELECT COUNT(*) FROM access_keys WHERE project IS ?1",
                    [&project],
                    |r| r.get(0),
                )?;
                if count as usize >= MAX_KEYS {
                    return Err(StoreError::Conflict(format!(
                        "there are {MAX_KEYS} access keys already; revoke one first"
                    )));
                }
                let created = now_ms();
                let role = new.scope.as_ref().map(|(_, r)| r.as_str());
                let id: i64 = tx.query_row(
                    "INSERT INTO access_keys (name, hash, prefix, created_at, project, role, expires_at, created_by) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) RETURNING id",
                    params![new.name, h, prefix, created, project, role, new.expires_ms, new.created_by],
                    |r| r.get(0),
                )?;
                Ok(KeyInfo {
                    id,
                    name: new.name,
                    prefix,
                    created_ms: created,
                    last_used_ms: None,
                    scope: new.scope,
                    expires_ms: new.expires_ms,
                    created_by: Some(new.created_by),
                })
            })
            .await?;
        Ok((key, info))
    }

    /// The access keys of `project` (none: the owner's keys), newest first; expired ones
    /// are listed until revoked, to show that they expired.
    pub async fn keys(&self, project: Option<&str>) -> Result<Vec<KeyInfo>, StoreError> {
        let project = project.map(str::to_owned);
        self.db
            .read(move |c| {
                let mut stmt = c.prepare(&format!(
                    "SELECT {KEY_COLUMNS} FROM access_keys WHERE project IS ?1 ORDER BY id DESC"
                ))?;
                let rows = stmt
                    .query_map([project], key_info)?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(rows)
            })
            .await
    }

    /// Revokes the access key `id` of `project` (none: an owner's key): it is refused from
    /// now on, and browsers signed in with it are signed out.
    pub async fn revoke_key(&self, project: Option<&str>, id: i64) -> Result<(), StoreError> {
        let project = project.map(str::to_owned);
        self.db
            .write(move |tx, _| {
                let n = tx.execute(
                    "DELETE FROM access_keys WHERE id = ?1 AND project IS ?2",
                    params![id, project],
                )?;
                if n == 0 {
                    return Err(StoreError::NotFound(format!("access key {id}")));
                }
                Ok(())
            })
            .await
    }

    /// Revokes every key of a project (it is deleted; a project made again by the same
    /// name must not open to them).
    pub async fn revoke_project_keys(&self, project: &str) -> Result<(), StoreError> {
        let project = project.to_owned();
        self.db
            .write(move |tx, _| {
                tx.execute("DELETE FROM access_keys WHERE project = ?1", [project])?;
                Ok(())
            })
            .await
    }

    /// A new one-time login token, valid for [`LOGIN_LINK_TTL_MS`].
    pub async fn create_login_token(&self) -> Result<String, StoreError> {
        let token = new_secret("lt_");
        let h = hash(&token);
        self.db
            .write(move |tx, _| {
                let now = now_ms();
                tx.execute("DELETE FROM login_tokens WHERE expires_at < ?1", [now])?;
                tx.execute(
                    "INSERT INTO login_tokens (hash, expires_at) VALUES (?1, ?2)",
                    params![h, now + LOGIN_LINK_TTL_MS],
                )?;
                Ok(())
            })
            .await?;
        Ok(token)
    }

    /// Uses up a login token; whether it was valid.
    pub async fn redeem_login_token(&self, token: &str) -> Result<bool, StoreError> {
        let h = hash(token);
        self.db
            .write(move |tx, _| {
                let n = tx.execute(
                    "DELETE FROM login_tokens WHERE hash = ?1 AND expires_at >= ?2",
                    params![h, now_ms()],
                )?;
                Ok(n == 1)
            })
            .await
    }

    /// Starts a browser session, the owner's or (with `key`) with that key's access;
    /// returns the cookie's value.
    pub async fn create_session(&self, key: Option<i64>) -> Result<String, StoreError> {
        let id = new_secret("ws_");
        let h = hash(&id);
        self.db
            .write(move |tx, _| {
                let now = now_ms();
                tx.execute("DELETE FROM web_sessions WHERE expires_at < ?1", [now])?;
                tx.execute(
                    "INSERT INTO web_sessions (hash, created_at, last_seen_at, expires_at, key_id) VALUES (?1, ?2, ?2, ?3, ?4)",
                    params![h, now, now + SESSION_TTL_MS, key],
                )?;
                Ok(())
            })
            .await?;
        Ok(id)
    }

    /// What a session cookie's value proves, if it is a live session: the owner's session,
    /// or the key it was signed in with (while that key works). Its life is extended.
    pub async fn check_session(&self, id: &str) -> Result<Option<Proof>, StoreError> {
        let h = hash(id);
        let h2 = h.clone();
        type Row = (i64, Option<i64>, Option<KeyInfo>);
        let found: Option<Row> = self
            .db
            .read(move |c| {
                Ok(c.query_row(
                    &format!(
                        "SELECT s.last_seen_at, s.key_id, {} FROM web_sessions s \
                         LEFT JOIN access_keys k ON k.id = s.key_id \
                         WHERE s.hash = ?1 AND s.expires_at >= ?2",
                        KEY_COLUMNS
                            .split(", ")
                            .map(|c| format!("k.{c}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    params![h, now_ms()],
                    |r| {
                        // The key's columns follow the session's (none: the owner's session).
                        let key = match r.get::<_, Option<i64>>(2)? {
                            Some(_) => Some(key_info_at(r, 2)?),
                            None => None,
                        };
                        Ok((r.get(0)?, r.get(1)?, key))
                    },
                )
                .optional()?)
            })
            .await?;
        let Some((seen, key_id, key)) = found else {
            return Ok(None);
        };
        // A browser's use of its key is the key's use.
        if let Some(k) = &key {
            self.touch_key(k).await?;
        }
        let proof = match (key_id, key) {
            (None, _) => Proof::Session,
            (Some(_), Some(k)) if k.expires_ms.is_none_or(|t| t > now_ms()) => Proof::Key {
                id: k.id,
                name: k.name,
                scope: k.scope,
                expires_ms: k.expires_ms,
            },
            // Its key expired (a revoked key took its sessions with it).
            (Some(_), _) => return Ok(None),
        };
        if now_ms() - seen > TOUCH_EVERY_MS {
            self.db
                .write(move |tx, _| {
                    let now = now_ms();
                    tx.execute(
                        "UPDATE web_sessions SET last_seen_at = ?2, expires_at = ?3 WHERE hash = ?1",
                        params![h2, now, now + SESSION_TTL_MS],
                    )?;
                    Ok(())
                })
                .await?;
        }
        Ok(Some(proof))
    }

    /// Records a key's use (at most every [`TOUCH_EVERY_MS`]).
    async fn touch_key(&self, key: &KeyInfo) -> Result<(), StoreError> {
        if key
            .last_used_ms
            .is_some_and(|t| now_ms() - t <= TOUCH_EVERY_MS)
        {
            return Ok(());
        }
        let id = key.id;
        self.db
            .write(move |tx, _| {
                tx.execute(
                    "UPDATE access_keys SET last_used_at = ?2 WHERE id = ?1",
                    params![id, now_ms()],
                )?;
                Ok(())
            })
            .await
    }

    /// Ends a browser session.
    pub async fn end_session(&self, id: &str) -> Result<(), StoreError> {
        let h = hash(id);
        self.db
            .write(move |tx, _| {
                tx.execute("DELETE FROM web_sessions WHERE hash = ?1", [h])?;
                Ok(())
            })
            .await
    }
}

/// Writes a new file readable by its owner only, whole or not at all (a reader never sees it
/// half written), and never over an existing one.
fn write_private(path: &Path, text: &str) -> Result<(), StoreError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |e: std::io::Error| StoreError::Io(format!("{}: {e}", path.display()));
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    linked.map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_given_install_secret_is_used_and_a_weak_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open_in(dir.path()).unwrap();
        let given = format!("{KEY_PREFIX}{}", "a1".repeat(16));
        let ids = Identities::with_secret(db.clone(), &given).unwrap();
        assert_eq!(
            ids.check_key(&given).await.unwrap(),
            Some(Proof::InstallSecret)
        );
        assert!(
            !dir.path().join(INSTALL_SECRET_FILE).exists(),
            "nothing written"
        );
        for weak in [
            "",
            "ak_short",
            "password-password-password-password-1",
            "ak_!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!",
        ] {
            assert!(Identities::with_secret(db.clone(), weak).is_err(), "{weak}");
        }
    }

    #[tokio::test]
    async fn keys_login_links_and_sessions() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open_in(dir.path()).unwrap();
        let ids = Identities::open(db.clone(), dir.path()).unwrap();
        let secret = ids.install_secret().to_owned();
        // The secret survives a restart, readable by its owner only.
        let again = Identities::open(db, dir.path()).unwrap();
        assert_eq!(again.install_secret(), secret);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(INSTALL_SECRET_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            ids.check_key(&secret).await.unwrap(),
            Some(Proof::InstallSecret)
        );

        let owners = |name: &str| NewKey {
            name: name.into(),
            scope: None,
            expires_ms: None,
            created_by: "me".into(),
        };
        let (key, info) = ids.create_key(owners("ci")).await.unwrap();
        assert!(key.starts_with(&info.prefix) && info.last_used_ms.is_none());
        assert!(
            matches!(ids.check_key(&key).await.unwrap(), Some(Proof::Key { ref name, scope: None, .. }) if name == "ci")
        );
        assert!(ids.keys(None).await.unwrap()[0].last_used_ms.is_some());
        assert!(ids.revoke_key(Some("p"), info.id).await.is_err(), "not p's");
        ids.revoke_key(None, info.id).await.unwrap();
        assert_eq!(ids.check_key(&key).await.unwrap(), None);
        assert_eq!(ids.check_key("ak_guess").await.unwrap(), None);

        // A project key: its scope, its expiry; listed with its project only.
        let viewer = NewKey {
            scope: Some(("p".into(), Role::View)),
            ..owners("viewer")
        };
        let (view_key, view_info) = ids.create_key(viewer.clone()).await.unwrap();
        assert!(matches!(
            ids.check_key(&view_key).await.unwrap(),
            Some(Proof::Key { scope: Some((ref p, Role::View)), .. }) if p == "p"
        ));
        assert_eq!(ids.keys(Some("p")).await.unwrap().len(), 1);
        assert!(ids.keys(None).await.unwrap().is_empty());
        let (expired, expired_info) = ids
            .create_key(NewKey {
                expires_ms: Some(now_ms() - 1),
                ..viewer
            })
            .await
            .unwrap();
        assert_eq!(ids.check_key(&expired).await.unwrap(), None, "expired");
        assert!(ids.key_is_valid(view_info.id).await.unwrap());
        assert!(!ids.key_is_valid(expired_info.id).await.unwrap(), "expired");

        // A browser signed in with the key has its access, and loses it with the key.
        let web = ids.create_session(Some(view_info.id)).await.unwrap();
        assert!(matches!(
            ids.check_session(&web).await.unwrap(),
            Some(Proof::Key {
                scope: Some((_, Role::View)),
                ..
            })
        ));
        ids.revoke_project_keys("p").await.unwrap();
        assert_eq!(ids.check_key(&view_key).await.unwrap(), None);
        assert!(!ids.key_is_valid(view_info.id).await.unwrap(), "revoked");
        assert_eq!(ids.check_session(&web).await.unwrap(), None);

        let token = ids.create_login_token().await.unwrap();
        assert!(ids.redeem_login_token(&token).await.unwrap());
        assert!(
            !ids.redeem_login_token(&token).await.unwrap(),
            "one time only"
        );

        // A browser's use of a key is the key's use.
        let (_, fresh) = ids.create_key(owners("browser")).await.unwrap();
        let web = ids.create_session(Some(fresh.id)).await.unwrap();
        assert!(ids.check_session(&web).await.unwrap().is_some());
        let listed = ids.keys(None).await.unwrap();
        let used = listed.iter().find(|k| k.id == fresh.id).unwrap();
        assert!(used.last_used_ms.is_some(), "{used:?}");

        let session = ids.create_session(None).await.unwrap();
        assert_eq!(
            ids.check_session(&session).await.unwrap(),
            Some(Proof::Session)
        );
        ids.end_session(&session).await.unwrap();
        assert_eq!(ids.check_session(&session).await.unwrap(), None);
    }
}
