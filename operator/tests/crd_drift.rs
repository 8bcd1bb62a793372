//! The committed CRD YAML must be what the Rust types generate.

use std::path::Path;

#[test]
fn committed_crds_match_the_rust_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/crds");
    for (file, crd) in operator::crd::crds() {
        let path = dir.join(file);
        let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; run `cargo run -p operator --bin crdgen`",
                path.display()
            )
        });
        assert!(
            committed == operator::crd::to_yaml(&crd),
            "{} drifted from the Rust types; run `cargo run -p operator --bin crdgen` and commit",
            path.display()
        );
    }
}

#[test]
fn session_crd_has_printer_columns_and_status() {
    let (_, crd) = operator::crd::crds().remove(0);
    let version = &crd.spec.versions[0];
    let columns: Vec<_> = version
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        columns,
        [
            "Display", "Phase", "Model", "Reason", "Age", "Cost", "Started"
        ]
    );
    assert!(
        version
            .subresources
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .is_some()
    );
    assert_eq!(
        crd.spec.names.short_names.as_deref(),
        Some(&["as".to_owned()][..])
    );
    assert_eq!(crd.spec.scope, "Namespaced");
}
