//! The UI's assets: served from their Zopfli `.gz` when it exists, compressed on the fly
//! otherwise, and never from a `.gz` older than its asset.

use std::io::Read;

use crate::common::{Options, TestServer};

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

async fn get_gzip(s: &TestServer, path: &str) -> (Option<String>, Vec<u8>) {
    let res = s
        .http
        .get(s.url(path))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{path}");
    let encoding = res
        .headers()
        .get("content-encoding")
        .map(|v| v.to_str().unwrap().to_owned());
    (encoding, res.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn precompressed_assets_are_served_as_they_are() {
    let data = tempfile::tempdir().unwrap();
    let site = tempfile::tempdir().unwrap();
    let pkg = site.path().join("pkg");
    std::fs::create_dir(&pkg).unwrap();
    let wasm = b"\0asm wasm bytes ".repeat(4000);
    let js = b"export function hydrate() {} ".repeat(500);
    std::fs::write(pkg.join("ambient.wasm"), &wasm).unwrap();
    std::fs::write(pkg.join("ambient.js"), &js).unwrap();
    let wasm_gz_path = pkg.join("ambient.wasm.gz");
    server::assets::precompress(&pkg).unwrap();
    // The JS is rebuilt after its .gz was written: that .gz is stale and must not be served.
    std::fs::write(pkg.join("ambient.js.gz"), b"stale").unwrap();
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(60);
    std::fs::File::options()
        .write(true)
        .open(pkg.join("ambient.js"))
        .unwrap()
        .set_modified(later)
        .unwrap();

    let mut opts = Options::new(data.path());
    opts.site_root = Some(site.path().to_owned());
    let s = TestServer::start(opts).await;

    let (encoding, body) = get_gzip(&s, "/pkg/ambient.wasm").await;
    assert_eq!(encoding.as_deref(), Some("gzip"));
    assert_eq!(
        body,
        std::fs::read(&wasm_gz_path).unwrap(),
        "the file as written"
    );
    assert_eq!(gunzip(&body), wasm);

    // The stale .gz was removed at start-up; the JS is compressed on the fly instead.
    assert!(!pkg.join("ambient.js.gz").exists());
    let (encoding, body) = get_gzip(&s, "/pkg/ambient.js").await;
    assert_eq!(encoding.as_deref(), Some("gzip"));
    assert_eq!(gunzip(&body), js);

    // Without gzip, the plain file.
    let res = s.http.get(s.url("/pkg/ambient.wasm")).send().await.unwrap();
    assert!(res.headers().get("content-encoding").is_none());
    assert_eq!(res.bytes().await.unwrap().to_vec(), wasm);
}

#[test]
fn precompress_assets_needs_no_runner_or_data_directory() {
    // What `make` runs right after building the site, before the runner exists.
    let dir = tempfile::tempdir().unwrap();
    let pkg = dir.path().join("target/site/pkg");
    std::fs::create_dir_all(&pkg).unwrap();
    std::fs::write(pkg.join("ambient.css"), "body { color: red } ".repeat(100)).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_server"))
        .arg("--precompress-assets")
        .current_dir(dir.path())
        .env("AMBIENT_RUNNER_BIN", dir.path().join("no-such-runner"))
        .env("AMBIENT_DATA_DIR", dir.path().join("no/such/dir"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let gz = std::fs::read(pkg.join("ambient.css.gz")).unwrap();
    assert_eq!(gunzip(&gz), "body { color: red } ".repeat(100).into_bytes());
}
