//! Manifests written with the original platform's field names parse unchanged.

use model::annotations::DESIRED_PHASE;
use model::session::{RepoState, StoppedReason, WorkflowState};
use model::{AgenticSession, Phase, ProjectSettings};

#[test]
fn original_agentic_session_manifest_parses() {
    let yaml = include_str!("fixtures/original-session.yaml");
    let s: AgenticSession = serde_yaml::from_str(yaml).expect("original manifest parses");

    assert_eq!(s.metadata.namespace.as_deref(), Some("team-a"));
    assert_eq!(s.annotation(DESIRED_PHASE), Some("Running"));
    assert_eq!(
        s.spec.initial_prompt.as_deref(),
        Some("Add a health endpoint and tests")
    );
    assert_eq!(s.spec.repos.len(), 2);
    assert!(s.spec.repos[0].auto_push());
    assert_eq!(s.spec.repos[1].branch, None);
    assert!(!s.spec.repos[1].auto_push());
    let user = s.spec.user_context.as_ref().unwrap();
    assert_eq!((user.user_id.as_str(), user.groups.len()), ("ada", 2));
    let llm = s.spec.llm_settings.as_ref().unwrap();
    assert_eq!((llm.temperature, llm.max_tokens), (Some(0.7), Some(4000)));
    assert_eq!(s.model(), Some("claude-sonnet-4-6"));
    assert_eq!(
        (s.spec.timeout, s.spec.inactivity_timeout),
        (Some(300), Some(3600))
    );
    assert_eq!(s.spec.stop_on_run_finished, Some(false));
    assert_eq!(s.spec.environment_variables["LOG_LEVEL"], "debug");
    let mcp = s.spec.mcp_servers.as_ref().unwrap();
    assert_eq!(mcp.custom["jira"]["command"], "npx");
    assert_eq!(mcp.disabled, ["webfetch"]);
    assert_eq!(
        s.spec.active_workflow.as_ref().unwrap().path.as_deref(),
        Some("workflows/bugfix")
    );

    let st = s.status.as_ref().unwrap();
    assert_eq!(s.phase(), Phase::Running);
    assert_eq!(st.observed_generation, Some(2));
    assert!(st.start_time.is_some() && st.last_activity_time.is_some());
    assert_eq!(st.reconciled_repos[0].status, Some(RepoState::Ready));
    assert_eq!(st.reconciled_repos[0].branches.len(), 2);
    assert_eq!(
        st.reconciled_workflow.as_ref().unwrap().status,
        Some(WorkflowState::Active)
    );
    assert_eq!(st.stopped_reason, Some(StoppedReason::Inactivity));
    assert_eq!(
        (st.sdk_session_id.as_deref(), st.sdk_restart_count),
        (Some("3e1a"), Some(1))
    );
    assert_eq!(st.conditions[0].type_, "Ready");

    // Round trip keeps every field.
    let back: AgenticSession = serde_yaml::from_str(&serde_yaml::to_string(&s).unwrap()).unwrap();
    assert_eq!(back, s);
}

#[test]
fn minimal_session_gets_defaults() {
    let s: AgenticSession = serde_yaml::from_str(
        "apiVersion: vteam.ambient-code/v1alpha1\nkind: AgenticSession\nmetadata: {name: s}\nspec: {}\n",
    )
    .unwrap();
    assert_eq!(s.phase(), Phase::Pending);
    assert!(s.spec.repos.is_empty());
}

#[test]
fn original_project_settings_manifest_parses() {
    let yaml = r#"
apiVersion: vteam.ambient-code/v1alpha1
kind: ProjectSettings
metadata: {name: projectsettings, namespace: team-a}
spec:
  groupAccess:
    - {groupName: engineering, role: edit}
  runnerSecretsName: ambient-runner-secrets
  repositories:
    - {url: "https://gitlab.com/g/r", branch: main, provider: gitlab}
  inactivityTimeoutSeconds: 7200
  mcpServers: {disabled: [context7]}
status: {groupBindingsCreated: 1, scheduledSessionRBACReady: true, limitRangeReady: true}
"#;
    let p: ProjectSettings = serde_yaml::from_str(yaml).unwrap();
    assert_eq!(p.spec.group_access[0].group_name, "engineering");
    assert_eq!(p.spec.inactivity_timeout_seconds, Some(7200));
    assert_eq!(
        p.status.as_ref().unwrap().scheduled_session_rbac_ready,
        Some(true)
    );
    let back: ProjectSettings = serde_yaml::from_str(&serde_yaml::to_string(&p).unwrap()).unwrap();
    assert_eq!(back, p);
}
