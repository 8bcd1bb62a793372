//! The session's Files panel: the workspace's tree (directories, files, the agent's links
//! shown as links), a file's contents (highlighted; images shown), each repository's branch
//! and diff, downloads (a file, the whole workspace) and uploads into `file-uploads/`.
//! Served by the session's runner while it runs; the panel is its own lazily loaded WASM
//! chunk, fetched when a person first opens it.

use leptos::prelude::*;
use model::protocol::files::{FileEntry, Listing, RepoState, image_type, url_path};
use serde::{Deserialize, Serialize};

use crate::error::AppError;
use crate::rpc::Json;

/// Most bytes of a file shown in the panel (the rest is a download away).
pub const MAX_SHOWN: usize = 512 * 1024;

/// A file's beginning, as the panel shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileText {
    /// Its text (lossless UTF-8), or `None` when it is not text.
    pub text: Option<String>,
    /// Its size in bytes, when known.
    pub size: Option<u64>,
    /// Whether only its first [`MAX_SHOWN`] bytes are shown.
    pub cut: bool,
}

/// One directory of the session's workspace.
#[server(prefix = "/rpc", input = Json, output = Json)]
pub async fn list_files(
    project: String,
    session: String,
    path: String,
) -> Result<Listing, AppError> {
    let (services, caller) = crate::ssr::context().await?;
    let key = model::session::SessionKey::new(project, session);
    services
        .list_workspace(&caller, &key, &path)
        .await
        .map_err(crate::ssr::refusal)
}

/// The beginning of a file of the session's workspace, as text if it is text.
#[server(prefix = "/rpc", input = Json, output = Json)]
pub async fn read_file_text(
    project: String,
    session: String,
    path: String,
) -> Result<FileText, AppError> {
    use futures::StreamExt as _;
    let (services, caller) = crate::ssr::context().await?;
    let key = model::session::SessionKey::new(project, session);
    let download = services
        .read_workspace_file(&caller, &key, &path)
        .await
        .map_err(crate::ssr::refusal)?;
    let size = download.size;
    let mut bytes = Vec::new();
    let mut stream = std::pin::pin!(download.into_stream());
    while bytes.len() <= MAX_SHOWN {
        match stream.next().await {
            Some(Ok(piece)) => bytes.extend_from_slice(&piece),
            Some(Err(e)) => return Err(AppError::new("unavailable", e.to_string())),
            None => break,
        }
    }
    // What is not read is not sent: dropping the stream tells the runner to stop.
    let cut = bytes.len() > MAX_SHOWN;
    bytes.truncate(MAX_SHOWN);
    Ok(FileText {
        text: as_text(bytes, cut),
        size,
        cut,
    })
}

/// Each repository's branch, changes and diff.
#[server(prefix = "/rpc", input = Json, output = Json)]
pub async fn repo_states(project: String, session: String) -> Result<Vec<RepoState>, AppError> {
    let (services, caller) = crate::ssr::context().await?;
    let key = model::session::SessionKey::new(project, session);
    services
        .workspace_repos(&caller, &key)
        .await
        .map_err(crate::ssr::refusal)
}

/// `bytes` as text, when they are: UTF-8 (a character cut at the end of a shortened file
/// dropped) with no NUL byte.
#[cfg_attr(not(feature = "ssr"), allow(dead_code))]
pub fn as_text(mut bytes: Vec<u8>, cut: bool) -> Option<String> {
    if bytes.contains(&0) {
        return None;
    }
    if cut {
        // Up to three bytes of a character split by the cut.
        for _ in 0..3 {
            if std::str::from_utf8(&bytes).is_ok() {
                break;
            }
            bytes.pop();
        }
    }
    String::from_utf8(bytes).ok()
}

/// Whether a page may show the file as an image (`<img>`: nothing in it runs).
fn is_image(path: &str) -> bool {
    image_type(path).is_some()
}

/// The highlighting language of a file, by its extension.
fn language(path: &str) -> String {
    path.rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default()
}

/// The panel, loaded on demand (see the module's documentation).
#[lazy]
pub fn files_panel(project: String, name: String, can_edit: bool) -> AnyView {
    view! { <FilesPanel project name can_edit/> }.into_any()
}

