//! Where `ambient login` keeps the server's URL and the access key: one JSON file, readable
//! by its owner only (0600, in a 0700 directory), `$AMBIENT_CONFIG` or
//! `$XDG_CONFIG_HOME/ambient/config.json` (default `~/.config/ambient/config.json`).
//! `AMBIENT_URL` and `AMBIENT_KEY` override it (CI).

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::client::Error;

/// A server and the key to it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    /// The server's URL (`http://127.0.0.1:3000`).
    pub url: String,
    /// An access key.
    pub key: String,
}

/// The configuration file's path.
pub fn path() -> Result<PathBuf, Error> {
    if let Some(p) = std::env::var_os("AMBIENT_CONFIG").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|p| !p.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(|h| PathBuf::from(h).join(".config"))
            .ok_or_else(|| {
                Error::Usage("neither HOME nor XDG_CONFIG_HOME is set; set AMBIENT_CONFIG".into())
            })?,
    };
    Ok(base.join("ambient").join("config.json"))
}

/// The profile in use: the file's, with `AMBIENT_URL` and `AMBIENT_KEY` over it.
pub fn load() -> Result<Profile, Error> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let stored = read()?;
    let url = env("AMBIENT_URL").or_else(|| stored.as_ref().map(|p| p.url.clone()));
    let key = env("AMBIENT_KEY").or_else(|| stored.as_ref().map(|p| p.key.clone()));
    match (url, key) {
        (Some(url), Some(key)) => Ok(Profile { url, key }),
        _ => Err(Error::NotSignedIn),
    }
}

fn read() -> Result<Option<Profile>, Error> {
    let path = path()?;
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::Local(format!("{}: {e}", path.display()))),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| Error::Local(format!("{} is not a configuration: {e}", path.display())))
}

/// Saves `profile`, readable by its owner only, replacing the file whole.
pub fn save(profile: &Profile) -> Result<PathBuf, Error> {
    let path = path()?;
    let io = |e: std::io::Error| Error::Local(format!("{}: {e}", path.display()));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
    }
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    let text = serde_json::to_string_pretty(profile).map_err(|e| Error::Local(e.to_string()))?;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)?;
    Ok(path)
}

/// Forgets the stored profile; whether there was one.
pub fn remove() -> Result<bool, Error> {
    let path = path()?;
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::Local(format!("{}: {e}", path.display()))),
    }
}
