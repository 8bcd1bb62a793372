//! `ambient`: the Ambient Code Platform from a terminal, a script or CI, against a server in
//! local mode or in Kubernetes mode alike (it speaks the REST API and the viewer WebSocket).
//!
//! ```text
//! ambient login http://127.0.0.1:3000        # the key from AMBIENT_KEY or standard input
//! ambient sessions create "fix the flaky test" --repo https://github.com/org/repo
//! ambient logs -f session-…                   # until it ends; exit 0 when Completed
//! ambient send session-… "now add a test"; ambient continue session-…
//! ambient sessions list -o json | jq …
//! ambient files ls session-… artifacts; ambient files diff session-…
//! ```
//!
//! Exit codes are listed at [`client::Error::exit_code`] (and by `ambient --help`).

mod client;
mod config;
mod files;
mod follow;
mod output;

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use model::AgenticSession;
use model::api::{
    CreateProjectRequest, CreateSessionRequest, CreateSessionResponse, MessageAccepted, Project,
    ProjectList, SessionList, SessionSummary,
};
use model::session::{LlmSettings, SessionRepo};
use reqwest::Method;

use client::{Client, Error};
use config::Profile;
use output::{Format, Table};

const EXIT_CODES: &str = "Exit codes: 0 success; 1 other failure; 2 usage; 3 not signed in or the \
key refused (401); 4 the key's role does not allow it (403); 5 not found (404); 6 conflict (409); \
7 invalid input (400); 8 server unreachable or failed (5xx); 9 `logs -f`: the session ended \
Failed or Stopped.";

