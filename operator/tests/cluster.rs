//! The operator against a real API server: kube-apiserver and kube-controller-manager
//! v1.20.2 with etcd, started on loopback by `make unit` (`tools/k8s/testenv.sh`), whose
//! kubeconfig is in `AMBIENT_TEST_KUBECONFIG`. There is no kubelet and no scheduler: these
//! tests play the kubelet by writing the pods' status, as a kubelet would report what
//! happened to the runner. Each test has its own namespace and its own operator, watching
//! only that namespace.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::authorization::v1::SubjectAccessReview;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, Pod, Secret, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use model::annotations::{
    DESIRED_PHASE, DESIRED_RUNNING, DESIRED_STOPPED, REQUEST_ANNOTATIONS, START_REQUESTED_AT,
    STOP_REASON, STOP_REQUESTED_AT,
};
use model::session::{AgenticSessionSpec, LlmSettings};
use model::{AgenticSession, Phase, ProjectSettings};
use operator::cluster::build::{
    RUN_LABEL, SESSION_LABEL, job_name, token_secret_name, workspace_claim_name,
};
use operator::cluster::project::{MANAGED_LABEL, NETWORK_POLICY, SETTINGS_NAME};
use operator::cluster::{ClusterConfig, controller};
use operator::token::token_hash_hex;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

/// A client of the test API server, with the platform's CRDs applied for real (a server
/// that refuses them fails the test).
async fn client() -> Client {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
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

/// Polls `check` until it gives a value (a failure after 30 s names what was awaited).
async fn wait_for<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    wait_within(WAIT, what, check).await
}

/// [`wait_for`] with a time limit of its own.
async fn wait_within<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One test's project and operator.
struct Project {
    client: Client,
    ns: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    operator: Option<tokio::task::JoinHandle<()>>,
}

impl Project {
    async fn new(prefix: &str) -> Project {
        let client = client().await;
        let ns = format!("{prefix}-{}", std::process::id() % 100_000);
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let _ = namespaces.delete(&ns, &DeleteParams::default()).await;
        wait_for(&format!("namespace {ns} gone"), || {
            let namespaces = namespaces.clone();
            let ns = ns.clone();
            async move { namespaces.get_opt(&ns).await.ok()?.is_none().then_some(()) }
        })
        .await;
        let mut n = Namespace::default();
        n.metadata.name = Some(ns.clone());
        n.metadata.labels = Some(BTreeMap::from([(MANAGED_LABEL.into(), "true".into())]));
        namespaces
            .create(&PostParams::default(), &n)
            .await
            .expect("a namespace");
        let mut p = Project {
            client,
            ns,
            stop: None,
            operator: None,
        };
        p.start_operator();
        p
    }

    fn config(&self) -> ClusterConfig {
        ClusterConfig {
            watch_namespace: Some(self.ns.clone()),
            server_api_url: "http://127.0.0.1:9/api".into(),
            stop_grace_seconds: 1,
            ..ClusterConfig::default()
        }
    }

    fn start_operator(&mut self) {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let run = controller::run(self.client.clone(), self.config(), async move {
            let _ = rx.await;
        });
        self.stop = Some(tx);
        self.operator = Some(tokio::spawn(run));
    }

