//! Writes the platform's CRDs to `deploy/crds/` (or the directory given as first argument).

use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/crds"));
    std::fs::create_dir_all(&dir)?;
    for (file, crd) in operator::crd::crds() {
        let path = dir.join(file);
        std::fs::write(&path, operator::crd::to_yaml(&crd))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
