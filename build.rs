//! Records build-time facts for trace fingerprints: rustc, target, profile, candle version, git
//! revision. Nothing here affects what the library computes.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=Cargo.lock");
    let env = |k: &str| std::env::var(k).unwrap_or_else(|_| "unknown".into());
    let rustc = Command::new(env("RUSTC"))
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=LOSSDIFF_RUSTC={rustc}");
    println!("cargo:rustc-env=LOSSDIFF_TARGET={}", env("TARGET"));
    println!("cargo:rustc-env=LOSSDIFF_PROFILE={}", env("PROFILE"));
    println!("cargo:rustc-env=LOSSDIFF_OPT_LEVEL={}", env("OPT_LEVEL"));
    let manifest = env("CARGO_MANIFEST_DIR");
    let candle = std::fs::read_to_string(format!("{manifest}/Cargo.lock"))
        .ok()
        .and_then(|lock| {
            let i = lock.find("name = \"candle-core\"")?;
            let rest = &lock[i..];
            let v = rest.find("version = \"")? + "version = \"".len();
            rest[v..].split('"').next().map(str::to_string)
        })
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=LOSSDIFF_CANDLE_VERSION={candle}");
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(&manifest)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_string())
    };
    let rev = git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=LOSSDIFF_GIT_REV={rev}");
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        let dir = std::path::Path::new(&manifest).join(dir);
        println!("cargo:rerun-if-changed={}", dir.join("HEAD").display());
        if let Some(head) = git(&["symbolic-ref", "-q", "HEAD"]) {
            println!("cargo:rerun-if-changed={}", dir.join(head).display());
        }
    }
}