/// What the panel shows beside the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tab {
    Tree,
    Changes,
}

#[component]
fn FilesPanel(project: String, name: String, can_edit: bool) -> impl IntoView {
    let base = format!("/api/projects/{project}/agentic-sessions/{name}");
    let dir = RwSignal::new(String::new());
    let open = RwSignal::new(None::<String>);
    let tab = RwSignal::new(Tab::Tree);
    let reload = RwSignal::new(0u32);
    let listing = {
        let (project, name) = (project.clone(), name.clone());
        LocalResource::new(move || {
            let (project, name, path) = (project.clone(), name.clone(), dir.get());
            reload.track();
            async move { list_files(project, name, path).await }
        })
    };
    let file = {
        let (project, name) = (project.clone(), name.clone());
        LocalResource::new(move || {
            let (project, name, path) = (project.clone(), name.clone(), open.get());
            async move {
                match path {
                    Some(path) if !is_image(&path) => {
                        Some(read_file_text(project, name, path).await)
                    }
                    _ => None,
                }
            }
        })
    };
    let repos = {
        let (project, name) = (project.clone(), name.clone());
        LocalResource::new(move || {
            let (project, name, on) = (project.clone(), name.clone(), tab.get() == Tab::Changes);
            reload.track();
            async move {
                if on {
                    Some(repo_states(project, name).await)
                } else {
                    None
                }
            }
        })
    };
    let archive = format!("{base}/workspace.tar.gz");
    let upload_status = RwSignal::new(None::<Result<String, String>>);
    let upload_url = format!("{base}/workspace/file-uploads/");
    let file_url = move |path: &str| format!("{base}/workspace/{}", url_path(path));
    let crumbs = move || {
        let d = dir.get();
        let mut out = vec![("workspace".to_owned(), String::new())];
        let mut acc = String::new();
        for part in d.split('/').filter(|p| !p.is_empty()) {
            if !acc.is_empty() {
                acc.push('/');
            }
            acc.push_str(part);
            out.push((part.to_owned(), acc.clone()));
        }
        out
    };
    let head = view! {
        <div class="files-head">
            <div class="tabs" role="tablist">
                <button type="button" role="tab" class="btn" aria-selected=move || (tab.get() == Tab::Tree).to_string()
                    on:click=move |_| tab.set(Tab::Tree)>"Files"</button>
                <button type="button" role="tab" class="btn" aria-selected=move || (tab.get() == Tab::Changes).to_string()
                    on:click=move |_| tab.set(Tab::Changes)>"Changes"</button>
            </div>
            <div class="files-actions">
                <button type="button" class="btn" on:click=move |_| reload.update(|n| *n += 1)>"Refresh"</button>
                <a class="btn" href=archive download="">"Download workspace (.tar.gz)"</a>
                {can_edit.then(|| view! { <Upload url=upload_url.clone() status=upload_status reload/> })}
            </div>
        </div>
        {move || upload_status.get().map(|r| match r {
            Ok(m) => view! { <p class="muted" role="status">{m}</p> }.into_any(),
            Err(m) => view! { <p class="error" role="alert">{m}</p> }.into_any(),
        })}
    }
    .into_any();
    let shown = move || {
        open.get().map(|path| {
            let url = file_url(&path);
            view! {
                <div class="file-view-head">
                    <strong>{path.clone()}</strong>
                    <a class="btn" href=url.clone() download="">"Download"</a>
                </div>
                {is_image(&path).then(|| view! { <img class="file-image" src=url.clone() alt=path.clone()/> })}
            }
            .into_any()
        })
    };
    let tree = view! {
        <nav class="crumbs" aria-label="Folder">
            {move || crumbs().into_iter().map(|(label, path)| view! {
                <button type="button" class="link" on:click=move |_| { dir.set(path.clone()); open.set(None); }>{label}</button>
                <span class="muted">"/"</span>
            }).collect_view()}
        </nav>
        <div class="files-body">
            <ul class="file-list" aria-label="Entries">
                <Suspense fallback=|| view! { <li class="muted">"Loading…"</li> }>
                    {move || Suspend::new(async move {
                        match listing.await {
                            Ok(l) => entries(l, dir, open),
                            Err(e) => view! { <li class="error" role="alert">{e.message}</li> }.into_any(),
                        }
                    })}
                </Suspense>
            </ul>
            <div class="file-view">
                {shown}
                <Suspense fallback=|| ()>
                    {move || Suspend::new(async move {
                        let shown = open.get_untracked().unwrap_or_default();
                        match file.await {
                            Some(Ok(t)) => file_text(&shown, t).into_any(),
                            Some(Err(e)) => view! { <p class="error" role="alert">{e.message}</p> }.into_any(),
                            None => ().into_any(),
                        }
                    })}
                </Suspense>
            </div>
        </div>
    }
    .into_any();
    let changed = move || {
        Suspend::new(async move {
            match repos.await {
                Some(Ok(rs)) => changes(rs).into_any(),
                Some(Err(e)) => view! { <p class="error" role="alert">{e.message}</p> }.into_any(),
                None => ().into_any(),
            }
        })
    };
    view! {
        <section class="panel files-panel" aria-label="Workspace files">
            {head}
            <div hidden=move || tab.get() != Tab::Tree>{tree}</div>
            <Show when=move || tab.get() == Tab::Changes>
                <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>{changed}</Suspense>
            </Show>
        </section>
    }
}

