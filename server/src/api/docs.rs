//! The OpenAPI document: paths and body schemas from the handlers (utoipa), and the
//! `AgenticSession` schema from the CRD's own (schemars), so it cannot drift from the type.

use kube::CustomResourceExt;
use serde_json::{Value, json};
use utoipa::OpenApi;

/// Error answers every operation may give, documented once.
pub const ERRORS: &str = "Errors are `{\"error\": kind, \"message\": text}` with status 400 (invalid), \
401, 403, 404 (unknown), 409 (wrong state), 413 (too large), 415 (not JSON).";

#[derive(OpenApi)]
#[openapi(
    info(title = "Ambient Code Platform API", description = "The Ambient Code Platform. Every route but /health needs an access key (`Authorization: Bearer <key>`; in Kubernetes mode also a Kubernetes token) or a browser session. Errors are `{\"error\", \"message\"}` JSON with a 4xx status for client mistakes."),
    components(schemas(model::api::ApiError)),
    tags(
        (name = "projects", description = "Projects (namespaces) and their settings"),
        (name = "sessions", description = "Agentic sessions"),
        (name = "control", description = "Steering running sessions"),
        (name = "workspace", description = "A running session's files, through its runner"),
        (name = "workflows", description = "Workflows: a session's workflow and its commands, switching it, the catalogue"),
        (name = "realtime", description = "WebSocket endpoints"),
        (name = "keys", description = "Access keys (`Authorization: Bearer <key>`)"),
        (name = "sharing", description = "Who a project is shared with (Kubernetes mode: the cluster's users and groups)"),
        (name = "meta", description = "Server information"),
    )
)]
struct ApiDoc;

/// The document before routes are added.
pub fn base() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The served document: routes added, the `AgenticSession` schema taken from the CRD, the
/// rules of validation stated, `models` the models sessions may choose.
pub fn finish(openapi: utoipa::openapi::OpenApi, models: &[String]) -> serde_json::Value {
    let mut doc = serde_json::to_value(&openapi).unwrap_or_default();
    // The router's catch-all `{*path}` is a plain path parameter to OpenAPI.
    if let Some(paths) = doc["paths"].as_object_mut() {
        let wild: Vec<String> = paths.keys().filter(|k| k.contains("{*")).cloned().collect();
        for key in wild {
            if let Some(item) = paths.remove(&key) {
                paths.insert(key.replace("{*", "{"), item);
            }
        }
    }
    let crd = model::AgenticSession::crd();
    let schema = crd
        .spec
        .versions
        .first()
        .and_then(|v| v.schema.as_ref())
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .and_then(|s| serde_json::to_value(s).ok())
        .unwrap_or_else(|| serde_json::json!({"type": "object"}));
    doc["components"]["schemas"]["AgenticSession"] = schema;
    constrain(&mut doc);
    let model = json!({"type": ["string", "null"], "enum": models.iter().map(|m| json!(m)).chain([Value::Null]).collect::<Vec<_>>(),
        "description": "Model id passed to Claude Code, one of the server's models. Default: the server's default model."});
    doc["components"]["schemas"]["LlmSettings"]["properties"]["model"] = model;
    doc["components"]["schemas"]["SetModelRequest"]["properties"]["model"] = json!({"type": "string",
        "enum": models, "description": "One of the server's models."});
    doc["components"]["schemas"]["SetModelRequest"]["required"] = json!(["model"]);
    operations(&mut doc);
    doc
}

/// A string no control character is in (what `char::is_control` refuses).
const NO_CONTROL: &str = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$";
/// Same, and not blank.
const TEXT: &str = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$";
/// A path in a workspace, as the document states it (plain components, none hidden).
const WORKSPACE_PATH: &str = "^[A-Za-z0-9_-][A-Za-z0-9._-]*(/[A-Za-z0-9_-][A-Za-z0-9._-]*)*$";
/// A DNS-1123 label.
const DNS_LABEL: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

