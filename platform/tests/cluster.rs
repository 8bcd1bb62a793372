//! Kubernetes mode's records against a real API server (the test API server `make unit`
//! starts; its kubeconfig in `AMBIENT_TEST_KUBECONFIG`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use model::AgenticSession;
use model::project_settings::ProjectSettingsSpec;
use model::session::{AgenticSessionSpec, SessionKey};
use platform::auth::Caller;
use platform::records::{KubeRecords, NewProject, Page, Records, RecordsError, Run};

/// A client of the test API server, with the platform's CRDs applied for real (a server
/// that refuses them fails the test).
async fn client() -> Client {
    let path = std::env::var_os("AMBIENT_TEST_KUBECONFIG").unwrap_or_else(|| {
        panic!(
            "AMBIENT_TEST_KUBECONFIG is not set: these tests need the test API server; \
             run them with `make unit` (or start it with tools/k8s/testenv.sh)"
        )
    });
    let client = operator::cluster::connect(Some(std::path::Path::new(&path)))
        .await
        .expect("a client of the test API server");
    operator::crd::apply(&client, "ambient-tests")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    client
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", std::process::id() % 100_000)
}

fn page(search: Option<&str>, offset: u64, limit: u64) -> Page {
    Page {
        search: search.map(str::to_owned),
        offset,
        limit,
    }
}