/// A directory's entries: folders open, files show, links only say where they point.
fn entries(l: Listing, dir: RwSignal<String>, open: RwSignal<Option<String>>) -> AnyView {
    if l.items.is_empty() {
        return view! { <li class="muted">"Empty."</li> }.into_any();
    }
    let truncated = l.truncated;
    let rows = l
        .items
        .into_iter()
        .map(|e: FileEntry| {
            let path = e.path.clone();
            match (&e.link, e.is_dir) {
                (Some(target), _) => view! {
                    <li class="file link" data-path=e.path.clone()>
                        <span>{e.name.clone()}</span>" → "<span class="muted">{target.clone()}</span>
                    </li>
                }
                .into_any(),
                (None, true) => view! {
                    <li class="file dir" data-path=e.path.clone()>
                        <button type="button" class="link" on:click=move |_| { dir.set(path.clone()); open.set(None); }>
                            {format!("{}/", e.name)}
                        </button>
                    </li>
                }
                .into_any(),
                (None, false) => view! {
                    <li class="file" data-path=e.path.clone()>
                        <button type="button" class="link" on:click=move |_| open.set(Some(path.clone()))>{e.name.clone()}</button>
                        <span class="muted size">{size(e.size)}</span>
                    </li>
                }
                .into_any(),
            }
        })
        .collect_view();
    view! {
        {rows}
        {truncated.then(|| view! { <li class="muted">"More entries than shown."</li> })}
    }
    .into_any()
}

/// A file's text, highlighted; or why it is not shown.
fn file_text(path: &str, t: FileText) -> impl IntoView {
    match t.text {
        Some(text) => {
            let html = crate::html::code(&language(path), &text);
            view! {
                <div class="file-text" inner_html=html></div>
                {t.cut.then(|| view! { <p class="muted">{format!("Only the first {} KiB are shown; download the file for the rest.", MAX_SHOWN / 1024)}</p> })}
            }
            .into_any()
        }
        None if is_image(path) => ().into_any(),
        None => view! { <p class="muted">"Not text: download it to open it."</p> }.into_any(),
    }
}