/// The rules validation enforces, stated in the document: clients generated from it (and
/// the API fuzzer in `make test`) send what the server takes. The numbers come from the
/// same constants validation uses.
fn constrain(doc: &mut Value) {
    use model::validate as v;
    let schemas = &mut doc["components"]["schemas"];
    let nullable = |mut s: Value| {
        s["type"] = json!([s["type"].clone(), "null"]);
        s
    };
    let label = json!({"type": "string", "pattern": DNS_LABEL, "minLength": 1, "maxLength": 63});
    // Limits in bytes are stated as lengths: an ASCII text of that length is taken. (The
    // message's 100 KiB is in its description only: schemathesis cannot generate a string
    // that long and sends a non-object body instead.)
    let message = json!({"type": "string", "pattern": "^[\\s\\S]*\\S[\\s\\S]*$", "minLength": 1,
        "description": format!("Not blank; at most {} bytes of UTF-8.", model::protocol::MAX_MESSAGE_TEXT)});
    let display =
        json!({"type": "string", "pattern": NO_CONTROL, "maxLength": v::MAX_DISPLAY_NAME});
    let display_set = json!({"type": "string", "pattern": TEXT, "minLength": 1, "maxLength": v::MAX_DISPLAY_NAME});
    let seconds = json!({"type": ["integer", "null"], "minimum": 0, "maximum": v::MAX_SECONDS,
        "description": "Seconds, at most 30 days (0 disables)."});
    let description = json!({"type": ["string", "null"], "maxLength": v::MAX_DESCRIPTION,
        "description": format!("Free text, at most {} bytes of UTF-8.", v::MAX_DESCRIPTION)});
    // Names that would rewire the runner are refused (`model::runner_env::is_reserved`).
    let reserved: Vec<&str> = model::runner_env::reserved_names().collect();
    let prefixes = model::runner_env::RESERVED_PREFIXES.join("|");
    let env_name = json!({"type": "string", "maxLength": 256,
        "pattern": format!("^(?!(?:{prefixes}))[A-Za-z_][A-Za-z0-9_]*$"),
        "not": {"enum": reserved}});
    let project_name = json!({"type": "string", "minLength": 1, "maxLength": 63,
        "pattern": format!("^(?!(?:{}))[a-z0-9]([-a-z0-9]*[a-z0-9])?$", v::RESERVED_PROJECT_PREFIXES.join("|"))});
    // What `validate::repo_url` and `validate::branch_name` take, or a safe part of it.
    let repo_url = json!({"type": "string", "maxLength": 2048,
        "pattern": "^(https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?/[A-Za-z0-9._~/-]*[A-Za-z0-9_~-]|git@[A-Za-z0-9.-]+:[A-Za-z0-9._~/-]*[A-Za-z0-9_~-]|file:///[A-Za-z0-9._~/-]*[A-Za-z0-9_~-])$"});
    let branch = json!({"type": ["string", "null"], "minLength": 1, "maxLength": 255,
        "pattern": "^[A-Za-z0-9_][A-Za-z0-9_-]*(/[A-Za-z0-9_][A-Za-z0-9_-]*)*$"});
    let patch = |schemas: &mut Value, name: &str, prop: &str, with: Value| {
        if let Some(p) = schemas.get_mut(name).and_then(|s| s.get_mut("properties")) {
            let keep = p[prop]["description"].clone();
            p[prop] = with;
            if p[prop]["description"].is_null() && !keep.is_null() {
                p[prop]["description"] = keep;
            }
        }
    };
    let require = |schemas: &mut Value, name: &str, fields: &[&str]| {
        schemas[name]["required"] = json!(fields);
    };
    // What the agent asks, and the answers.
    let max_answer = platform::services::MAX_ANSWER_TEXT;
    patch(
        schemas,
        "AnswerRequest",
        "id",
        json!({"type": "string", "minLength": 1, "maxLength": 256}),
    );
    require(schemas, "AnswerRequest", &["id"]);
    patch(
        schemas,
        "AnswerRequest",
        "answers",
        json!({"type": "object", "maxProperties": platform::services::MAX_ANSWERS,
            "propertyNames": {"maxLength": max_answer},
            "additionalProperties": {"type": "string", "pattern": TEXT, "maxLength": max_answer}}),
    );
    patch(
        schemas,
        "AnswerRequest",
        "message",
        json!({"type": ["string", "null"], "maxLength": max_answer}),
    );
    // Sessions.
    patch(
        schemas,
        "CreateSessionRequest",
        "initialPrompt",
        message.clone(),
    );
    require(schemas, "CreateSessionRequest", &["initialPrompt"]);
    patch(schemas, "ForkSessionRequest", "prompt", message.clone());
    require(schemas, "ForkSessionRequest", &["prompt"]);
    require(schemas, "CreateAttemptsRequest", &["attempts", "session"]);
    require(schemas, "KeepAttemptRequest", &["session"]);
    patch(
        schemas,
        "KeepAttemptRequest",
        "session",
        json!({"type": "string", "minLength": 1, "maxLength": 63}),
    );
    patch(
        schemas,
        "ForkSessionRequest",
        "displayName",
        nullable(display.clone()),
    );
    patch(
        schemas,
        "CreateSessionRequest",
        "displayName",
        nullable(display.clone()),
    );
    patch(schemas, "CreateSessionRequest", "timeout", seconds.clone());
    patch(
        schemas,
        "CreateSessionRequest",
        "inactivityTimeout",
        seconds.clone(),
    );
    schemas["CreateSessionRequest"]["properties"]["repos"]["maxItems"] = json!(v::MAX_REPOS);
    patch(
        schemas,
        "CreateSessionRequest",
        "environmentVariables",
        json!({
        "type": "object", "maxProperties": 100, "propertyNames": env_name,
        "additionalProperties": {"type": "string", "maxLength": v::MAX_ENV_VALUE},
        "description": "Variables of the agent's environment. Names of the runner's contract, credentials, loader, shell, git and ssh variables are refused."}),
    );
    patch(schemas, "SessionRepo", "url", repo_url.clone());
    patch(schemas, "SessionRepo", "branch", branch.clone());
    patch(schemas, "ActiveWorkflow", "gitUrl", repo_url);
    patch(schemas, "ActiveWorkflow", "branch", branch);
    patch(
        schemas,
        "ActiveWorkflow",
        "path",
        json!({"type": ["string", "null"], "maxLength": model::workflow::MAX_PATH,
            "pattern": model::workflow::PATH_PATTERN,
            "description": "Folder of the workflow in the repository: plain names separated by '/'. Default: the root."}),
    );
    patch(
        schemas,
        "UpdateSessionRequest",
        "initialPrompt",
        nullable(message.clone()),
    );
    patch(
        schemas,
        "UpdateSessionRequest",
        "displayName",
        nullable(display_set.clone()),
    );
    patch(schemas, "UpdateSessionRequest", "timeout", seconds.clone());
    patch(
        schemas,
        "UpdateSessionRequest",
        "inactivityTimeout",
        seconds.clone(),
    );
    patch(
        schemas,
        "DisplayNameRequest",
        "displayName",
        display_set.clone(),
    );
    require(schemas, "DisplayNameRequest", &["displayName"]);
    patch(
        schemas,
        "CloneSessionRequest",
        "targetProject",
        nullable(label.clone()),
    );
    patch(
        schemas,
        "CloneSessionRequest",
        "newSessionName",
        nullable(label.clone()),
    );
    patch(schemas, "SendMessageRequest", "text", message);
    require(schemas, "SendMessageRequest", &["text"]);
    // Projects.
    patch(schemas, "CreateProjectRequest", "name", project_name);
    require(schemas, "CreateProjectRequest", &["name"]);
    patch(
        schemas,
        "CreateProjectRequest",
        "displayName",
        nullable(display),
    );
    patch(
        schemas,
        "CreateProjectRequest",
        "description",
        description.clone(),
    );
    patch(
        schemas,
        "UpdateProjectRequest",
        "displayName",
        nullable(display_set.clone()),
    );
    patch(schemas, "UpdateProjectRequest", "description", description);
    patch(
        schemas,
        "ProjectSettingsBody",
        "inactivityTimeoutSeconds",
        seconds,
    );
    // Credentials: the known keys only; URLs are http(s).
    let secrets: serde_json::Map<String, Value> = model::api::RUNNER_SECRET_KEYS
        .iter()
        .map(|k| {
            let value = if k.ends_with("_URL") {
                json!({"type": ["string", "null"], "pattern": "^(https?://[^\\s\\u0000-\\u001f\\u007f-\\u009f]+)?$", "maxLength": v::MAX_SECRET})
            } else {
                json!({"type": ["string", "null"], "pattern": NO_CONTROL, "maxLength": v::MAX_SECRET})
            };
            ((*k).to_owned(), value)
        })
        .collect();
    patch(
        schemas,
        "UpdateRunnerSecrets",
        "data",
        json!({
        "type": "object", "properties": secrets, "additionalProperties": false,
        "patternProperties": {"^MCP_[A-Z0-9_]{1,60}$":
            {"type": ["string", "null"], "pattern": NO_CONTROL, "maxLength": v::MAX_SECRET}},
        "description": "Values by key: a value sets a key, null or \"\" removes it. Keys `MCP_*` are credentials the project's MCP servers reference in their headers as `${MCP_NAME}`."}),
    );
    mcp_schemas(schemas);
    // Keys.
    patch(
        schemas,
        "CreateAccessKeyRequest",
        "name",
        json!({"type": "string", "pattern": TEXT, "minLength": 1, "maxLength": 100}),
    );
    // The owner's keys open every project with every role: their request has no role.
    let mut owner_key = schemas["CreateAccessKeyRequest"].clone();
    if let Some(props) = owner_key["properties"].as_object_mut() {
        props.remove("role");
    }
    owner_key["additionalProperties"] = json!(false);
    owner_key["description"] =
        json!("`POST /api/keys`: an owner's key (every project, every role).");
    schemas["CreateOwnerKeyRequest"] = owner_key;
    let owner_body = &mut doc["paths"]["/api/keys"]["post"]["requestBody"]["content"]["application/json"]
        ["schema"];
    if owner_body.is_object() {
        *owner_body = json!({"$ref": "#/components/schemas/CreateOwnerKeyRequest"});
    }
}