    async fn stop_operator(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.operator.take() {
            tokio::time::timeout(WAIT, task)
                .await
                .expect("the operator stops on its shutdown signal")
                .expect("the operator task");
        }
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    async fn create(&self, name: &str, spec: AgenticSessionSpec) -> AgenticSession {
        let session = AgenticSession::new(name, spec);
        self.api::<AgenticSession>()
            .create(&PostParams::default(), &session)
            .await
            .expect("a session")
    }

    async fn session(&self, name: &str) -> AgenticSession {
        self.api::<AgenticSession>()
            .get(name)
            .await
            .expect("the session")
    }

    async fn wait_phase(&self, name: &str, phase: Phase) -> AgenticSession {
        let api = self.api::<AgenticSession>();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let s = api.get(name).await.expect("the session");
            if s.phase() == phase {
                return s;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {name} in {phase}; it is {}",
                serde_json::to_string_pretty(&s).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn job(&self, name: &str, generation: u64) -> Job {
        let api = self.api::<Job>();
        let job = job_name(name, generation);
        wait_for(&format!("Job {job}"), || {
            let api = api.clone();
            let job = job.clone();
            async move { api.get_opt(&job).await.ok()? }
        })
        .await
    }

    /// The run's pod, once the Job controller made it.
    async fn pod(&self, name: &str, generation: u64) -> Pod {
        let api = self.api::<Pod>();
        let selector = format!("{SESSION_LABEL}={name},{RUN_LABEL}={generation}");
        wait_for(&format!("the pod of {name} run {generation}"), || {
            let api = api.clone();
            let selector = selector.clone();
            async move {
                api.list(&ListParams::default().labels(&selector))
                    .await
                    .ok()?
                    .items
                    .into_iter()
                    .find(|p| p.metadata.deletion_timestamp.is_none())
            }
        })
        .await
    }

    /// Reports a container state of the runner, as the kubelet would.
    async fn report(&self, pod: &Pod, phase: &str, state: serde_json::Value) {
        let patch = json!({"status": {
            "phase": phase,
            "containerStatuses": [{
                "name": "runner", "image": "localhost/ambient-runner:latest", "imageID": "",
                "ready": phase == "Running", "restartCount": 0, "state": state,
            }],
        }});
        self.api::<Pod>()
            .patch_status(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .expect("a pod status");
    }

    /// What the server writes when the runner of `generation` connects.
    async fn connected(&self, name: &str, generation: i64, sdk_session: Option<&str>) {
        let mut status = json!({"runnerConnectedGeneration": generation});
        if let Some(id) = sdk_session {
            status["sdkSessionId"] = json!(id);
        }
        self.api::<AgenticSession>()
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"status": status})),
            )
            .await
            .expect("a status patch");
    }

    /// Asks for `phase` with the annotations the server writes for it.
    async fn desire(&self, name: &str, phase: &str) {
        let at = k8s_openapi::jiff::Timestamp::now().to_string();
        let patch = if phase == DESIRED_STOPPED {
            json!({"metadata": {"annotations": {
                DESIRED_PHASE: phase, STOP_REQUESTED_AT: at, STOP_REASON: "user",
            }}})
        } else {
            json!({"metadata": {"annotations": {DESIRED_PHASE: phase, START_REQUESTED_AT: at}}})
        };
        self.api::<AgenticSession>()
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("a desired phase");
    }

    /// Runs the session until its runner is connected (phase Running).
    async fn running(&self, name: &str, spec: AgenticSessionSpec) -> Pod {
        self.create(name, spec).await;
        let pod = self.pod(name, 1).await;
        self.report(&pod, "Running", json!({"running": {"startedAt": now()}}))
            .await;
        self.connected(name, 1, Some("conversation-1")).await;
        self.wait_phase(name, Phase::Running).await;
        pod
    }

    async fn finish(mut self) {
        self.stop_operator().await;
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let _ = namespaces.delete(&self.ns, &DeleteParams::default()).await;
    }
}

fn now() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}

fn spec() -> AgenticSessionSpec {
    AgenticSessionSpec {
        initial_prompt: Some("write hello.txt".into()),
        llm_settings: Some(LlmSettings {
            model: Some("claude-sonnet-4-6".into()),
            ..LlmSettings::default()
        }),
        ..AgenticSessionSpec::default()
    }
}

fn ready_condition(s: &AgenticSession) -> (String, String) {
    let c = s
        .status
        .as_ref()
        .and_then(|st| st.conditions.iter().find(|c| c.type_ == "Ready"))
        .expect("a Ready condition");
    (c.reason.clone(), c.message.clone())
}

