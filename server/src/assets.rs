//! The UI's static assets (`/pkg`: JS, WASM, CSS), served precompressed.
//!
//! `server --precompress-assets` (run by the Makefile after each release build) writes a
//! Zopfli-compressed `<file>.gz` next to each asset: the same gzip format browsers accept,
//! about 5% smaller than `gzip -9`, computed once instead of on every request. `/pkg` is served
//! with those files when the browser accepts gzip; without them (a development build) the
//! compression layer compresses on the fly. A `.gz` older than its asset is stale and is
//! deleted at start-up, so a rebuilt asset is never shadowed by an old one.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Extensions of the assets worth compressing.
const COMPRESSIBLE: &[&str] = &["js", "wasm", "css"];

fn is_asset(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| COMPRESSIBLE.contains(&e))
}

fn gz_of(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".gz");
    PathBuf::from(name)
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// One compressed asset: its path, its size and its compressed size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compressed {
    /// The asset.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// Size of its `.gz`.
    pub gz_size: u64,
}

/// Writes `<asset>.gz` (Zopfli, gzip format) for every asset of `dir` that has none or an
/// older one.
pub fn precompress(dir: &Path) -> std::io::Result<Vec<Compressed>> {
    let mut done = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if !path.is_file() || !is_asset(&path) {
            continue;
        }
        let gz = gz_of(&path);
        if modified(&gz) < modified(&path) {
            let data = std::fs::read(&path)?;
            let mut out = Vec::with_capacity(data.len() / 3);
            zopfli::compress(
                zopfli::Options::default(),
                zopfli::Format::Gzip,
                &data[..],
                &mut out,
            )?;
            // Written aside, then renamed: a server never serves half a file.
            let tmp = gz.with_extension(format!("gz.tmp{}", std::process::id()));
            std::fs::write(&tmp, &out)?;
            std::fs::rename(&tmp, &gz)?;
        }
        done.push(Compressed {
            size: std::fs::metadata(&path)?.len(),
            gz_size: std::fs::metadata(&gz)?.len(),
            path,
        });
    }
    done.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(done)
}

/// Deletes every `.gz` of `dir` whose asset is gone or newer; returns how many.
pub fn remove_stale(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for path in entries.flatten().map(|e| e.path()) {
        if path.extension().is_none_or(|e| e != "gz") {
            continue;
        }
        let asset = path.with_extension("");
        let stale = match (modified(&asset), modified(&path)) {
            (Some(asset), Some(gz)) => gz < asset,
            _ => true,
        };
        if stale && std::fs::remove_file(&path).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn compresses_assets_only_and_only_when_needed() {
        let dir = tempfile::tempdir().unwrap();
        let wasm = dir.path().join("app.wasm");
        let body = b"(module) ".repeat(2000);
        std::fs::write(&wasm, &body).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not an asset").unwrap();

        let done = precompress(dir.path()).unwrap();
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].size, body.len() as u64);
        assert!(done[0].gz_size < done[0].size / 10, "{done:?}");
        let gz = std::fs::read(dir.path().join("app.wasm.gz")).unwrap();
        assert_eq!(gunzip(&gz), body);
        assert!(!dir.path().join("notes.txt.gz").exists());

        // Up to date: left alone (same bytes, same time).
        let before = modified(&dir.path().join("app.wasm.gz"));
        precompress(dir.path()).unwrap();
        assert_eq!(modified(&dir.path().join("app.wasm.gz")), before);
    }

    #[test]
    fn stale_or_orphan_gz_files_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let js = dir.path().join("app.js");
        std::fs::write(&js, "old").unwrap();
        precompress(dir.path()).unwrap();
        std::fs::write(dir.path().join("gone.css.gz"), "orphan").unwrap();
        assert_eq!(remove_stale(dir.path()), 1, "only the orphan");

        // The asset is rebuilt after its .gz was written: the .gz must not be served.
        let later = SystemTime::now() + std::time::Duration::from_secs(60);
        std::fs::File::options()
            .write(true)
            .open(&js)
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert_eq!(remove_stale(dir.path()), 1);
        assert!(!dir.path().join("app.js.gz").exists());
    }
}
