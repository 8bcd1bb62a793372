//! The Kubernetes driver: sessions are `AgenticSession` resources in namespaces labelled
//! `ambient-code.io/managed=true`; each run is a Job whose pod runs the runner.
//!
//! - [`build`]: what should exist for a session (Job, token Secret, workspace claim), pure;
//! - [`observe`]: what the cluster says about a run, as a [`crate::lifecycle::Runner`], pure;
//! - [`project`]: what every project holds (settings, runner account, credentials Secret,
//!   NetworkPolicy), pure;
//! - [`controller`]: the controllers that apply [`crate::lifecycle::plan`] with a client.

pub mod build;
pub mod controller;
pub mod observe;
pub mod project;

pub use build::{ClusterConfig, WorkspaceVolume};

/// A client of the cluster: from `kubeconfig`, else the pod's ServiceAccount or the user's
/// kubeconfig (`$KUBECONFIG`, `~/.kube/config`). The error is one line for the user.
pub async fn connect(kubeconfig: Option<&std::path::Path>) -> Result<kube::Client, String> {
    kube::Client::try_from(config(kubeconfig).await?).map_err(|e| e.to_string())
}

/// The configuration [`connect`] makes its client with (the server also makes clients of its
/// users' tokens from it).
pub async fn config(kubeconfig: Option<&std::path::Path>) -> Result<kube::Config, String> {
    Ok(match kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| format!("reading the kubeconfig {}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &Default::default())
                .await
                .map_err(|e| format!("the kubeconfig {}: {e}", path.display()))?
        }
        None => kube::Config::infer().await.map_err(|e| {
            format!("no cluster to reach: not in a pod and no kubeconfig (KUBECONFIG): {e}")
        })?,
    })
}

/// The JSON merge patch (RFC 7386) that turns `old` into `new`: changed and new fields set,
/// removed fields `null`, arrays replaced whole. A status is written as this diff, so a
/// field another writer owns (the server's `lastActivityTime`) is left as it is.
pub fn merge_diff(old: &serde_json::Value, new: &serde_json::Value) -> Option<serde_json::Value> {
    use serde_json::{Map, Value};
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            let mut patch = Map::new();
            for (k, v) in n {
                match o.get(k) {
                    Some(prev) => {
                        if let Some(d) = merge_diff(prev, v) {
                            patch.insert(k.clone(), d);
                        }
                    }
                    None => {
                        patch.insert(k.clone(), v.clone());
                    }
                }
            }
            for k in o.keys().filter(|k| !n.contains_key(*k)) {
                patch.insert(k.clone(), Value::Null);
            }
            (!patch.is_empty()).then_some(Value::Object(patch))
        }
        (o, n) if o == n => None,
        (_, n) => Some(n.clone()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_merge_diff_sets_changes_and_nulls_removals_only() {
        let old = json!({"phase": "Running", "startTime": "t1", "completionTime": "t0",
            "lastActivityTime": "a", "conditions": [{"type": "Ready"}]});
        let new = json!({"phase": "Completed", "startTime": "t1",
            "lastActivityTime": "a", "conditions": [{"type": "Ready", "status": "False"}]});
        assert_eq!(
            merge_diff(&old, &new),
            Some(json!({"phase": "Completed", "completionTime": null,
                "conditions": [{"type": "Ready", "status": "False"}]}))
        );
        assert_eq!(merge_diff(&old, &old), None);
        assert_eq!(
            merge_diff(&json!({"a": {"b": 1, "c": 2}}), &json!({"a": {"b": 1}})),
            Some(json!({"a": {"c": null}}))
        );
    }
}