fn env_of(job: &Job) -> Vec<k8s_openapi::api::core::v1::EnvVar> {
    job.spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .env
        .clone()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_gets_its_run_objects_and_a_project_its_own() {
    let p = Project::new("objects").await;
    // The project's objects, made by the project controller.
    let settings = p.api::<ProjectSettings>();
    wait_for("ProjectSettings", || {
        let settings = settings.clone();
        async move { settings.get_opt(SETTINGS_NAME).await.ok()? }
    })
    .await;
    let accounts = p.api::<ServiceAccount>();
    let sa = wait_for("the runners' ServiceAccount", || {
        let accounts = accounts.clone();
        async move { accounts.get_opt("ambient-runner").await.ok()? }
    })
    .await;
    assert_eq!(sa.automount_service_account_token, Some(false));
    let secrets = p.api::<Secret>();
    wait_for("the credentials Secret", || {
        let secrets = secrets.clone();
        async move { secrets.get_opt("ambient-runner-secrets").await.ok()? }
    })
    .await;
    let policies = p.api::<NetworkPolicy>();
    let policy = wait_for("the runners' NetworkPolicy", || {
        let policies = policies.clone();
        async move { policies.get_opt(NETWORK_POLICY).await.ok()? }
    })
    .await;
    let policy_types = policy.spec.unwrap().policy_types.unwrap_or_default();
    assert!(
        policy_types.contains(&"Ingress".to_string())
            && policy_types.contains(&"Egress".to_string())
    );

    let created = p.create("hello", spec()).await;
    let job = p.job("hello", 1).await;
    let s = p.wait_phase("hello", Phase::Creating).await;
    let st = s.status.clone().unwrap();
    assert_eq!(st.run_generation, Some(1));
    // Owned by the session, labelled with it.
    let uid = created.uid().unwrap();
    for (what, meta) in [
        ("Job", job.metadata.clone()),
        (
            "PVC",
            p.api::<PersistentVolumeClaim>()
                .get(&workspace_claim_name("hello"))
                .await
                .expect("the workspace claim")
                .metadata,
        ),
        (
            "Secret",
            secrets
                .get(&token_secret_name("hello"))
                .await
                .expect("the token Secret")
                .metadata,
        ),
    ] {
        let owner = &meta.owner_references.as_ref().expect(what)[0];
        assert_eq!(
            (owner.uid.as_str(), owner.controller),
            (uid.as_str(), Some(true)),
            "{what}"
        );
        assert_eq!(
            meta.labels.as_ref().unwrap()[SESSION_LABEL],
            "hello",
            "{what}"
        );
        assert_eq!(
            meta.labels.as_ref().unwrap()["app.kubernetes.io/part-of"],
            "ambient-code",
            "{what}"
        );
    }
    // The status keeps only the token's hash; the Secret has the token.
    let token = secrets
        .get(&token_secret_name("hello"))
        .await
        .unwrap()
        .data
        .unwrap()["token"]
        .clone();
    let token = String::from_utf8(token.0).unwrap();
    assert_eq!(
        st.runner_token_hash.as_deref(),
        Some(token_hash_hex(&token).as_str())
    );
    assert!(!serde_json::to_string(&s).unwrap().contains(&token));
    // The Job as the API server stored it.
    let spec = job.spec.clone().unwrap();
    assert_eq!(spec.backoff_limit, Some(0));
    let pod = spec.template.spec.unwrap();
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    assert_eq!(pod.automount_service_account_token, Some(false));
    let c = &pod.containers[0];
    let sc = c.security_context.clone().unwrap();
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.capabilities.unwrap().drop, Some(vec!["ALL".to_string()]));
    assert_eq!(
        pod.security_context.unwrap().seccomp_profile.unwrap().type_,
        "RuntimeDefault"
    );
    assert_eq!(
        c.termination_message_policy.as_deref(),
        Some("FallbackToLogsOnError")
    );
    let env = env_of(&job);
    // The model key is the credentials container's, by reference; never the runner's.
    assert!(env.iter().all(|e| e.name != "ANTHROPIC_API_KEY"));
    assert_eq!(pod.share_process_namespace, Some(false));
    let keeper = &pod.containers[1];
    assert_eq!(keeper.name, "credentials");
    let key = keeper
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "ANTHROPIC_API_KEY")
        .unwrap();
    let r = key.value_from.clone().unwrap().secret_key_ref.unwrap();
    assert_eq!(
        (r.name.as_str(), r.optional),
        ("ambient-runner-secrets", Some(true))
    );
    let tok = env
        .iter()
        .find(|e| e.name == "AMBIENT_RUNNER_TOKEN")
        .unwrap();
    assert!(
        tok.value.is_none(),
        "the token is never a literal in the Job"
    );
    // Each transition is a Kubernetes Event on the session.
    let events = p.api::<Event>();
    wait_for("an Event for the session", || {
        let events = events.clone();
        async move {
            let list = events.list(&ListParams::default()).await.ok()?;
            list.items
                .into_iter()
                .find(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("hello"))
        }
    })
    .await;
    p.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phases_follow_what_the_pod_reports() {
    let p = Project::new("phases").await;
    // Running only once the runner is connected, not when its container runs.
    p.create("connects", spec()).await;
    let pod = p.pod("connects", 1).await;
    p.report(&pod, "Running", json!({"running": {"startedAt": now()}}))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(p.session("connects").await.phase(), Phase::Creating);
    p.connected("connects", 1, None).await;
    p.wait_phase("connects", Phase::Running).await;

    // Each way a run ends, as the kubelet reports it.
    let cases: [(&str, &str, serde_json::Value, Phase, &str); 6] = [
        (
            "done",
            "Succeeded",
            json!({"terminated": {"exitCode": 0, "reason": "Completed"}}),
            Phase::Completed,
            "Completed",
        ),
        (
            "fails",
            "Failed",
            json!({"terminated": {"exitCode": 1, "reason": "Error", "message": "boom: the last line"}}),
            Phase::Failed,
            "RunnerExit",
        ),
        (
            "nocreds",
            "Failed",
            json!({"terminated": {"exitCode": 2, "reason": "Error", "message": "ANTHROPIC_API_KEY is not set"}}),
            Phase::Failed,
            "PrerequisiteFailed",
        ),
        (
            "oom",
            "Failed",
            json!({"terminated": {"exitCode": 137, "reason": "OOMKilled"}}),
            Phase::Failed,
            "OOMKilled",
        ),
        (
            "image",
            "Pending",
            json!({"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"nope\""}}),
            Phase::Failed,
            "ImagePullBackOff",
        ),
        (
            "config",
            "Pending",
            json!({"waiting": {"reason": "CreateContainerConfigError", "message": "secret \"x\" not found"}}),
            Phase::Failed,
            "CreateContainerConfigError",
        ),
    ];
    for (name, ..) in &cases {
        p.create(name, spec()).await;
    }
    for (name, phase, state, want, reason) in cases {
        let pod = p.pod(name, 1).await;
        p.report(&pod, phase, state).await;
        let s = p.wait_phase(name, want).await;
        assert_eq!(ready_condition(&s).0, reason, "{name}");
    }
    // Failed with its pod still there (the image cannot be pulled): the Job goes.
    let jobs = p.api::<Job>();
    wait_for("the unpullable run's Job deleted", || {
        let jobs = jobs.clone();
        async move {
            jobs.get_opt(&job_name("image", 1))
                .await
                .ok()?
                .is_none()
                .then_some(())
        }
    })
    .await;
    let s = p.session("fails").await;
    assert!(
        ready_condition(&s).1.contains("boom: the last line"),
        "the log tail is kept"
    );
    assert_eq!(s.status.unwrap().result.unwrap().exit_code, Some(1));

    // Evicted: the pod failed as a whole.
    p.create("evicted", spec()).await;
    let pod = p.pod("evicted", 1).await;
    let patch = json!({"status": {"phase": "Failed", "reason": "Evicted", "message": "The node was low on resource: memory."}});
    p.api::<Pod>()
        .patch_status(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .unwrap();
    let s = p.wait_phase("evicted", Phase::Failed).await;
    assert_eq!(ready_condition(&s).0, "Evicted");

    // Unschedulable: stays Creating, saying why.
    p.create("nowhere", spec()).await;
    let pod = p.pod("nowhere", 1).await;
    let patch = json!({"status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/3 nodes are available: 3 Insufficient memory."}]}});
    p.api::<Pod>()
        .patch_status(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .unwrap();
    let api = p.api::<AgenticSession>();
    let s = wait_for("the scheduler's message in a condition", || {
        let api = api.clone();
        async move {
            let s = api.get("nowhere").await.ok()?;
            (ready_condition(&s).0 == "Unschedulable").then_some(s)
        }
    })
    .await;
    assert_eq!(s.phase(), Phase::Creating);
    assert!(ready_condition(&s).1.contains("Insufficient memory"));

    // A running session whose pod and Job vanish: the runner is lost.
    p.api::<Job>()
        .delete(&job_name("connects", 1), &DeleteParams::background())
        .await
        .unwrap();
    let s = p.wait_phase("connects", Phase::Failed).await;
    assert_eq!(ready_condition(&s).0, "RunnerLost");
    p.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_then_continue_runs_a_second_job_on_the_same_workspace() {
    let p = Project::new("stopcont").await;
    p.running("work", spec()).await;
    let first_token = p.session("work").await.status.unwrap().runner_token_hash;
    p.desire("work", DESIRED_STOPPED).await;
    let s = p.wait_phase("work", Phase::Stopped).await;
    assert_eq!(
        s.status.as_ref().unwrap().stopped_reason,
        Some(model::session::StoppedReason::User)
    );
    for k in REQUEST_ANNOTATIONS {
        assert!(
            s.annotation(k).is_none(),
            "the request was taken, {k} with it (as the local store leaves it)"
        );
    }
    let pods = p.api::<Pod>();
    let live = pods
        .list(&ListParams::default().labels(&format!("{SESSION_LABEL}=work")))
        .await
        .unwrap();
    assert!(
        live.items
            .iter()
            .all(|p| p.metadata.deletion_timestamp.is_some()),
        "Stopped only once no pod runs"
    );
    let jobs = p.api::<Job>();
    wait_for("the Job deleted", || {
        let jobs = jobs.clone();
        async move {
            jobs.get_opt(&job_name("work", 1))
                .await
                .ok()?
                .is_none()
                .then_some(())
        }
    })
    .await;
    wait_for("no pod left", || {
        let pods = pods.clone();
        async move {
            pods.list(&ListParams::default().labels(&format!("{SESSION_LABEL}=work")))
                .await
                .ok()?
                .items
                .is_empty()
                .then_some(())
        }
    })
    .await;
    assert!(
        p.api::<PersistentVolumeClaim>()
            .get_opt(&workspace_claim_name("work"))
            .await
            .unwrap()
            .is_some(),
        "the workspace stays"
    );

    p.desire("work", DESIRED_RUNNING).await;
    let job = p.job("work", 2).await;
    let env = env_of(&job);
    assert!(
        env.iter()
            .any(|e| e.name == "IS_RESUME" && e.value.as_deref() == Some("true")),
        "the second run resumes the conversation"
    );
    let volumes = job.spec.unwrap().template.spec.unwrap().volumes.unwrap();
    let claim = volumes
        .iter()
        .find_map(|v| v.persistent_volume_claim.clone())
        .unwrap();
    assert_eq!(claim.claim_name, workspace_claim_name("work"));
    let s = p.wait_phase("work", Phase::Creating).await;
    let st = s.status.unwrap();
    assert_eq!(st.run_generation, Some(2));
    assert_ne!(
        st.runner_token_hash, first_token,
        "a new token for the new run"
    );
    p.finish().await;
}

/// A message sent while the runner was finishing: the server, which keeps the log, says so
/// in the status; the operator's plan continues the conversation in a second Job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_ends_with_messages_waiting_goes_on() {
    let p = Project::new("waiting").await;
    let pod = p.running("late", spec()).await;
    p.report(
        &pod,
        "Succeeded",
        json!({"terminated": {"exitCode": 0, "reason": "Completed"}}),
    )
    .await;
    p.wait_phase("late", Phase::Completed).await;
    p.api::<AgenticSession>()
        .patch_status(
            "late",
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"unhandledMessages": true}})),
        )
        .await
        .unwrap();
    let job = p.job("late", 2).await;
    assert!(
        env_of(&job)
            .iter()
            .any(|e| e.name == "IS_RESUME" && e.value.as_deref() == Some("true")),
        "the second run resumes the conversation"
    );
    let s = p.wait_phase("late", Phase::Creating).await;
    let st = s.status.unwrap();
    assert_eq!(st.run_generation, Some(2));
    assert_eq!(st.unhandled_messages, None, "the new run takes what waits");
    p.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_stop_a_running_session_with_their_reason() {
    let p = Project::new("timeouts").await;
    p.running(
        "slow",
        AgenticSessionSpec {
            timeout: Some(2),
            ..spec()
        },
    )
    .await;
    p.running(
        "idle",
        AgenticSessionSpec {
            inactivity_timeout: Some(2),
            ..spec()
        },
    )
    .await;
    let s = p.wait_phase("slow", Phase::Stopped).await;
    assert_eq!(
        s.status.unwrap().stopped_reason,
        Some(model::session::StoppedReason::Timeout)
    );
    let s = p.wait_phase("idle", Phase::Stopped).await;
    assert_eq!(
        s.status.unwrap().stopped_reason,
        Some(model::session::StoppedReason::Inactivity)
    );
    p.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_restarted_mid_run_makes_no_second_job() {
    let mut p = Project::new("restart").await;
    let pod = p.running("survives", spec()).await;
    p.stop_operator().await;
    let before = p.session("survives").await;
    p.start_operator();
    // A restarted operator looks at every session again.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let jobs = p
        .api::<Job>()
        .list(&ListParams::default().labels(&format!("{SESSION_LABEL}=survives")))
        .await
        .unwrap();
    assert_eq!(jobs.items.len(), 1);
    let after = p.session("survives").await;
    assert_eq!(after.phase(), Phase::Running);
    assert_eq!(
        after.status.as_ref().unwrap().run_generation,
        before.status.as_ref().unwrap().run_generation
    );
    p.report(
        &pod,
        "Succeeded",
        json!({"terminated": {"exitCode": 0, "reason": "Completed"}}),
    )
    .await;
    p.wait_phase("survives", Phase::Completed).await;
    p.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_session_removes_its_objects() {
    let p = Project::new("gc").await;
    p.running("gone", spec()).await;
    p.api::<AgenticSession>()
        .delete("gone", &DeleteParams::background())
        .await
        .unwrap();
    let (jobs, secrets, claims) = (
        p.api::<Job>(),
        p.api::<Secret>(),
        p.api::<PersistentVolumeClaim>(),
    );
    // The garbage collector learns of a new resource type (the CRD) by re-discovering the
    // API every 30 s, so the first collection after the CRDs were applied can take that long.
    wait_within(
        Duration::from_secs(90),
        "Job, Secret and PVC collected",
        || {
            let (jobs, secrets, claims) = (jobs.clone(), secrets.clone(), claims.clone());
            async move {
                let job = jobs.get_opt(&job_name("gone", 1)).await.ok()?;
                let secret = secrets.get_opt(&token_secret_name("gone")).await.ok()?;
                let claim = claims.get_opt(&workspace_claim_name("gone")).await.ok()?;
                (job.is_none() && secret.is_none() && claim.is_none()).then_some(())
            }
        },
    )
    .await;
    p.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_shows_the_sessions_columns() {
    let p = Project::new("columns").await;
    p.running(
        "shown",
        AgenticSessionSpec {
            display_name: Some("Shown session".into()),
            ..spec()
        },
    )
    .await;
    let kubeconfig = std::env::var("AMBIENT_TEST_KUBECONFIG").unwrap();
    let kubectl = |wide: bool| {
        let mut cmd = std::process::Command::new("kubectl");
        cmd.args([
            "--kubeconfig",
            &kubeconfig,
            "-n",
            &p.ns,
            "get",
            "agenticsessions",
        ]);
        if wide {
            cmd.args(["-o", "wide"]);
        }
        let out = cmd.output().expect("kubectl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let out = kubectl(false);
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "DISPLAY", "PHASE", "MODEL", "REASON", "AGE"]
    );
    let row = out.lines().nth(1).unwrap();
    for part in [
        "shown",
        "Shown session",
        "Running",
        "claude-sonnet-4-6",
        "RunnerConnected",
    ] {
        assert!(row.contains(part), "{part} in {row}");
    }
    let wide = kubectl(true);
    let header: Vec<&str> = wide.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME", "DISPLAY", "PHASE", "MODEL", "REASON", "AGE", "COST", "STARTED"
        ]
    );
    p.finish().await;
}

/// Asked to stop while it is still filling its caches, the operator stops (kube-runtime's
/// controller alone would wait for its cache for ever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_stopped_as_it_starts_stops() {
    let mut p = Project::new("quickstop").await;
    // `stop_operator` fails the test if the task does not end within 30 s.
    p.stop_operator().await;
    p.finish().await;
}