/// The Ambient Code Platform's command-line client.
#[derive(Parser, Debug)]
#[command(name = "ambient", version, after_help = EXIT_CODES)]
struct Cli {
    /// Output format.
    #[arg(short, long, global = true, value_enum, default_value_t = Format::Table)]
    output: Format,
    /// Project to work in.
    #[arg(short, long, global = true, env = "AMBIENT_PROJECT", default_value = model::api::DEFAULT_PROJECT)]
    project: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Signs in to a server: checks the access key (from AMBIENT_KEY, or the first line of
    /// standard input) and stores URL and key, readable by you only.
    Login {
        /// The server's URL (`http://127.0.0.1:3000`).
        url: String,
    },
    /// Forgets the stored URL and key.
    Logout,
    /// Projects.
    #[command(subcommand)]
    Projects(Projects),
    /// Sessions of the project.
    #[command(subcommand)]
    Sessions(Sessions),
    /// Groups of attempts ("run N": `sessions create --attempts N`): compare them, keep one.
    #[command(subcommand)]
    Attempts(Attempts),
    /// A session's events; `-f` follows them live until the session ends (exit 0 when it
    /// Completed, 9 when it Failed or was Stopped), resuming after drops; `-f --turn` only
    /// until its agent has answered.
    Logs {
        /// The session.
        session: String,
        /// Follow: print events as they come, until the session ends.
        #[arg(short, long)]
        follow: bool,
        /// Print only the events after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// With `-f`: stop (exit 0) as soon as the agent has answered every message it was
        /// sent, the session still running: `ambient send S "…" && ambient logs -f --turn S`.
        #[arg(long, requires = "follow")]
        turn: bool,
    },
    /// Sends a message to a session's agent (the next turn of its conversation).
    Send {
        /// The session.
        session: String,
        /// The message ("-" reads it from standard input).
        text: String,
    },
    /// Switches a session's model; a running agent switches at once (its next request uses
    /// it), a later run starts with it.
    Model {
        /// The session.
        session: String,
        /// The model (one the platform offers).
        model: String,
    },
    /// Lists the questions the session's agent waits to have answered (ID, questions,
    /// options).
    Asks {
        /// The session.
        session: String,
    },
    /// Answers what the agent asks: a question, with one ANSWER per question in order (an
    /// option's label, or your own words; `--decline` answers none); a tool call it asks to
    /// make (an `ask` session) or its plan (a `plan` session), allowed with no ANSWER
    /// (`--always`: for the rest of the session) or denied (`--deny`, `--reason`). The agent
    /// goes on.
    Answer {
        /// The session.
        session: String,
        /// The ask's ID (`ambient asks`).
        id: String,
        /// A question's answers, one per question.
        answers: Vec<String>,
        /// Decline a question.
        #[arg(long, conflicts_with_all = ["answers", "deny", "always"])]
        decline: bool,
        /// Deny a tool call or a plan.
        #[arg(long, conflicts_with_all = ["answers", "always"])]
        deny: bool,
        /// Why it is denied (told to the agent).
        #[arg(long, requires = "deny")]
        reason: Option<String>,
        /// Allow the tool for the rest of the session.
        #[arg(long, conflicts_with = "answers")]
        always: bool,
    },
    /// The session's MCP servers as its agent last reported them: each server's state
    /// (connected, failed, needs-auth, pending) and its tools.
    Mcp {
        /// The session.
        session: String,
    },
    /// The session's workflow and its slash commands; `--set` switches it (a running
    /// session restarts in it, its conversation kept), `--leave` leaves it.
    Workflow {
        /// The session.
        session: String,
        /// The workflow's repository to switch to.
        #[arg(long, value_name = "URL", conflicts_with = "leave")]
        set: Option<String>,
        /// Its branch (default: main).
        #[arg(long, requires = "set")]
        branch: Option<String>,
        /// Its folder in the repository (default: the root).
        #[arg(long, requires = "set")]
        path: Option<String>,
        /// Leave the workflow.
        #[arg(long)]
        leave: bool,
    },
    /// The workflows of the platform's catalogue (for `sessions create --workflow`).
    Workflows,
    /// Interrupts the agent's current turn.
    Interrupt {
        /// The session.
        session: String,
    },
    /// Stops a session.
    Stop {
        /// The session.
        session: String,
    },
    /// Continues a finished session (its conversation resumes).
    Continue {
        /// The session.
        session: String,
    },
    /// A session's workspace, running or stopped (then a files runner serves it): list, read,
    /// diff, download, upload.
    #[command(subcommand)]
    Files(files::Files),
    /// Writes a session and its whole event log as JSON (the export).
    Export {
        /// The session.
        session: String,
    },
    /// Prints a shell completion script (`ambient completions bash > /etc/bash_completion.d/ambient`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand, Debug)]
enum Projects {
    /// Lists the projects you may see.
    List {
        /// Only those whose name or display name contains this.
        #[arg(long)]
        search: Option<String>,
    },
    /// Creates a project (the installation's owner).
    Create {
        /// Its name (lowercase letters, digits and dashes).
        name: String,
        /// Name shown in the UI.
        #[arg(long)]
        display_name: Option<String>,
        /// What it is for.
        #[arg(long)]
        description: Option<String>,
    },
    /// Deletes a project with its sessions (admin).
    Delete {
        /// The project.
        name: String,
    },
}

#[derive(Subcommand, Debug)]
enum Attempts {
    /// The group's attempts side by side: phase, turns, cost, what each changed (files,
    /// lines added and removed), which one was kept.
    Show {
        /// The group (`sessions create --attempts` printed it).
        group: String,
        /// Also print each attempt's diff.
        #[arg(long)]
        diff: bool,
    },
    /// Keeps one finished attempt (its work is pushed and proposed) and stops the others.
    Keep {
        /// The group.
        group: String,
        /// The attempt's session.
        session: String,
    },
}

#[derive(Subcommand, Debug)]
enum Sessions {
    /// Lists the project's sessions, newest first; AGENT says whether a running one works
    /// or waits for you.
    List {
        /// Only those whose name, display name or prompt contains this.
        #[arg(long, conflicts_with = "waiting")]
        search: Option<String>,
        /// Most sessions to list (1 to 100).
        #[arg(long, default_value_t = 20, conflicts_with = "waiting")]
        limit: u64,
        /// Only the sessions waiting for a person (their agent answered and stays warm),
        /// the one waiting longest first.
        #[arg(long)]
        waiting: bool,
    },
    /// Creates a session; prints its name alone (`S=$(ambient sessions create …)`), the
    /// branch its work goes to on standard error; `-o json` or `-o yaml` print the whole answer.
    Create {
        /// What the agent should do ("-" reads it from standard input).
        prompt: String,
        /// A repository to clone (repeat for more): `URL` or `URL#branch`.
        #[arg(long = "repo")]
        repos: Vec<String>,
        /// The model.
        #[arg(long)]
        model: Option<String>,
        /// Name shown in the UI.
        #[arg(long)]
        display_name: Option<String>,
        /// Wall-time limit of a run, in seconds.
        #[arg(long)]
        timeout: Option<i64>,
        /// Batch: the session completes once its agent has answered, instead of staying
        /// running (its agent warm) for follow-ups until the inactivity timeout.
        #[arg(long)]
        batch: bool,
        /// Seconds without activity before the session stops (0: never); default: the
        /// project's.
        #[arg(long)]
        inactivity_timeout: Option<i64>,
        /// What the agent may do without asking: autonomous (default, inside its sandbox),
        /// ask (you approve each command and edit: `ambient asks`, `ambient answer`), plan
        /// (you approve its plan first).
        #[arg(long, value_parser = |s: &str| s.parse::<model::session::PermissionMode>())]
        permission_mode: Option<model::session::PermissionMode>,
        /// The session's own MCP servers, over the project's: a JSON file in Claude Code's
        /// `.mcp.json` form (`{"mcpServers": {"name": {...}}}`) or the API's (`{"custom":
        /// {...}, "disabled": [...]}`).
        #[arg(long, value_name = "FILE")]
        mcp_config: Option<std::path::PathBuf>,
        /// A workflow to follow: its repository (`ambient workflows` lists the catalogue's).
        #[arg(long, value_name = "URL")]
        workflow: Option<String>,
        /// The workflow's branch (default: main).
        #[arg(long, requires = "workflow")]
        workflow_branch: Option<String>,
        /// The workflow's folder in its repository (default: the root).
        #[arg(long, requires = "workflow")]
        workflow_path: Option<String>,
        /// Commit and push the work in each repository to `ambient/<session>` and open a
        /// pull request when the session ends.
        #[arg(long)]
        push: bool,
        /// Start this many sessions from the prompt (2 to 5) to compare and keep one
        /// (`ambient attempts`): each is a batch session whose work is held until kept.
        /// Prints the group's name alone, the sessions' on standard error.
        #[arg(long, value_parser = clap::value_parser!(u32).range(2..=model::api::MAX_ATTEMPTS as i64), conflicts_with = "inactivity_timeout")]
        attempts: Option<u32>,
    },
    /// Forks a session after one of its turns: a new session that starts from a copy of
    /// its workspace and continues its conversation as it stood then, with this message;
    /// prints the fork's name alone, like `create`.
    Fork {
        /// The session to fork.
        session: String,
        /// The fork's first message ("-" reads it from standard input).
        prompt: String,
        /// The turn to continue after (1: the first); default: the last finished.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        turn: Option<u32>,
        /// Name shown in the UI (default: the source's, marked as a fork).
        #[arg(long)]
        display_name: Option<String>,
    },
    /// Lists a session's finished turns (what `fork --turn` takes): the start of each
    /// answer, and whether a fork can continue after it.
    Turns {
        /// The session.
        session: String,
    },
    /// Shows a session.
    Get {
        /// The session.
        session: String,
    },
    /// Deletes a session (stopping it first).
    Delete {
        /// The session.
        session: String,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ambient: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// A path segment of the API, checked before it is sent (the names are DNS labels).
fn name(what: &str, value: &str) -> Result<String, Error> {
    model::validate::dns1123_label(what, value).map_err(|e| Error::Usage(e.to_string()))?;
    Ok(value.to_owned())
}

/// `text`, or standard input when it is "-".
fn text_or_stdin(text: String) -> Result<String, Error> {
    if text != "-" {
        return Ok(text);
    }
    let mut all = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin(), &mut all)
        .map_err(|e| Error::Local(format!("cannot read standard input: {e}")))?;
    Ok(all)
}

/// A session's MCP servers from a file: Claude Code's `.mcp.json` form (`mcpServers`) or
/// the API's (`custom`, `disabled`).
fn read_mcp_config(path: &std::path::Path) -> Result<model::session::McpServers, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Local(format!("cannot read {}: {e}", path.display())))?;
    model::mcp::parse_config(&text)
        .map_err(|e| Error::Usage(format!("{} {e}", path.display())))?
        .ok_or_else(|| Error::Usage(format!("{} is empty", path.display())))
}

async fn run(cli: Cli) -> Result<(), Error> {
    let format = cli.output;
    match cli.command {
        Command::Login { url } => return login(&url).await,
        Command::Logout => {
            let had = config::remove()?;
            eprintln!(
                "{}",
                if had {
                    "signed out"
                } else {
                    "was not signed in"
                }
            );
            return Ok(());
        }
        Command::Completions { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "ambient", &mut out);
            return output::write(&String::from_utf8_lossy(&out));
        }
        _ => {}
    }
    let client = Client::new(&config::load()?)?;
    let project = name("project", &cli.project)?;
    let sessions = format!("/api/projects/{project}/agentic-sessions");
    match cli.command {
        Command::Projects(Projects::List { search }) => {
            let mut path = "/api/projects?limit=100".to_owned();
            if let Some(s) = search {
                path.push_str(&format!("&search={}", encode(&s)));
            }
            let list: ProjectList = client.get(&path).await?;
            output::print(format, &list, |l| {
                let mut t = Table::new(&["NAME", "DISPLAY NAME", "CREATED"]);
                for p in &l.items {
                    t.row(vec![
                        p.name.clone(),
                        p.display_name.clone(),
                        p.creation_timestamp.clone(),
                    ]);
                }
                t
            })
        }
        Command::Projects(Projects::Create {
            name: n,
            display_name,
            description,
        }) => {
            let req = CreateProjectRequest {
                name: name("name", &n)?,
                display_name,
                description,
            };
            let p: Project = client
                .call(Method::POST, "/api/projects", Some(&req))
                .await?;
            output::print(format, &p, |p| {
                let mut t = Table::new(&["NAME", "DISPLAY NAME"]);
                t.row(vec![p.name.clone(), p.display_name.clone()]);
                t
            })
        }
        Command::Projects(Projects::Delete { name: n }) => {
            let n = name("name", &n)?;
            client
                .send_raw(Method::DELETE, &format!("/api/projects/{n}"), None::<&()>)
                .await?;
            eprintln!("deleted project {n}");
            Ok(())
        }
        Command::Sessions(Sessions::List {
            search,
            limit,
            waiting,
        }) => {
            let mut path = if waiting {
                format!("{sessions}?waiting=true")
            } else {
                format!("{sessions}?limit={limit}")
            };
            if let Some(s) = search {
                path.push_str(&format!("&search={}", encode(&s)));
            }
            let list: SessionList = client.get(&path).await?;
            output::print(format, &list, |l| {
                let mut t =
                    Table::new(&["NAME", "PHASE", "AGENT", "MODEL", "CREATED", "DISPLAY NAME"]);
                for s in &l.items {
                    let s = SessionSummary::of(s);
                    t.row(vec![
                        s.name,
                        s.phase.to_string(),
                        output::agent(s.agent_status).to_owned(),
                        s.model,
                        output::time(s.created_ms),
                        s.display_name,
                    ]);
                }
                t
            })
        }
        Command::Sessions(Sessions::Create {
            prompt,
            repos,
            model,
            display_name,
            timeout,
            batch,
            inactivity_timeout,
            permission_mode,
            mcp_config,
            workflow,
            workflow_branch,
            workflow_path,
            push,
            attempts,
        }) => {
            let mcp_servers = mcp_config.as_deref().map(read_mcp_config).transpose()?;
            let repos = repos
                .iter()
                .map(|r| {
                    let (url, branch) = match r.split_once('#') {
                        Some((u, b)) => (u.to_owned(), Some(b.to_owned())),
                        None => (r.clone(), None),
                    };
                    SessionRepo {
                        url,
                        branch,
                        auto_push: push.then_some(true),
                        provider: None,
                    }
                })
                .collect();
            let req = CreateSessionRequest {
                initial_prompt: text_or_stdin(prompt)?,
                display_name,
                llm_settings: model.map(|m| LlmSettings {
                    model: Some(m),
                    ..Default::default()
                }),
                timeout,
                inactivity_timeout,
                stop_on_run_finished: batch.then_some(true),
                permission_mode,
                repos,
                mcp_servers,
                active_workflow: workflow.map(|git_url| model::session::ActiveWorkflow {
                    git_url,
                    branch: workflow_branch,
                    path: workflow_path,
                }),
                ..Default::default()
            };
            if let Some(attempts) = attempts {
                let req = model::api::CreateAttemptsRequest {
                    attempts,
                    session: req,
                };
                let path = format!("/api/projects/{project}/attempts");
                let created: model::api::AttemptsCreated =
                    client.call(Method::POST, &path, Some(&req)).await?;
                if format == Format::Table {
                    eprintln!("its attempts: {}", created.sessions.join(" "));
                }
                return output::print_name(format, &created, &created.group);
            }
            let created: CreateSessionResponse =
                client.call(Method::POST, &sessions, Some(&req)).await?;
            if format == Format::Table && !created.auto_branch.is_empty() {
                eprintln!("its work goes to branch {}", created.auto_branch);
            }
            output::print_name(format, &created, &created.name)
        }
        Command::Sessions(Sessions::Fork {
            session,
            prompt,
            turn,
            display_name,
        }) => {
            let req = model::api::ForkSessionRequest {
                turn,
                prompt: text_or_stdin(prompt)?,
                display_name,
            };
            let path = format!("{sessions}/{}/fork", name("session", &session)?);
            let created: CreateSessionResponse =
                client.call(Method::POST, &path, Some(&req)).await?;
            if format == Format::Table && !created.auto_branch.is_empty() {
                eprintln!("its work goes to branch {}", created.auto_branch);
            }
            output::print_name(format, &created, &created.name)
        }
        Command::Attempts(Attempts::Show { group, diff }) => {
            let path = format!(
                "/api/projects/{project}/attempts/{}",
                name("group", &group)?
            );
            let g: model::api::AttemptGroup = client.get(&path).await?;
            if diff && format == Format::Table {
                for a in &g.attempts {
                    for c in &a.changes {
                        // What the agent wrote: no control characters reach the terminal.
                        let shown: String = c
                            .diff
                            .chars()
                            .filter(|ch| !ch.is_control() || matches!(ch, '\n' | '\t'))
                            .collect();
                        let head =
                            format!("# {} {} ({} against {})", a.name, c.repo, c.branch, c.base);
                        let head: String = head.chars().filter(|ch| !ch.is_control()).collect();
                        println!("{head}");
                        print!("{shown}");
                    }
                }
                return Ok(());
            }
            output::print(format, &g, |g| {
                let mut t = Table::new(&["NAME", "PHASE", "TURNS", "COST", "CHANGES", "KEPT"]);
                for a in &g.attempts {
                    let changes = a
                        .changes
                        .iter()
                        .map(|c| {
                            format!(
                                "{}: {} files +{} -{}",
                                c.repo, c.files, c.insertions, c.deletions
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(", ");
                    t.row(vec![
                        a.name.clone(),
                        a.phase.to_string(),
                        a.turns.to_string(),
                        format!("${:.4}", a.cost_usd),
                        if changes.is_empty() {
                            "-".into()
                        } else {
                            changes
                        },
                        if a.kept { "yes" } else { "" }.into(),
                    ]);
                }
                t
            })
        }
        Command::Attempts(Attempts::Keep { group, session }) => {
            let path = format!(
                "/api/projects/{project}/attempts/{}/keep",
                name("group", &group)?
            );
            let req = model::api::KeepAttemptRequest {
                session: name("session", &session)?,
            };
            let g: model::api::AttemptGroup = client.call(Method::POST, &path, Some(&req)).await?;
            output::print_name(format, &g, g.kept.as_deref().unwrap_or_default())
        }
        Command::Sessions(Sessions::Turns { session }) => {
            let path = format!("{sessions}/{}/turns", name("session", &session)?);
            let turns: Vec<model::api::SessionTurn> = client.get(&path).await?;
            output::print(format, &turns, |turns| {
                let mut t = Table::new(&["TURN", "FORKABLE", "ANSWER"]);
                for turn in turns {
                    let answer = turn.answer.lines().next().unwrap_or_default();
                    t.row(vec![
                        turn.turn.to_string(),
                        if turn.forkable { "yes" } else { "no" }.into(),
                        if turn.is_error {
                            format!("(failed) {answer}")
                        } else {
                            answer.to_owned()
                        },
                    ]);
                }
                t
            })
        }
        Command::Sessions(Sessions::Get { session }) => {
            let s: AgenticSession = client
                .get(&format!("{sessions}/{}", name("session", &session)?))
                .await?;
            output::print(format, &s, |s| {
                let s = SessionSummary::of(s);
                let mut t = Table::new(&["FIELD", "VALUE"]);
                t.row(vec!["name".into(), s.name]);
                t.row(vec!["phase".into(), s.phase.to_string()]);
                if s.agent_status.is_some() {
                    t.row(vec!["agent".into(), output::agent(s.agent_status).into()]);
                }
                t.row(vec!["model".into(), s.model]);
                t.row(vec!["created".into(), output::time(s.created_ms)]);
                if let Some(m) = s.message {
                    t.row(vec!["message".into(), m]);
                }
                if let Some(r) = s.result {
                    t.row(vec!["turns".into(), r.turns.to_string()]);
                    t.row(vec!["cost".into(), format!("${:.4}", r.cost_usd)]);
                }
                t.row(vec!["prompt".into(), s.initial_prompt]);
                t
            })
        }
        Command::Sessions(Sessions::Delete { session }) => {
            let session = name("session", &session)?;
            client
                .send_raw(
                    Method::DELETE,
                    &format!("{sessions}/{session}"),
                    None::<&()>,
                )
                .await?;
            eprintln!("deleted session {session}");
            Ok(())
        }
        Command::Logs {
            session,
            follow,
            after,
            turn,
        } => {
            let how = match (follow, turn) {
                (false, _) => follow::Until::Now,
                (true, false) => follow::Until::Ended,
                (true, true) => follow::Until::Answered,
            };
            follow::logs(
                &client,
                &project,
                &name("session", &session)?,
                after,
                how,
                format,
            )
            .await
        }
        Command::Send { session, text } => {
            let path = format!("{sessions}/{}/messages", name("session", &session)?);
            let body = model::api::SendMessageRequest {
                text: text_or_stdin(text)?,
            };
            let accepted: MessageAccepted = client.call(Method::POST, &path, Some(&body)).await?;
            output::print(format, &accepted, |a| {
                let mut t = Table::new(&["SEQ"]);
                t.row(vec![a.seq.to_string()]);
                t
            })
        }
        Command::Mcp { session } => {
            let path = format!("{sessions}/{}/mcp/status", name("session", &session)?);
            let status: model::protocol::McpStatus = client.get(&path).await?;
            output::print(format, &status, |m| {
                let mut t = Table::new(&["SERVER", "STATUS", "TOOLS"]);
                for s in &m.servers {
                    let prefix = format!("mcp__{}__", s.name);
                    let tools: Vec<&str> = s
                        .tools
                        .iter()
                        .map(|t| t.strip_prefix(&prefix).unwrap_or(t))
                        .collect();
                    t.row(vec![s.name.clone(), s.status.clone(), tools.join(", ")]);
                }
                t
            })
        }
        Command::Asks { session } => {
            let path = format!("{sessions}/{}/asks", name("session", &session)?);
            let asks: model::api::AskList = client.get(&path).await?;
            output::print(format, &asks, |l| {
                let mut t = Table::new(&["ID", "QUESTION", "OPTIONS"]);
                for a in &l.items {
                    if a.tool != model::protocol::ASK_USER_QUESTION {
                        // A tool call (or a plan) to allow or deny.
                        let what = a.input["command"]
                            .as_str()
                            .or_else(|| a.input["file_path"].as_str())
                            .or_else(|| a.input["plan"].as_str())
                            .map(str::to_owned)
                            .unwrap_or_else(|| a.input.to_string());
                        t.row(vec![
                            a.id.clone(),
                            format!("use {}: {what}", a.tool),
                            "allow | deny".into(),
                        ]);
                        continue;
                    }
                    for q in a.input["questions"].as_array().into_iter().flatten() {
                        let options: Vec<&str> = q["options"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|o| o["label"].as_str())
                            .collect();
                        t.row(vec![
                            a.id.clone(),
                            q["question"].as_str().unwrap_or_default().to_owned(),
                            options.join(" | "),
                        ]);
                    }
                }
                t
            })
        }
        Command::Answer {
            session,
            id,
            answers,
            decline,
            deny,
            reason,
            always,
        } => {
            let session = name("session", &session)?;
            let asks: model::api::AskList =
                client.get(&format!("{sessions}/{session}/asks")).await?;
            let Some(ask) = asks.items.iter().find(|a| a.id == id) else {
                return Err(Error::Api {
                    status: 409,
                    kind: "conflict".into(),
                    message: format!("no question with id {id} waits for an answer"),
                });
            };
            let questions: Vec<String> = ask.input["questions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|q| q["question"].as_str().map(str::to_owned))
                .collect();
            let question = ask.tool == model::protocol::ASK_USER_QUESTION;
            if question && (deny || always) {
                return Err(Error::Usage(
                    "this is a question: answer it, or --decline".into(),
                ));
            }
            if !question && (decline || !answers.is_empty()) {
                return Err(Error::Usage(format!(
                    "the agent asks to use {}: allow it (no answer, --always for the session) or --deny it",
                    ask.tool
                )));
            }
            if question && !decline && answers.len() != questions.len() {
                return Err(Error::Usage(format!(
                    "the agent asked {} question(s); give one answer each",
                    questions.len()
                )));
            }
            let body = model::api::AnswerRequest {
                id,
                answers: if decline {
                    Default::default()
                } else {
                    questions.into_iter().zip(answers).collect()
                },
                deny,
                message: reason,
                always,
            };
            let path = format!("{sessions}/{session}/answers");
            let accepted: MessageAccepted = client.call(Method::POST, &path, Some(&body)).await?;
            output::print(format, &accepted, |a| {
                let mut t = Table::new(&["SEQ"]);
                t.row(vec![a.seq.to_string()]);
                t
            })
        }
        Command::Model { session, model } => {
            let path = format!("{sessions}/{}/model", name("session", &session)?);
            let body = model::api::SetModelRequest { model };
            let s: AgenticSession = client.call(Method::PUT, &path, Some(&body)).await?;
            output::print(format, &s, |s| {
                let s = SessionSummary::of(s);
                let mut t = Table::new(&["NAME", "MODEL"]);
                t.row(vec![s.name, s.model]);
                t
            })
        }
        Command::Workflow {
            session,
            set,
            branch,
            path,
            leave,
        } => {
            let base = format!("{sessions}/{}/workflow", name("session", &session)?);
            if let Some(git_url) = set {
                let wf = model::session::ActiveWorkflow {
                    git_url,
                    branch,
                    path,
                };
                let _: AgenticSession = client.call(Method::POST, &base, Some(&wf)).await?;
            } else if leave {
                let _: AgenticSession = client.call(Method::DELETE, &base, None::<&()>).await?;
            }
            let wf: model::workflow::WorkflowState =
                client.get(&format!("{base}/metadata")).await?;
            output::print(format, &wf, |w| {
                let mut t = Table::new(&["COMMAND", "DESCRIPTION"]);
                for c in &w.commands {
                    t.row(vec![format!("/{}", c.name), c.description.clone()]);
                }
                t
            })
        }
        Command::Workflows => {
            let c: model::workflow::Catalogue = client.get("/api/workflows/ootb").await?;
            if let Some(p) = &c.problem {
                eprintln!("the catalogue could not be read: {p}");
            }
            output::print(format, &c, |c| {
                let mut t = Table::new(&["ID", "NAME", "PATH", "URL"]);
                for w in &c.workflows {
                    t.row(vec![
                        w.id.clone(),
                        w.name.clone(),
                        w.path.clone(),
                        format!("{}#{}", w.git_url, w.branch),
                    ]);
                }
                t
            })
        }
        Command::Interrupt { session } => control(&client, &sessions, &session, "interrupt").await,
        Command::Stop { session } => control(&client, &sessions, &session, "stop").await,
        Command::Continue { session } => control(&client, &sessions, &session, "start").await,
        Command::Export { session } => {
            let path = format!("{sessions}/{}/export", name("session", &session)?);
            let mut resp = client.send_raw(Method::GET, &path, None::<&()>).await?;
            // Streamed as it comes: a long log is never held whole.
            loop {
                match resp.chunk().await {
                    Ok(Some(chunk)) => output::write(&String::from_utf8_lossy(&chunk))?,
                    Ok(None) => break,
                    Err(e) => return Err(Error::Unreachable(format!("the export broke off: {e}"))),
                }
            }
            output::write("\n")
        }
        Command::Files(command) => files::run(&client, format, &sessions, command).await,
        Command::Login { .. } | Command::Logout | Command::Completions { .. } => Ok(()),
    }
}

/// POSTs `…/{session}/{verb}` and says so.
async fn control(client: &Client, sessions: &str, session: &str, verb: &str) -> Result<(), Error> {
    let session = name("session", session)?;
    client
        .send_raw(
            Method::POST,
            &format!("{sessions}/{session}/{verb}"),
            None::<&()>,
        )
        .await?;
    let done = match verb {
        "interrupt" => "interrupted",
        "stop" => "stopping",
        _ => "continuing",
    };
    eprintln!("{done} {session}");
    Ok(())
}

/// A query parameter's value, percent-encoded.
fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn login(url: &str) -> Result<(), Error> {
    let url = client::parse_url(url)?;
    let key = match std::env::var("AMBIENT_KEY")
        .ok()
        .filter(|k| !k.trim().is_empty())
    {
        Some(k) => k,
        None => {
            if std::io::stdin().is_terminal() {
                eprint!("access key: ");
            }
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .map_err(|e| Error::Local(format!("cannot read the key: {e}")))?;
            line
        }
    };
    let key = key.trim().to_owned();
    if key.is_empty() {
        return Err(Error::Usage(
            "no access key given (AMBIENT_KEY, or standard input)".into(),
        ));
    }
    let profile = Profile {
        url: url.as_str().trim_end_matches('/').to_owned(),
        key,
    };
    let client = Client::new(&profile)?;
    // The key is tried before it is kept.
    let _: ProjectList = client.get("/api/projects?limit=1").await?;
    let path = config::save(&profile)?;
    eprintln!("signed in to {} (saved in {})", profile.url, path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
        let cli =
            Cli::try_parse_from(["ambient", "-o", "json", "logs", "-f", "session-a"]).unwrap();
        assert_eq!(cli.output, Format::Json);
        assert!(matches!(cli.command, Command::Logs { follow: true, .. }));
        assert!(Cli::try_parse_from(["ambient", "-o", "xml", "projects", "list"]).is_err());
    }
}