#[tokio::test]
async fn projects_are_managed_namespaces_with_settings_and_credentials() {
    let client = client().await;
    let records = KubeRecords::new(client.clone());
    let me = Caller::system();
    let name = unique("rec-proj");
    let p = records
        .create_project(
            &me,
            NewProject {
                name: name.clone(),
                display_name: "Records project".into(),
                description: "made by a test".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(p.display_name, "Records project");
    let ns = Api::<Namespace>::all(client.clone())
        .get(&name)
        .await
        .unwrap();
    assert_eq!(ns.labels()["ambient-code.io/managed"], "true");
    let again = records
        .create_project(
            &me,
            NewProject {
                name: name.clone(),
                display_name: String::new(),
                description: String::new(),
            },
        )
        .await;
    assert!(matches!(again, Err(RecordsError::Conflict(_))), "{again:?}");

    // A namespace without the label is no project.
    let plain = unique("rec-plain");
    let mut n = Namespace::default();
    n.metadata.name = Some(plain.clone());
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &n)
        .await
        .unwrap();
    assert!(matches!(
        records.get_project(&me, &plain).await,
        Err(RecordsError::NotFound(_))
    ));
    let listed = records
        .list_projects(&me, &page(Some("records PROJ"), 0, 10))
        .await
        .unwrap();
    assert_eq!(
        listed
            .items
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>(),
        [name.as_str()]
    );
    let updated = records
        .update_project(&me, &name, None, Some("changed".into()))
        .await
        .unwrap();
    assert_eq!(
        (updated.display_name.as_str(), updated.description.as_str()),
        ("Records project", "changed")
    );

    // Settings: defaults until set, then what was set.
    assert_eq!(
        records.project_settings(&me, &name).await.unwrap(),
        ProjectSettingsSpec::default()
    );
    let settings = ProjectSettingsSpec {
        inactivity_timeout_seconds: Some(600),
        ..ProjectSettingsSpec::default()
    };
    records
        .set_project_settings(&me, &name, settings.clone())
        .await
        .unwrap();
    assert_eq!(
        records.project_settings(&me, &name).await.unwrap(),
        settings
    );

    // Credentials: in the project's Secret, set and removed in one change.
    records
        .update_credentials(
            &me,
            &name,
            &[
                (
                    "ANTHROPIC_API_KEY".into(),
                    Some("sk-test-1234567890".into()),
                ),
                ("GITHUB_TOKEN".into(), Some("ghp_abc".into())),
            ],
        )
        .await
        .unwrap();
    records
        .update_credentials(
            &me,
            &name,
            &[
                ("GITHUB_TOKEN".into(), None),
                ("GITLAB_TOKEN".into(), Some("glpat".into())),
            ],
        )
        .await
        .unwrap();
    let creds = records.credentials(&me, &name).await.unwrap();
    assert_eq!(creds.get("ANTHROPIC_API_KEY"), Some("sk-test-1234567890"));
    assert_eq!(creds.get("GITHUB_TOKEN"), None);
    assert_eq!(creds.get("GITLAB_TOKEN"), Some("glpat"));
    let secret = Api::<Secret>::namespaced(client.clone(), &name)
        .get("ambient-runner-secrets")
        .await
        .unwrap();
    assert_eq!(
        secret.data.unwrap().keys().collect::<Vec<_>>(),
        ["ANTHROPIC_API_KEY", "GITLAB_TOKEN"]
    );

    records.delete_project(&me, &name).await.unwrap();
    assert!(matches!(
        records.get_project(&me, &name).await,
        Err(RecordsError::NotFound(_))
    ));
    let _ = Api::<Namespace>::all(client)
        .delete(&plain, &Default::default())
        .await;
}

#[tokio::test]
async fn sessions_are_agentic_session_resources_whoever_made_them() {
    let client = client().await;
    let records = KubeRecords::new(client.clone());
    let me = Caller::system();
    let project = unique("rec-sess");
    records
        .create_project(
            &me,
            NewProject {
                name: project.clone(),
                display_name: String::new(),
                description: String::new(),
            },
        )
        .await
        .unwrap();
    let spec = |prompt: &str| AgenticSessionSpec {
        initial_prompt: Some(prompt.into()),
        ..AgenticSessionSpec::default()
    };
    let mut first = AgenticSession::new("first", spec("Refactor the parser"));
    first.metadata.namespace = Some(project.clone());
    first.metadata.uid = Some("ignored-the-server-gives-uids".into());
    let created = records.create_session(&me, first.clone()).await.unwrap();
    let uid = created.session.uid().unwrap();
    assert_ne!(uid, "ignored-the-server-gives-uids");
    assert_eq!(created.run, Run::default());
    assert!(matches!(
        records.create_session(&me, first).await,
        Err(RecordsError::Conflict(_))
    ));

    // Made with kubectl (here: straight through the API): a session like any other.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let mut second = AgenticSession::new("second", spec("Write the docs"));
    second.metadata.labels = Some(BTreeMap::from([("team".into(), "a".into())]));
    Api::<AgenticSession>::namespaced(client.clone(), &project)
        .create(&PostParams::default(), &second)
        .await
        .unwrap();
    let key = |name: &str| SessionKey::new(project.clone(), name.to_owned());
    let got = records.get_session(&me, &key("second")).await.unwrap();
    assert_eq!(
        got.session.spec.initial_prompt.as_deref(),
        Some("Write the docs")
    );
    let all = records
        .list_sessions(&me, &project, &page(None, 0, 20))
        .await
        .unwrap();
    assert_eq!(
        all.items.iter().map(|s| s.name_any()).collect::<Vec<_>>(),
        ["second", "first"],
        "newest first"
    );
    let found = records
        .list_sessions(&me, &project, &page(Some("PARSER"), 0, 20))
        .await
        .unwrap();
    assert_eq!(found.total_count, 1);
    let paged = records
        .list_sessions(&me, &project, &page(None, 1, 1))
        .await
        .unwrap();
    assert_eq!((paged.items.len(), paged.has_more), (1, false));

    // Writes name the version they read.
    let mut stale = got.session.clone();
    let mut fresh = got.session.clone();
    fresh.spec.display_name = Some("Docs".into());
    records.replace_session(&me, fresh).await.unwrap();
    stale.spec.display_name = Some("Lost update".into());
    assert!(matches!(
        records.replace_session(&me, stale).await,
        Err(RecordsError::Conflict(_))
    ));

    // What the server alone knows.
    records
        .set_sdk_session_id(&me, &key("second"), "conv-1")
        .await
        .unwrap();
    // The run is the operator's to record, in the status.
    Api::<AgenticSession>::namespaced(client.clone(), &project)
        .patch_status(
            "second",
            &PatchParams::default(),
            &Patch::Merge(&serde_json::json!({"status": {
                "runGeneration": 3,
                "runnerTokenHash": hex::encode([0xab; 32]),
            }})),
        )
        .await
        .unwrap();
    let got = records.get_session(&me, &key("second")).await.unwrap();
    assert!(got.session.has_conversation());
    assert_eq!(got.run.generation, 3);
    assert_eq!(got.run.token_hash, Some(vec![0xab; 32]));
    assert_eq!(got.session.spec.display_name.as_deref(), Some("Docs"));

    let removed = records.delete_session(&me, &key("first")).await.unwrap();
    assert_eq!(removed.uid, uid);
    assert!(matches!(
        records.get_session(&me, &key("first")).await,
        Err(RecordsError::NotFound(_))
    ));
    records.delete_project(&me, &project).await.unwrap();
}

/// The server's word about a run (`unhandledMessages`) is written only onto the session as
/// it read it: once the operator has started the next run, the stale write is refused and
/// the new run is left as the operator made it (else its end would start yet another run).
#[tokio::test]
async fn the_servers_status_word_does_not_land_on_a_session_changed_since_it_was_read() {
    let client = client().await;
    let records = KubeRecords::new(client.clone());
    let me = Caller::system();
    let project = unique("rec-word");
    records
        .create_project(
            &me,
            NewProject {
                name: project.clone(),
                display_name: String::new(),
                description: String::new(),
            },
        )
        .await
        .unwrap();
    let api = Api::<AgenticSession>::namespaced(client.clone(), &project);
    let mut s = AgenticSession::new("s", AgenticSessionSpec::default());
    s.metadata.namespace = Some(project.clone());
    api.create(&PostParams::default(), &s).await.unwrap();
    let completed = serde_json::json!({"status": {"phase": "Completed", "runGeneration": 1}});
    let read = api
        .patch_status("s", &PatchParams::default(), &Patch::Merge(&completed))
        .await
        .unwrap();
    // The operator starts run 2 after the follower read run 1's end.
    let started = serde_json::json!({"status": {"phase": "Creating", "runGeneration": 2}});
    api.patch_status("s", &PatchParams::default(), &Patch::Merge(&started))
        .await
        .unwrap();
    let word =
        serde_json::Map::from_iter([("unhandledMessages".to_owned(), serde_json::json!(true))]);
    let stale = api
        .patch_status(
            "s",
            &PatchParams::default(),
            &Patch::Merge(&platform::cluster::status_patch(&read, word.clone())),
        )
        .await;
    assert!(
        matches!(&stale, Err(kube::Error::Api(e)) if e.code == 409),
        "{stale:?}"
    );
    let now = api.get("s").await.unwrap();
    let st = now.status.clone().unwrap();
    assert_eq!((st.run_generation, st.unhandled_messages), (Some(2), None));
    // Read again, it is written.
    api.patch_status(
        "s",
        &PatchParams::default(),
        &Patch::Merge(&platform::cluster::status_patch(&now, word)),
    )
    .await
    .unwrap();
    let st = api.get("s").await.unwrap().status.unwrap();
    assert_eq!(st.unhandled_messages, Some(true));
    let _ = Api::<Namespace>::all(client)
        .delete(&project, &Default::default())
        .await;
}
