//! Fuzzes the run-spec parser (TOML, presets) and `--set` overrides: an accepted spec is valid,
//! and its resolved form is accepted again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lossdiff::RunConfig;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The first line doubles as a `--set` override on the default config.
    let first = text.lines().next().unwrap_or_default();
    let mut cfg = RunConfig::default();
    if cfg.apply_override(first).is_ok() {
        cfg.validate("fuzz --set")
            .expect("an accepted override leaves a valid config");
    }
    if let Ok(cfg) = RunConfig::parse(text, Path::new(lossdiff_fuzz::PATH)) {
        cfg.validate("fuzz").expect("an accepted spec is valid");
        let resolved = cfg.resolve();
        resolved
            .validate("fuzz resolved")
            .expect("a resolved spec is valid");
        let _ = resolved.to_json();
    }
});
