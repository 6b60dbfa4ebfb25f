//! Compiles every plugin crate in `plugins/` to a `wasm32-wasip2` component, then writes
//! `$OUT_DIR/plugins.rs`: one path constant per plugin, a `PLUGINS` table and the
//! `foreach_plugin!` macro (as wasmtime's `crates/test-programs/artifacts/build.rs` does).
//!
//! The plugins form their own cargo workspace (`plugins/Cargo.toml`), built with
//! `cargo build --release --locked --target wasm32-wasip2` into `<target>/wasm-plugins`, a
//! target directory of its own so the outer build's lock, profile and flags never reach it.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The target the guests are built for; rustc emits components for it directly.
const TARGET: &str = "wasm32-wasip2";

/// One plugin crate: its directory name, library file stem and description.
struct Plugin {
    dir: String,
    stem: String,
    description: String,
}

fn main() {
    let artifacts =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let plugins_dir = artifacts
        .parent()
        .expect("plugins/artifacts has a parent")
        .to_path_buf();
    let repo = plugins_dir
        .parent()
        .expect("plugins/ has a parent")
        .to_path_buf();
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    // OUT_DIR is <target>/<profile>/build/<package>-<hash>/out.
    // SYNCORE_PLUGINS_TARGET_DIR overrides it, so checkouts that share one outer target
    // directory (worktrees) never overwrite each other's components.
    println!("cargo:rerun-if-env-changed=SYNCORE_PLUGINS_TARGET_DIR");
    let target_dir = match env::var_os("SYNCORE_PLUGINS_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => out_dir
            .ancestors()
            .nth(4)
            .expect("OUT_DIR sits four levels below the target directory")
            .join("wasm-plugins"),
    };

    let plugins = discover(&plugins_dir);
    rerun_if_changed(&repo, &plugins_dir, &plugins);
    build(&plugins_dir, &target_dir);

    let release = target_dir.join(TARGET).join("release");
    let mut code = String::new();
    let mut names = Vec::new();
    for plugin in &plugins {
        let wasm = release.join(format!("{}.wasm", plugin.stem));
        if !wasm.is_file() {
            panic!(
                "plugin `{}` was not built ({} is missing): is it a member of plugins/Cargo.toml with crate-type = [\"cdylib\"]?",
                plugin.dir,
                wasm.display()
            );
        }
        let constant = plugin.stem.to_uppercase();
        writeln!(code, "/// `plugins/{}`: {}", plugin.dir, plugin.description).unwrap();
        writeln!(
            code,
            "pub const {constant}: &str = {:?};",
            wasm.display().to_string()
        )
        .unwrap();
        names.push((plugin.stem.clone(), constant));
    }
    writeln!(
        code,
        "\n/// Every plugin as (name, path of its component), sorted by name."
    )
    .unwrap();
    writeln!(code, "pub const PLUGINS: &[(&str, &str)] = &[").unwrap();
    for (stem, constant) in &names {
        writeln!(code, "    ({stem:?}, {constant}),").unwrap();
    }
    writeln!(code, "];").unwrap();
    writeln!(
        code,
        "\n/// Calls `$mac!(name)` once per plugin, in name order; the tests use it to check"
    )
    .unwrap();
    writeln!(code, "/// that every plugin has a test of its own name.").unwrap();
    writeln!(
        code,
        "#[macro_export]\nmacro_rules! foreach_plugin {{\n    ($mac:ident) => {{"
    )
    .unwrap();
    for (stem, _) in &names {
        writeln!(code, "        $mac!({stem});").unwrap();
    }
    writeln!(code, "    }};\n}}").unwrap();
    fs::write(out_dir.join("plugins.rs"), code).expect("write plugins.rs");
}

/// Every directory of `plugins/` holding a crate, except this one, sorted by name.
fn discover(plugins_dir: &Path) -> Vec<Plugin> {
    let mut plugins = Vec::new();
    for entry in fs::read_dir(plugins_dir).expect("read plugins/") {
        let path = entry.expect("read plugins/ entry").path();
        let dir = path
            .file_name()
            .expect("entry has a name")
            .to_string_lossy()
            .into_owned();
        let manifest = path.join("Cargo.toml");
        if dir == "artifacts" || dir == "target" || !manifest.is_file() {
            continue;
        }
        let text = fs::read_to_string(&manifest).expect("read a plugin's Cargo.toml");
        let field = |key: &str| {
            text.lines().find_map(|line| {
                line.strip_prefix(key)?
                    .trim_start()
                    .strip_prefix('=')
                    .map(|v| v.trim().trim_matches('"').to_string())
            })
        };
        let name =
            field("name").unwrap_or_else(|| panic!("{} has no package name", manifest.display()));
        let description = field("description")
            .unwrap_or_else(|| panic!("{} has no description", manifest.display()));
        plugins.push(Plugin {
            dir,
            stem: name.replace('-', "_"),
            description,
        });
    }
    plugins.sort_by(|a, b| a.stem.cmp(&b.stem));
    plugins
}

/// Rebuilds when a plugin, the SDK or the WIT package changes (not on every outer build).
fn rerun_if_changed(repo: &Path, plugins_dir: &Path, plugins: &[Plugin]) {
    println!("cargo:rerun-if-changed=build.rs");
    println!(
        "cargo:rerun-if-changed={}",
        plugins_dir.join("Cargo.toml").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        plugins_dir.join("Cargo.lock").display()
    );
    println!("cargo:rerun-if-changed={}", repo.join("wit").display());
    println!(
        "cargo:rerun-if-changed={}",
        repo.join("plugin-sdk").display()
    );
    for plugin in plugins {
        let dir = plugins_dir.join(&plugin.dir);
        println!(
            "cargo:rerun-if-changed={}",
            dir.join("Cargo.toml").display()
        );
        println!("cargo:rerun-if-changed={}", dir.join("src").display());
        if dir.join("wit").is_dir() {
            println!("cargo:rerun-if-changed={}", dir.join("wit").display());
        }
    }
}

/// Runs the inner cargo with an environment cleaned of what the outer cargo set for us.
fn build(plugins_dir: &Path, target_dir: &Path) {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--release")
        .arg("--locked")
        .arg("--workspace")
        .arg(format!("--target={TARGET}"))
        .arg("--manifest-path")
        .arg(plugins_dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir);
    for (key, _) in env::vars_os() {
        let key = key.to_string_lossy();
        let keep = [
            "CARGO_HOME",
            "CARGO_NET_",
            "CARGO_HTTP_",
            "CARGO_REGISTRIES_",
            "CARGO_REGISTRY_",
            "CARGO_TERM_",
        ]
        .iter()
        .any(|k| key.starts_with(k));
        let leaks = key.starts_with("CARGO_") && !keep
            || [
                "RUSTFLAGS",
                "RUSTDOCFLAGS",
                "RUSTC_WRAPPER",
                "RUSTC_WORKSPACE_WRAPPER",
            ]
            .contains(&&*key);
        if leaks {
            cmd.env_remove(&*key);
        }
    }
    let status = cmd.status().expect("run cargo for the plugins workspace");
    assert!(
        status.success(),
        "building the plugins failed ({status}); is the target installed? `rustup target add {TARGET}`"
    );
}
