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

/// A new project (named from `prefix`) holding one session, `s`, with no status yet; the
/// project's name and its sessions' API.
async fn project_with_a_session(client: &Client, prefix: &str) -> (String, Api<AgenticSession>) {
    let project = unique(prefix);
    KubeRecords::new(client.clone())
        .create_project(
            &Caller::system(),
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
    (project, api)
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
    let (project, api) = project_with_a_session(&client, "rec-word").await;
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

/// The follower tells a session's phases in the order they were written. A read of the
/// session (after the server notified a change) may get a state the watch has not shown
/// yet; the watch then shows the older states. A phase taken from the read would make the
/// log go back: the new run's `Creating`, then the previous run's `Completed` again, which
/// a viewer takes for the new run's end (a deployed follow-up was seen "completed" 15 ms
/// after it started).
#[tokio::test]
async fn the_follower_tells_phases_in_the_order_written_even_when_a_read_ran_ahead_of_the_watch() {
    use kube::runtime::watcher;
    use model::Phase;
    use model::protocol::SessionEvent;

    let client = client().await;
    let path = std::env::var_os("AMBIENT_TEST_KUBECONFIG").unwrap();
    let config = operator::cluster::config(Some(std::path::Path::new(&path)))
        .await
        .unwrap();
    let (project, api) = project_with_a_session(&client, "follow-order").await;
    let status = |phase: &str, generation: i64| serde_json::json!({"status": {"phase": phase, "runGeneration": generation}});
    let ended = api
        .patch_status(
            "s",
            &PatchParams::default(),
            &Patch::Merge(status("Completed", 1)),
        )
        .await
        .unwrap();

    let data = tempfile::tempdir().unwrap();
    let identity = std::sync::Arc::new(platform::kube_identity::KubeIdentity::new(
        client.clone(),
        config,
        std::time::Duration::from_secs(10),
        false,
    ));
    let settings = platform::services::Settings {
        default_model: "claude-sonnet-4-5".into(),
        models: vec!["claude-sonnet-4-5".into()],
        default_credentials: Default::default(),
        local_user: Caller::system(),
        access_recheck: std::time::Duration::from_secs(10),
        catalogue: std::sync::Arc::new(platform::catalogue::Catalogue::new(None)),
    };
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (services, follower) = platform::cluster::open(
        data.path(),
        settings,
        client.clone(),
        identity,
        None,
        stop_rx,
    )
    .unwrap();
    let (watch_tx, watch_rx) = futures::channel::mpsc::unbounded();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let following = tokio::spawn(follower.run_on(watch_rx, async {
        let _ = done_rx.await;
    }));
    let send = |s: &AgenticSession| {
        watch_tx
            .unbounded_send(Ok(watcher::Event::Apply(s.clone())))
            .unwrap()
    };
    let log = services
        .log
        .open(platform::services::uid_of(&ended))
        .await
        .unwrap();
    let phases = async || {
        services
            .log
            .events_after(log, 0, 100)
            .await
            .unwrap()
            .iter()
            .filter_map(|row| match row.decode().unwrap().event {
                SessionEvent::Phase(p) => Some(p.phase),
                _ => None,
            })
            .collect::<Vec<_>>()
    };

    // The watch shows run 1's end.
    send(&ended);
    until("tell run 1's end", async || {
        phases().await == [Phase::Completed]
    })
    .await;
    // The operator starts run 2; the server reads it (a change of its own) before the
    // watch shows it.
    let started = api
        .patch_status(
            "s",
            &PatchParams::default(),
            &Patch::Merge(status("Creating", 2)),
        )
        .await
        .unwrap();
    services.driver.notify(SessionKey::new(&project, "s"));
    until("read run 2", async || {
        services.log.counters(log).await.unwrap().generation == 2
    })
    .await;
    // The watch, behind, shows run 1's last state again, then run 2's; then a session of
    // its own, to know that everything before it was taken.
    send(&ended);
    send(&started);
    let mut marker = AgenticSession::new("marker", AgenticSessionSpec::default());
    marker.metadata.namespace = Some(project.clone());
    marker.metadata.uid = Some(format!("{project}-marker"));
    marker.status = Some(serde_json::from_value(serde_json::json!({"phase": "Running"})).unwrap());
    send(&marker);
    let marker_log = services
        .log
        .open(&format!("{project}-marker"))
        .await
        .unwrap();
    until("take the marker", async || {
        services.log.last_phase(marker_log).await.unwrap() == Some(Phase::Running)
    })
    .await;
    assert_eq!(phases().await, [Phase::Completed, Phase::Creating]);

    let _ = done_tx.send(());
    following.await.unwrap();
    let _ = Api::<Namespace>::all(client)
        .delete(&project, &Default::default())
        .await;
}

/// Waits, up to 5 s, until `done` says so.
async fn until(what: &str, done: impl AsyncFn() -> bool) {
    for _ in 0..200 {
        if done().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("the follower did not {what}");
}