/// Every operation: a unique `operationId`, the errors the doors and extractors can answer
/// (documented where they apply), the path and query parameters' rules, and links from a
/// created project or session to what can be done with it.
fn operations(doc: &mut Value) {
    use model::validate as v;
    doc["components"]["securitySchemes"] = json!({
        "accessKey": {"type": "http", "scheme": "bearer",
            "description": "An access key: the install secret in the data directory, an owner's key (/keys, POST /api/keys), or a project's key with a role (POST /api/projects/{project}/keys)."},
        "browserSession": {"type": "apiKey", "in": "cookie", "name": "ambient_session_<port>",
            "description": "The cookie a login link or the login page sets (HttpOnly, SameSite=Strict)."}
    });
    doc["security"] = json!([{"accessKey": []}, {"browserSession": []}]);
    let error = json!({"description": "Error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ApiError"}}}});
    let described = |what: &str| {
        let mut e = error.clone();
        e["description"] = json!(what);
        e
    };
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(ops) = item.as_object_mut() else {
            continue;
        };
        for (method, op) in ops.iter_mut() {
            op["operationId"] = json!(operation_id(method, path));
            if path == "/health" {
                op["security"] = json!([]);
                continue;
            }
            let has_body = op.get("requestBody").is_some();
            let responses = &mut op["responses"];
            let mut add = |status: &str, what: &str| {
                if responses[status].is_null() {
                    responses[status] = described(what);
                }
            };
            add(
                "400",
                "Invalid input: a parameter or the body breaks a rule the message names",
            );
            add("401", "No valid access key or browser session");
            add(
                "403",
                "Refused: the caller's role does not allow it (the message says what is needed), a runner token, a host name this server does not serve, or a request from another origin",
            );
            if path.contains('{') {
                add("404", "No such project, session or key");
            }
            if has_body {
                add("413", "The body is larger than the limit");
                add(
                    "415",
                    "The body is not JSON (Content-Type: application/json)",
                );
            }
            let params = op.get_mut("parameters").and_then(Value::as_array_mut);
            for param in params.into_iter().flatten() {
                let schema = match (param["in"].as_str(), param["name"].as_str()) {
                    (Some("path"), Some("project" | "session")) => {
                        json!({"type": "string", "pattern": DNS_LABEL, "minLength": 1, "maxLength": 63})
                    }
                    (Some("path"), Some("id")) => {
                        json!({"type": "integer", "format": "int64", "minimum": 1})
                    }
                    (Some("query"), Some("limit")) => {
                        json!({"type": "integer", "minimum": 1, "maximum": 100})
                    }
                    (Some("query"), Some("offset")) => {
                        json!({"type": "integer", "minimum": 0, "maximum": v::MAX_OFFSET})
                    }
                    (Some("query"), Some("search")) => {
                        json!({"type": "string", "maxLength": v::MAX_SEARCH})
                    }
                    (Some("query"), Some("after")) => {
                        json!({"type": "integer", "minimum": 0, "maximum": i64::MAX})
                    }
                    // An upload's name (sanitised, so the document states the clean ones),
                    // and a workspace path: plain components (`.`, `..` and absolute paths
                    // are refused).
                    (Some("path"), Some("name")) => {
                        json!({"type": "string", "minLength": 1, "maxLength": 128,
                            "pattern": "^[A-Za-z0-9_-][A-Za-z0-9._-]*$"})
                    }
                    (Some("path"), Some("path")) => {
                        json!({"type": "string", "minLength": 1, "maxLength": model::protocol::files::MAX_FILES_PATH,
                            "pattern": WORKSPACE_PATH})
                    }
                    (Some("query"), Some("path")) => {
                        json!({"type": "string", "maxLength": model::protocol::files::MAX_FILES_PATH,
                            "pattern": format!("^({})?$", WORKSPACE_PATH.trim_start_matches('^').trim_end_matches('$'))})
                    }
                    _ => continue,
                };
                param["schema"] = schema;
            }
        }
    }
    // Links: what a client (and the fuzzer) can do with what it just made.
    let session_ops = [
        ("get", "/api/projects/{project}/agentic-sessions/{session}"),
        ("put", "/api/projects/{project}/agentic-sessions/{session}"),
        (
            "put",
            "/api/projects/{project}/agentic-sessions/{session}/displayname",
        ),
        (
            "post",
            "/api/projects/{project}/agentic-sessions/{session}/clone",
        ),
        (
            "post",
            "/api/projects/{project}/agentic-sessions/{session}/start",
        ),
        (
            "post",
            "/api/projects/{project}/agentic-sessions/{session}/stop",
        ),
        (
            "post",
            "/api/projects/{project}/agentic-sessions/{session}/interrupt",
        ),
        (
            "post",
            "/api/projects/{project}/agentic-sessions/{session}/messages",
        ),
        (
            "put",
            "/api/projects/{project}/agentic-sessions/{session}/model",
        ),
        (
            "get",
            "/api/projects/{project}/agentic-sessions/{session}/asks",
        ),
        (
            "post",
            "/api/projects/{project}/agentic-sessions/{session}/answers",
        ),
        (
            "get",
            "/api/projects/{project}/agentic-sessions/{session}/export",
        ),
        (
            "get",
            "/api/projects/{project}/agentic-sessions/{session}/workspace",
        ),
        (
            "get",
            "/api/projects/{project}/agentic-sessions/{session}/git/status",
        ),
        (
            "get",
            "/api/projects/{project}/agentic-sessions/{session}/mcp/status",
        ),
        (
            "delete",
            "/api/projects/{project}/agentic-sessions/{session}",
        ),
    ];
    let project_ops = [
        ("get", "/api/projects/{project}"),
        ("put", "/api/projects/{project}"),
        ("get", "/api/projects/{project}/agentic-sessions"),
        ("post", "/api/projects/{project}/agentic-sessions"),
        ("get", "/api/projects/{project}/runner-secrets"),
        ("put", "/api/projects/{project}/runner-secrets"),
        ("get", "/api/projects/{project}/settings"),
        ("put", "/api/projects/{project}/settings"),
        ("delete", "/api/projects/{project}"),
    ];
    let links = |ops: &[(&str, &str)], params: Value| -> Value {
        let map: serde_json::Map<String, Value> = ops
            .iter()
            .map(|(m, p)| {
                let id = operation_id(m, p);
                (id.clone(), json!({"operationId": id, "parameters": params}))
            })
            .collect();
        Value::Object(map)
    };
    let created_project = links(&project_ops, json!({"project": "$response.body#/name"}));
    let created_session = links(
        &session_ops,
        json!({"project": "$request.path.project", "session": "$response.body#/name"}),
    );
    let created_key = links(
        &[("delete", "/api/keys/{id}")],
        json!({"id": "$response.body#/accessKey/id"}),
    );
    let created_project_key = links(
        &[("delete", "/api/projects/{project}/keys/{id}")],
        json!({"project": "$request.path.project", "id": "$response.body#/accessKey/id"}),
    );
    for (path, method, status, links) in [
        ("/api/projects", "post", "201", created_project),
        (
            "/api/projects/{project}/agentic-sessions",
            "post",
            "201",
            created_session,
        ),
        ("/api/keys", "post", "201", created_key),
        (
            "/api/projects/{project}/keys",
            "post",
            "201",
            created_project_key,
        ),
    ] {
        if let Some(r) = paths.get_mut(path).and_then(|p| p.get_mut(method)) {
            r["responses"][status]["links"] = links;
        }
    }
}