/// Each repository's branch, changed files and diff.
fn changes(repos: Vec<RepoState>) -> impl IntoView {
    if repos.is_empty() {
        return view! { <p class="muted">"The session has no repositories."</p> }.into_any();
    }
    repos
        .into_iter()
        .map(|r| {
            let html = crate::html::unified_diff(&r.diff);
            let branch = if r.branch.is_empty() { "(detached)".to_owned() } else { r.branch.clone() };
            view! {
                <article class="repo-state" data-repo=r.name.clone()>
                    <h3>{r.path.clone()}" "<span class="muted">"on "{branch}</span></h3>
                    {r.error.map(|e| view! { <p class="error">{e}</p> })}
                    {if r.changes.is_empty() {
                        view! { <p class="muted">"No uncommitted changes."</p> }.into_any()
                    } else {
                        view! { <ul class="changes">{r.changes.into_iter().map(|c| view! { <li><code>{c}</code></li> }).collect_view()}</ul> }.into_any()
                    }}
                    <div inner_html=html></div>
                    {r.truncated.then(|| view! { <p class="muted">"The diff is cut at 1 MiB."</p> })}
                </article>
            }
        })
        .collect_view()
        .into_any()
}

fn size(bytes: u64) -> String {
    match bytes {
        b if b < 1024 => format!("{b} B"),
        b if b < 1024 * 1024 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)),
    }
}

/// Uploads a chosen file into `file-uploads/` (PUT, the browser's session cookie).
#[component]
fn Upload(
    url: String,
    status: RwSignal<Option<Result<String, String>>>,
    reload: RwSignal<u32>,
) -> impl IntoView {
    let busy = RwSignal::new(false);
    let on_change = move |ev: leptos::ev::Event| {
        #[cfg(feature = "hydrate")]
        {
            use wasm_bindgen::JsCast as _;
            let Some(input) = ev
                .target()
                .and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok())
            else {
                return;
            };
            let Some(file) = input.files().and_then(|f| f.get(0)) else {
                return;
            };
            input.set_value("");
            if file.size() > model::protocol::files::MAX_UPLOAD as f64 {
                status.set(Some(Err(format!(
                    "{} is larger than {} MiB",
                    file.name(),
                    model::protocol::files::MAX_UPLOAD >> 20
                ))));
                return;
            }
            let target = format!("{url}{}", url_path(&file.name()));
            busy.set(true);
            status.set(Some(Ok(format!("Uploading {}…", file.name()))));
            wasm_bindgen_futures::spawn_local(async move {
                let done = put_file(&target, &file).await;
                busy.set(false);
                status.set(Some(done));
                reload.update(|n| *n += 1);
            });
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = (ev, &url, status, reload);
    };
    view! {
        <label class="btn upload">
            {move || if busy.get() { "Uploading…" } else { "Upload a file" }}
            <input type="file" class="visually-hidden" aria-label="Upload a file" disabled=move || busy.get() on:change=on_change/>
        </label>
    }
}

/// PUTs a file; what to tell the person.
#[cfg(feature = "hydrate")]
async fn put_file(url: &str, file: &web_sys::File) -> Result<String, String> {
    use wasm_bindgen::JsCast as _;
    let init = web_sys::RequestInit::new();
    init.set_method("PUT");
    init.set_body(file);
    let window = web_sys::window().ok_or("no window")?;
    let resp = wasm_bindgen_futures::JsFuture::from(window.fetch_with_str_and_init(url, &init))
        .await
        .map_err(|_| "the upload did not reach the server".to_owned())?;
    let resp: web_sys::Response = resp.dyn_into().map_err(|_| "no answer".to_owned())?;
    let text = match resp.text() {
        Ok(p) => wasm_bindgen_futures::JsFuture::from(p)
            .await
            .ok()
            .and_then(|t| t.as_string())
            .unwrap_or_default(),
        Err(_) => String::new(),
    };
    let body: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    if resp.ok() {
        Ok(format!(
            "Uploaded to {}; the agent is told with your next message.",
            body["path"].as_str().unwrap_or("file-uploads/")
        ))
    } else {
        Err(body["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("the upload failed ({})", resp.status())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_utf8_without_nul_and_a_cut_character_is_dropped() {
        assert_eq!(
            as_text(b"fn main() {}\n".to_vec(), false).as_deref(),
            Some("fn main() {}\n")
        );
        assert_eq!(as_text(vec![0x89, b'P', b'N', b'G', 0, 1], false), None);
        let mut cut = "añ".as_bytes().to_vec();
        cut.pop();
        assert_eq!(as_text(cut.clone(), true).as_deref(), Some("a"));
        assert_eq!(as_text(cut, false), None);
    }
}
