//! `cargo xtask site`: builds the web UI's assets into `target/site`, the way
//! `cargo leptos build --release --split` did (same files, same names), from steps this
//! workspace runs itself:
//!
//! 1. the `app` crate for `wasm32-unknown-unknown` with the `hydrate` feature, profile
//!    `wasm-release` (linked with `--emit-relocs`, see `.cargo/config.toml`), with its own
//!    standard library built for size and panics that abort at once (see [`compile_app`]);
//! 2. the lazy routes split into their own modules (`wasm_split_cli_support`, as
//!    cargo-leptos): `pkg/split_*.wasm`, `pkg/chunk_*.wasm`, the loader
//!    `pkg/__wasm_split.______________________.js` and `pkg/__wasm_split_manifest.json`,
//!    which the server reads to preload a page's modules;
//! 3. the bindings (`wasm-bindgen-cli-support`): `pkg/ambient.js`, `pkg/ambient.wasm`;
//! 4. every module through `wasm-opt -Oz` (npm's binaryen, in `tools/web`);
//! 5. `ambient.js` and the stylesheet minified with esbuild (`tools/web`);
//! 6. `public/` copied to the site root.
//!
//! The server binary is built by cargo as any other; the names it expects (`LEPTOS_*`) are
//! set for every cargo command in `.cargo/config.toml`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

/// Name of the assets (`/pkg/<name>.js` ...); `LEPTOS_OUTPUT_NAME` in `.cargo/config.toml`.
const OUTPUT_NAME: &str = "ambient";
/// Name the split loader goes by: cargo-leptos's placeholder for a hash it does not compute
/// without `hash-files` (the server preloads it under this name).
const SPLIT_LOADER: &str = "./__wasm_split.______________________.js";
/// The optimisation cargo-leptos applies to every module in release.
const WASM_OPT_ARGS: [&str; 3] = [
    "-Oz",
    "--enable-bulk-memory",
    "--enable-nontrapping-float-to-int",
];

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("site") => site(&Workspace::locate()?),
        _ => {
            eprintln!("usage: cargo xtask site    build the web UI's assets into target/site");
            std::process::exit(2);
        }
    }
}

/// Where things are.
struct Workspace {
    root: PathBuf,
    target: PathBuf,
}

impl Workspace {
    fn locate() -> Result<Workspace> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .context("the workspace root")?
            .to_owned();
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .map(|t| if t.is_absolute() { t } else { root.join(t) })
            .unwrap_or_else(|| root.join("target"));
        Ok(Workspace { root, target })
    }

    fn site(&self) -> PathBuf {
        self.target.join("site")
    }

    fn pkg(&self) -> PathBuf {
        self.site().join("pkg")
    }

    /// A tool of `tools/web` (installed by `make`).
    fn web_tool(&self, name: &str) -> Result<PathBuf> {
        let path = self.root.join("tools/web/node_modules/.bin").join(name);
        if !path.exists() {
            bail!(
                "{} is missing: run `make setup` (npm ci in tools/web)",
                path.display()
            );
        }
        Ok(path)
    }
}

fn site(ws: &Workspace) -> Result<()> {
    let started = Instant::now();
    let raw = step("app → wasm32 (wasm-release)", || compile_app(ws))?;
    let pkg = ws.pkg();
    // Nothing of an earlier build may linger: a stale chunk would be served.
    if ws.site().exists() {
        std::fs::remove_dir_all(ws.site())
            .with_context(|| format!("removing {}", ws.site().display()))?;
    }
    std::fs::create_dir_all(&pkg)?;
    let main_wasm = step("split lazy routes", || split(&raw, &pkg))?;
    step("wasm-bindgen", || bindgen(&main_wasm, &pkg))?;
    step("wasm-opt", || optimise(ws, &pkg))?;
    step("minify JS and CSS", || minify(ws, &pkg))?;
    step("public/", || copy_dir(&ws.root.join("public"), &ws.site()))?;
    eprintln!(
        "site built in {:.1} s: {}",
        started.elapsed().as_secs_f64(),
        ws.site().display()
    );
    Ok(())
}

/// Runs a step, saying what it is and how long it took.
fn step<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let t = Instant::now();
    let out = f().with_context(|| what.to_owned())?;
    eprintln!("  {what}: {:.1} s", t.elapsed().as_secs_f64());
    Ok(out)
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("running {:?}", cmd.get_program()))?;
    if !status.success() {
        bail!("{:?} failed: {status}", cmd.get_program());
    }
    Ok(())
}