/// A unique operation id from the method and the path: `post_api_projects_project_agentic_sessions`.
fn operation_id(method: &str, path: &str) -> String {
    let mut id = method.to_owned();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        id.push('_');
        id.extend(
            part.trim_matches(|c| c == '{' || c == '}')
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }),
        );
    }
    id
}

/// The MCP server schemas: the project's servers (`McpServers`, whose HTTP headers may
/// reference MCP credentials as `${MCP_NAME}`) and a session's (`SessionMcpServers`, which
/// may not), each transport with the bounds `model::mcp` checks (kept under the 32 KiB a
/// server's JSON may have).
fn mcp_schemas(schemas: &mut Value) {
    let server_name = json!({"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"});
    // Case-insensitive names of the headers the platform sets.
    let reserved = [
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "x-ambient-proxy-token",
    ]
    .iter()
    .map(|h| {
        h.chars()
            .map(|c| {
                if c.is_ascii_alphabetic() {
                    format!("[{}{}]", c.to_ascii_uppercase(), c)
                } else {
                    c.to_string()
                }
            })
            .collect::<String>()
    })
    .collect::<Vec<_>>()
    .join("|");
    let header_name = json!({"type": "string", "pattern": "^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$",
        "not": {"pattern": format!("^({reserved})$")}});
    // `${` only where the model allows it: nowhere (`no_ref`), or only to begin an MCP
    // credential reference (`with_refs`); no control character; as `model::mcp` checks.
    const C: &str = "[^$\\u0000-\\u001f\\u007f-\\u009f]";
    const D: &str = "[^${\\u0000-\\u001f\\u007f-\\u009f]";
    const R: &str = "\\$\\{MCP_[A-Z0-9_]{1,60}\\}";
    let no_ref = |max: usize| {
        json!({"type": "string", "maxLength": max,
        "pattern": format!("^{C}*(\\$+{D}{C}*)*\\$*$")})
    };
    let with_refs = json!({"type": "string", "maxLength": model::mcp::MAX_HEADER_VALUE,
        "pattern": format!("^({C}|{R}|\\$+{D}|\\$+{R})*\\$*$")});
    let plain_header = no_ref(model::mcp::MAX_HEADER_VALUE);
    let url = json!({"type": "string", "maxLength": model::mcp::MAX_URL,
        "pattern": "^https?://[^\\s/?#@$\\u0000-\\u001f\\u007f-\\u009f]+([/?#][^\\s$\\u0000-\\u001f\\u007f-\\u009f]*)?$"});
    let stdio = json!({"type": "object", "title": "stdio", "additionalProperties": false, "required": ["command"],
        "properties": {
            "type": {"type": "string", "enum": ["stdio"]},
            "command": {"type": "string", "maxLength": model::mcp::MAX_COMMAND, "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]*\\S[^\\u0000-\\u001f\\u007f-\\u009f]*$"},
            "args": {"type": "array", "maxItems": model::mcp::MAX_ARGS, "items": {"type": "string", "maxLength": model::mcp::MAX_ARG}},
            "env": {"type": "object", "maxProperties": model::mcp::MAX_ENV,
                "propertyNames": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]{0,63}$"},
                "additionalProperties": no_ref(model::mcp::MAX_ENV_VALUE),
                "description": "The server's environment. It runs in the agent's sandbox, where the agent could read it: no credential reference."}}});
    let http = |kind: &str, value: &Value, note: &str| {
        json!({"type": "object", "title": kind,
        "additionalProperties": false, "required": ["type", "url"],
        "properties": {
            "type": {"type": "string", "enum": [kind]},
            "url": url,
            "headers": {"type": "object", "maxProperties": model::mcp::MAX_HEADERS,
                "propertyNames": header_name, "additionalProperties": value, "description": note}}})
    };
    let servers = |name: &str, header_value: &Value, note: &str| {
        let mut out = schemas[name].clone();
        out["properties"]["custom"] = json!({"type": "object",
            "maxProperties": model::validate::MAX_MCP_SERVERS, "propertyNames": server_name,
            "additionalProperties": {"oneOf": [stdio, http("http", header_value, note), http("sse", &plain_header, "Headers sent with every request.")]},
            "description": "Servers by name: stdio (a command `claude` starts in the agent's sandbox), http (streamable HTTP, relayed by the runner's proxy) or sse."});
        out["properties"]["disabled"] = json!({"type": "array",
            "maxItems": model::validate::MAX_MCP_SERVERS, "items": server_name,
            "description": "Names of inherited servers to leave out."});
        out
    };
    let project = servers(
        "McpServers",
        &with_refs,
        "Headers the runner's proxy adds; `${MCP_NAME}` is replaced by that project credential (runner-secrets), which never reaches the agent.",
    );
    let mut session = servers(
        "McpServers",
        &plain_header,
        "Headers the runner's proxy adds (a session's servers take no credential).",
    );
    session["description"] = json!(
        "A session's own MCP servers, over the project's: they may not reference project credentials."
    );
    schemas["McpServers"] = project;
    schemas["SessionMcpServers"] = session;
    schemas["CreateSessionRequest"]["properties"]["mcpServers"] =
        json!({"oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/SessionMcpServers"}]});
}