/// `groupAccess` in a project's settings becomes RoleBindings to the project roles: a member
/// of a listed group may do what its role allows in the namespace (the API server's own
/// SubjectAccessReview says so), others may not, and removing the group revokes it; a
/// RoleBinding made by hand is left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_access_becomes_role_bindings_and_removing_it_revokes() {
    let p = Project::new("groups").await;
    // The project roles, as deploy/base installs them.
    operator::cluster::project::apply_project_roles(&p.client, "ambient-tests")
        .await
        .unwrap();
    let settings: Api<ProjectSettings> = p.api();
    wait_for("the project's settings", || {
        let settings = settings.clone();
        async move { settings.get_opt(SETTINGS_NAME).await.ok()? }
    })
    .await;
    let bindings: Api<RoleBinding> = p.api();
    let by_hand: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "by-hand"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "ambient-project-view"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "gina"}]
    }))
    .unwrap();
    bindings
        .create(&PostParams::default(), &by_hand)
        .await
        .unwrap();
    let set = |access: serde_json::Value| {
        let settings = settings.clone();
        async move {
            settings
                .patch(
                    SETTINGS_NAME,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"groupAccess": access}})),
                )
                .await
                .unwrap();
        }
    };
    let may = |user: &'static str, group: &'static str, verb: &'static str| {
        let client = p.client.clone();
        let ns = p.ns.clone();
        async move {
            let review: SubjectAccessReview = serde_json::from_value(json!({
                "spec": {
                    "user": user,
                    "groups": [group, "system:authenticated"],
                    "resourceAttributes": {
                        "namespace": ns, "verb": verb,
                        "group": "vteam.ambient-code", "resource": "agenticsessions"
                    }
                }
            }))
            .unwrap();
            Api::<SubjectAccessReview>::all(client)
                .create(&PostParams::default(), &review)
                .await
                .unwrap()
                .status
                .is_some_and(|s| s.allowed)
        }
    };

    set(json!([
        {"groupName": "team-x", "role": "edit"},
        {"groupName": "Auditors@Corp", "role": "view"}
    ]))
    .await;
    wait_for("team-x may create sessions", || async {
        may("dave", "team-x", "create").await.then_some(())
    })
    .await;
    // Each group's binding is its own object: the second may come after the first.
    wait_for("the auditors may read sessions (view reads)", || async {
        may("erin", "Auditors@Corp", "get").await.then_some(())
    })
    .await;
    assert!(
        !may("erin", "Auditors@Corp", "create").await,
        "view does not create"
    );
    assert!(
        !may("frank", "team-y", "get").await,
        "other groups get nothing"
    );
    wait_for("the count in the settings' status", || {
        let settings = settings.clone();
        async move {
            let s = settings.get(SETTINGS_NAME).await.ok()?;
            (s.status?.group_bindings_created == Some(2)).then_some(())
        }
    })
    .await;

    // Removed from the list, team-x loses its access; the hand-made binding stays.
    set(json!([{"groupName": "Auditors@Corp", "role": "view"}])).await;
    wait_for("team-x revoked", || async {
        (!may("dave", "team-x", "create").await).then_some(())
    })
    .await;
    assert!(may("erin", "Auditors@Corp", "get").await);
    assert!(bindings.get_opt("by-hand").await.unwrap().is_some());
    p.finish().await;
}