/// Builds the browser's crate; returns the raw module.
///
/// The standard library is compiled with the bundle (`-Zbuild-std`, its `optimize_for_size`
/// feature) and panics abort at once (`-Cpanic=immediate-abort`): no panic message, location
/// or the formatting code they need is left in the module. This is what Leptos's guide to
/// bundle size recommends; it cut the session page's main module from 369,319 to 345,047
/// bytes (Zopfli). Both are unstable options of cargo and rustc, enabled on the stable
/// toolchain with `RUSTC_BOOTSTRAP=1` for this one build only (the server, the runner and the
/// tests are built without it); the standard library's sources come from `rust-src`
/// (`make setup`). A panic in the browser shows as a trap (`unreachable`) with the WASM stack
/// in the console, not as a message.
fn compile_app(ws: &Workspace) -> Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    run(Command::new(cargo)
        .current_dir(&ws.root)
        .env("RUSTC_BOOTSTRAP", "1")
        .args([
            "build",
            "--package=app",
            "--lib",
            "--target=wasm32-unknown-unknown",
            "--no-default-features",
            "--features=hydrate",
            "--profile=wasm-release",
            "-Zbuild-std=std,panic_abort",
            "-Zbuild-std-features=optimize_for_size",
            "--config=target.wasm32-unknown-unknown.rustflags=[\"-Zunstable-options\", \"-Cpanic=immediate-abort\"]",
        ]))?;
    Ok(ws
        .target
        .join("wasm32-unknown-unknown/wasm-release/app.wasm"))
}

/// Splits the lazy routes out of `raw`; returns the main module, for wasm-bindgen.
fn split(raw: &Path, pkg: &Path) -> Result<PathBuf> {
    let input = std::fs::read(raw).with_context(|| format!("reading {}", raw.display()))?;
    let main = raw.with_file_name("app_split.wasm");
    let main_module = format!("./{OUTPUT_NAME}.js");
    let mut opts = wasm_split_cli_support::Options::new(&input);
    opts.output_dir = pkg;
    opts.main_out_path = &main;
    opts.main_module = &main_module;
    opts.link_name = SPLIT_LOADER;
    let split = wasm_split_cli_support::transform(opts).map_err(|e| anyhow::anyhow!("{e:#}"))?;
    // Sorted, so the same build writes the same file.
    let manifest: std::collections::BTreeMap<_, _> = split.prefetch_map.into_iter().collect();
    std::fs::write(
        pkg.join("__wasm_split_manifest.json"),
        serde_json::to_string_pretty(&manifest)?,
    )?;
    Ok(main)
}

/// Generates the JS bindings and the final main module, named as the server expects.
fn bindgen(main: &Path, pkg: &Path) -> Result<()> {
    wasm_bindgen_cli_support::Bindgen::new()
        .input_path(main)
        .web(true)?
        .keep_lld_exports(true)
        .demangle(false)
        .out_name(OUTPUT_NAME)
        .generate(pkg)?;
    std::fs::rename(
        pkg.join(format!("{OUTPUT_NAME}_bg.wasm")),
        pkg.join(format!("{OUTPUT_NAME}.wasm")),
    )?;
    Ok(())
}

/// `wasm-opt` on every module, two at a time.
fn optimise(ws: &Workspace, pkg: &Path) -> Result<()> {
    let wasm_opt = ws.web_tool("wasm-opt")?;
    let modules: Vec<PathBuf> = std::fs::read_dir(pkg)?
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "wasm"))
        .collect();
    std::thread::scope(|scope| {
        let workers: Vec<_> = modules
            .chunks(modules.len().div_ceil(2).max(1))
            .map(|part| {
                let wasm_opt = &wasm_opt;
                scope.spawn(move || {
                    part.iter().try_for_each(|m| {
                        let out = Command::new(wasm_opt)
                            .args(WASM_OPT_ARGS)
                            .arg(m)
                            .arg("-o")
                            .arg(m)
                            .output()
                            .context("running wasm-opt")?;
                        // rustc writes label names (name subsection 3) that binaryen does not
                        // know; it drops them, as it drops every name here, and says so once
                        // per function: those lines alone are not shown.
                        String::from_utf8_lossy(&out.stderr)
                            .lines()
                            .filter(|l| !l.contains("unknown name subsection with id 3"))
                            .for_each(|l| eprintln!("{l}"));
                        if !out.status.success() {
                            bail!("wasm-opt failed on {}: {}", m.display(), out.status);
                        }
                        Ok(())
                    })
                })
            })
            .collect();
        workers.into_iter().try_for_each(|w| {
            w.join()
                .map_err(|_| anyhow::anyhow!("wasm-opt worker panicked"))?
        })
    })
}

/// Minifies the bindings' JS in place and the stylesheet into `pkg/<name>.css`.
fn minify(ws: &Workspace, pkg: &Path) -> Result<()> {
    let esbuild = ws.web_tool("esbuild")?;
    let js = pkg.join(format!("{OUTPUT_NAME}.js"));
    run(Command::new(&esbuild)
        .arg(&js)
        .args([
            "--minify",
            "--format=esm",
            "--allow-overwrite",
            "--log-level=warning",
        ])
        .arg(format!("--outfile={}", js.display())))?;
    let css = ws.root.join("style/main.css");
    run(Command::new(&esbuild)
        .arg(&css)
        .args(["--minify", "--log-level=warning"])
        .arg(format!(
            "--outfile={}",
            pkg.join(format!("{OUTPUT_NAME}.css")).display()
        )))
}

/// Copies `from`'s files and folders into `to`.
fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            std::fs::create_dir_all(&target)?;
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}
