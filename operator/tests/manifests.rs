//! The committed manifests: the CRD YAML must be what the Rust types generate, and each
//! overlay of `deploy/` must be wired so that the runner pods the operator builds reach the
//! server (the Service the operator names, the port it targets, an address the server listens
//! on that is not its loopback, and any NetworkPolicy on the server letting runner pods in,
//! and only them where the port is the runners' own).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

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

/// The objects `kubectl kustomize` makes of an overlay, as JSON.
fn render(overlay: &str) -> Vec<Value> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/overlays")
        .join(overlay);
    let out = std::process::Command::new("kubectl")
        .arg("kustomize")
        .arg(&dir)
        .output()
        .expect("kubectl (installed by `make setup-k8s`) builds the overlays");
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| serde::Deserialize::deserialize(doc).unwrap())
        .collect()
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn env<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
        .and_then(|e| e["value"].as_str())
}

/// Whether every label `selector` asks for is among `labels`.
fn selects(selector: &Value, labels: &BTreeMap<String, String>) -> bool {
    selector["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(k, v)| labels.get(k).map(String::as_str) == v.as_str())
}

/// The labels of the pods the operator makes for a session in `namespace`.
fn runner_pod_labels(namespace: &str) -> BTreeMap<String, String> {
    let mut session = model::AgenticSession::new("s", model::AgenticSessionSpec::default());
    session.metadata.namespace = Some(namespace.into());
    session.metadata.uid = Some("uid-1".into());
    let run = operator::cluster::build::Run {
        generation: 1,
        resume: false,
        handled_through: 0,
        project_mcp_servers: None,
    };
    let job = operator::cluster::build::desired_job(&session, &run, &Default::default());
    job.spec
        .and_then(|s| s.template.metadata)
        .and_then(|m| m.labels)
        .unwrap_or_default()
}

#[test]
fn in_every_overlay_runner_pods_reach_the_servers_runner_endpoint() {
    let project = "team-a";
    let project_labels = BTreeMap::from([
        ("kubernetes.io/metadata.name".to_owned(), project.to_owned()),
        (
            model::annotations::MANAGED_LABEL.to_owned(),
            "true".to_owned(),
        ),
    ]);
    let runner_labels = runner_pod_labels(project);
    let another_pod = BTreeMap::from([("app".to_owned(), "anything".to_owned())]);
    for overlay in ["dev", "openshift"] {
        let objects = render(overlay);
        let operator = &find(&objects, "Deployment", "ambient-operator")["spec"]["template"]["spec"]
            ["containers"][0];
        let url = env(operator, "AMBIENT_SERVER_API_URL").expect("the operator names the server");
        // http://<service>.<namespace>.svc:<port>/api
        let authority = url
            .strip_prefix("http://")
            .and_then(|rest| rest.strip_suffix("/api"))
            .unwrap_or_else(|| panic!("{overlay}: {url} is not http://<service>:<port>/api"));
        let (host, port) = authority.rsplit_once(':').expect("a port");
        let port: u16 = port.parse().unwrap();
        let (service, namespace) = host
            .strip_suffix(".svc")
            .and_then(|h| h.split_once('.'))
            .unwrap_or_else(|| panic!("{overlay}: {host} is not a Service name"));
        let service = find(&objects, "Service", service);
        assert_eq!(service["metadata"]["namespace"], namespace, "{overlay}");
        let target = service["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["port"] == port)
            .unwrap_or_else(|| panic!("{overlay}: the Service has no port {port}"))["targetPort"]
            .clone();
        let server = find(&objects, "Deployment", "ambient-server");
        let server_labels: BTreeMap<String, String> =
            serde_json::from_value(server["spec"]["template"]["metadata"]["labels"].clone())
                .unwrap();
        let selector = &service["spec"]["selector"];
        assert!(
            selects(
                &serde_json::json!({"matchLabels": selector}),
                &server_labels
            ),
            "{overlay}: the Service selects the server's pods"
        );
        let container = &server["spec"]["template"]["spec"]["containers"][0];
        let container_port = container["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == target || p["containerPort"] == target)
            .unwrap_or_else(|| panic!("{overlay}: no container port {target}"));
        let listening = container_port["containerPort"].as_u64().unwrap();
        let addr = ["AMBIENT_RUNNER_ADDR", "AMBIENT_ADDR"]
            .into_iter()
            .filter_map(|k| env(container, k))
            .map(|a| a.parse::<std::net::SocketAddr>().unwrap())
            .find(|a| u64::from(a.port()) == listening)
            .unwrap_or_else(|| panic!("{overlay}: the server listens on no port {listening}"));
        assert!(
            addr.ip().is_unspecified(),
            "{overlay}: runner pods cannot reach {addr} (the pod's own loopback)"
        );
        // Every NetworkPolicy on the server's pods lets runner pods of a project in on that
        // port; one that names the port for runners lets nothing else in.
        let port_name = container_port["name"].as_str().unwrap_or_default();
        let on_port = |rule: &Value| {
            rule["ports"].as_array().is_none_or(|ports| {
                ports
                    .iter()
                    .any(|p| p["port"] == listening || p["port"] == port_name)
            })
        };
        let admits =
            |rule: &Value, ns: &BTreeMap<String, String>, pod: &BTreeMap<String, String>| {
                on_port(rule)
                    && rule["from"].as_array().is_none_or(|peers| {
                        peers.iter().any(|peer| {
                            peer.get("ipBlock").is_none()
                                && peer.get("namespaceSelector").is_none_or(|s| selects(s, ns))
                                && peer.get("podSelector").is_none_or(|s| selects(s, pod))
                        })
                    })
            };
        for policy in objects.iter().filter(|o| {
            o["kind"] == "NetworkPolicy"
                && o["metadata"]["namespace"] == namespace
                && selects(&o["spec"]["podSelector"], &server_labels)
        }) {
            let rules = policy["spec"]["ingress"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            assert!(
                rules
                    .iter()
                    .any(|r| admits(r, &project_labels, &runner_labels)),
                "{overlay}: {} keeps runner pods out",
                policy["metadata"]["name"]
            );
            if env(container, "AMBIENT_RUNNER_ADDR").is_some() {
                let elsewhere = BTreeMap::from([(
                    "kubernetes.io/metadata.name".to_owned(),
                    "elsewhere".to_owned(),
                )]);
                assert!(
                    !rules
                        .iter()
                        .any(|r| admits(r, &project_labels, &another_pod)
                            || admits(r, &elsewhere, &runner_labels)),
                    "{overlay}: {} lets other pods into the runners' port",
                    policy["metadata"]["name"]
                );
            }
        }
    }
}
