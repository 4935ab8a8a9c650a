#!/usr/bin/env bash
# A real candle upgrade, judged by lossdiff's own gate: bless goldens on the old release, bump,
# run the gate (`lossdiff run` for the reports, `cargo test --test gates` for the test verdict),
# and probe the candle kernels the model calls under both releases to say where bits moved.
#
#   scripts/candle-upgrade.sh [--old VERSION] [--out DIR] [EXPERIMENT...]
#   scripts/candle-upgrade.sh pin-manifest IN OUT VERSION   # the manifest edit alone
#
# Defaults: --old 0.10.2, --out reports/candle-upgrade, experiments flash_vs_noflash,
# kernels_fused_vs_composed, env_f32_vs_bf16, lr_decay_sweep (all the experiments
# `cargo test --test gates` uses, plus the kernel-level one). The new release is whatever
# Cargo.lock holds. An experiment the old release cannot run is reported and left out; so is any
# test in tests/gates.rs that needs one not blessed (skipped by name, listed in the summary).
#
# What it does, in a scratch copy of the checkout's tracked files (CANDLE_UPGRADE_WORK, default
# target/candle-upgrade/), never touching the checkout's golden/ or Cargo.toml:
#   1. pins candle-core and candle-nn to =OLD in the copy's Cargo.toml (`cargo update` re-resolves
#      the lock) and builds the same sources: no fork, no cfg;
#   2. blesses the experiments' goldens there with that build (LOSSDIFF_UPDATE=always), into an
#      emptied golden/, and writes every probed kernel output's bits;
#   3. bumps: restores the checkout's own Cargo.toml and Cargo.lock in the copy and rebuilds;
#   4. gates: `lossdiff run` each experiment against the old-release goldens (LOSSDIFF_UPDATE=no)
#      into OUT/<experiment>/, `CI=1 cargo test --test gates` into OUT/cargo-test.log, the kernel
#      probe into OUT/kernels.md, and OUT/summary.md from the reports' summary.json files;
#   5. re-blesses the same runs on the new release (from the run cache) and `lossdiff compare`s
#      each old golden with its new one into OUT/arms.md.
# Builds share CARGO_TARGET_DIR (default: the checkout's target/) so the dependencies both
# releases have in common compile once. Exit status: 0 when every gate passed, 1 when one failed
# (the upgrade changed numerics beyond what the goldens allow), 2 on a broken run.
set -euo pipefail

die() { echo "candle-upgrade: $*" >&2; exit 2; }

# Rewrites the candle-core and candle-nn requirements of manifest IN to `=VERSION` into OUT.
# Accepts `candle-x = "V"` and `candle-x = { version = "V", ... }`; refuses a manifest in which
# either dependency is missing or written otherwise, naming it, rather than pinning half a stack.
pin_manifest() {
    local in=$1 out=$2 version=$3
    [[ -f $in ]] || die "pin-manifest: no manifest at $in"
    [[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.-]+)?$ ]] ||
        die "pin-manifest: '$version' is not a version (expected e.g. 0.10.2)"
    local tmp
    tmp=$(mktemp)
    sed -E \
        -e "s/^(candle-(core|nn)[[:space:]]*=[[:space:]]*)\"[^\"]*\"/\1\"=$version\"/" \
        -e "s/^(candle-(core|nn)[[:space:]]*=[[:space:]]*\{.*version[[:space:]]*=[[:space:]]*)\"[^\"]*\"/\1\"=$version\"/" \
        "$in" >"$tmp"
    local dep
    for dep in candle-core candle-nn; do
        local n
        n=$(grep -cE "^$dep[[:space:]]*=.*\"=$version\"" "$tmp" || true)
        if [[ $n != 1 ]]; then
            rm -f "$tmp"
            die "pin-manifest: $in: expected one \`$dep = \"VERSION\"\` or \`$dep = { version = \"VERSION\", ... }\` line under [dependencies], found $n to pin"
        fi
    done
    mv "$tmp" "$out"
}

if [[ ${1:-} == pin-manifest ]]; then
    [[ $# == 4 ]] || die "usage: $0 pin-manifest IN OUT VERSION"
    pin_manifest "$2" "$3" "$4"
    exit 0
fi

old=0.10.2
root=$(git rev-parse --show-toplevel)
out=$root/reports/candle-upgrade
experiments=()
while [[ $# -gt 0 ]]; do
    case $1 in
        --old) old=${2:?--old needs a version}; shift 2 ;;
        --out) out=$(realpath -m "${2:?--out needs a directory}"); shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) experiments+=("$1"); shift ;;
    esac
done
[[ ${#experiments[@]} -gt 0 ]] ||
    experiments=(flash_vs_noflash kernels_fused_vs_composed env_f32_vs_bf16 lr_decay_sweep)
for e in "${experiments[@]}"; do
    [[ -f $root/experiments/$e.toml ]] || die "no experiment spec experiments/$e.toml"
done

work=${CANDLE_UPGRADE_WORK:-$root/target/candle-upgrade}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1}
export LOSSDIFF_CACHE=$work/cache
new=$(grep -A1 '^name = "candle-core"' "$root/Cargo.lock" | sed -n 's/^version = "\(.*\)"/\1/p')
[[ -n $new ]] || die "$root/Cargo.lock names no candle-core"
[[ $new != "$old" ]] || die "the checkout already builds candle $old; nothing to upgrade from"
src=$work/src
echo "candle-upgrade: $old -> $new; experiments: ${experiments[*]}; scratch: $work"

# --- the scratch copy: the checkout's tracked files, an empty golden store, the probe ---
rm -rf "$src"
mkdir -p "$src" "$work/bin-$old" "$work/bin-$new"
(cd "$root" && git ls-files -z | xargs -0 cp --parents -p -t "$src")
rm -rf "$src/golden" "$src/reports"
mkdir -p "$src/golden" "$src/examples"
cp "$root/scripts/candle_ops_probe.rs" "$src/examples/candle_ops_probe.rs"

build() { # VERSION: builds the CLI and the probe in the copy and keeps them under bin-VERSION
    (cd "$src" && cargo build --quiet --bin lossdiff --example candle_ops_probe) ||
        die "building against candle $1 failed"
    cp "$CARGO_TARGET_DIR/debug/lossdiff" "$CARGO_TARGET_DIR/debug/examples/candle_ops_probe" \
        "$work/bin-$1/"
    local built
    built=$(grep -A1 '^name = "candle-core"' "$src/Cargo.lock" | sed -n 's/^version = "\(.*\)"/\1/p')
    [[ $built == "$1" ]] || die "the copy resolved candle-core $built, not $1"
}

# --- 1-2: the old release: pin, build, bless, probe ---
pin_manifest "$root/Cargo.toml" "$src/Cargo.toml" "$old"
(cd "$src" && cargo update --quiet -p candle-core -p candle-nn) ||
    die "cargo could not resolve candle $old"
build "$old"
rm -rf "$work/old-reports"
mkdir -p "$work/old-reports"
blessed=()
unrunnable=()
for e in "${experiments[@]}"; do
    status=0
    (cd "$src" && env -u CI LOSSDIFF_UPDATE=always "$work/bin-$old/lossdiff" run "experiments/$e.toml" \
        --out "$work/old-reports/$e") 2>"$work/old-reports/$e.stderr" || status=$?
    if [[ $status -gt 1 ]]; then
        # An experiment the old release cannot run has nothing to bless: it is reported, with
        # candle's error, and left out of the gate rather than stopping the others.
        echo "candle-upgrade: $e cannot run on candle $old (exit $status): $(grep -m1 'lossdiff:' "$work/old-reports/$e.stderr")" >&2
        unrunnable+=("$e")
        rm -rf "$src/golden/$e"
        continue
    fi
    [[ -n $(find "$src/golden/$e" -name '*.golden.json' 2>/dev/null) ]] ||
        die "running $e on candle $old blessed no golden under $src/golden/$e"
    blessed+=("$e")
done
[[ ${#blessed[@]} -gt 0 ]] || die "no experiment could be blessed on candle $old"
"$work/bin-$old/candle_ops_probe" --write "$work/probe-$old.json"

# --- 3: the bump ---
cp "$root/Cargo.toml" "$root/Cargo.lock" "$src/"
build "$new"

# --- 4: the gate, against the goldens the old release blessed ---
# Only what this script writes is replaced: a hand-written README.md beside it (the reading of
# the results) stays.
mkdir -p "$out"
for e in "${experiments[@]}"; do rm -rf "${out:?}/$e" "$out/$e".cannot-run-on-*.txt; done
rm -f "$out/summary.md" "$out/arms.md" "$out/kernels.md" "$out/cargo-test.log"
for e in "${unrunnable[@]}"; do
    grep -m1 '^lossdiff:' "$work/old-reports/$e.stderr" >"$out/$e.cannot-run-on-$old.txt" ||
        cp "$work/old-reports/$e.stderr" "$out/$e.cannot-run-on-$old.txt"
done
gate_failed=0
for e in "${blessed[@]}"; do
    status=0
    (cd "$src" && CI=1 LOSSDIFF_UPDATE=no "$work/bin-$new/lossdiff" run "experiments/$e.toml" \
        --out "$out/$e") || status=$?
    [[ $status -le 1 ]] || die "gating $e on candle $new failed to run (exit $status)"
    echo "$status" >"$out/$e/exit-status"
    [[ $status == 0 ]] || gate_failed=1
    rm -f "$out/$e/index.html" # the figures are committed beside index.md already
done
# The cargo-test leg: every test in tests/gates.rs whose experiments were blessed; a test that
# needs an experiment the old release could not run is skipped by name, and the summary says so.
mapfile -t skipped_tests < <(python3 - "$src/tests/gates.rs" "${blessed[@]}" <<'PY'
import re, sys
needs, cur = {}, None
for line in open(sys.argv[1]):
    m = re.search(r"\bfn ([a-z0-9_]+)\(", line)
    cur = m.group(1) if m else cur
    for e in re.findall(r"experiments/([A-Za-z0-9_]+)\.toml", line):
        needs.setdefault(cur, set()).add(e)
for test, exps in sorted(needs.items()):
    if not exps <= set(sys.argv[2:]):
        print(test)
PY
)
skip_args=()
for t in "${skipped_tests[@]}"; do skip_args+=(--skip "$t"); done
cargo_test=passed
(cd "$src" && CI=1 LOSSDIFF_UPDATE=no cargo test --test gates -- --exact "${skip_args[@]}" 2>&1) \
    >"$out/cargo-test.log" || { cargo_test=failed; gate_failed=1; }
"$work/bin-$new/candle_ops_probe" --against "$work/probe-$old.json" --out "$out/kernels.md" >/dev/null

# --- what changed, arm by arm: bless the same runs on the new release too (every run is in the
# cache by now) and compare each old golden with its new one, all three lanes ---
rm -rf "$work/golden-$old" "$work/golden-$new"
mv "$src/golden" "$work/golden-$old"
mkdir "$src/golden"
for e in "${blessed[@]}"; do
    (cd "$src" && env -u CI LOSSDIFF_UPDATE=always "$work/bin-$new/lossdiff" run "experiments/$e.toml" \
        --out "$work/new-reports/$e" >/dev/null) || [[ $? == 1 ]] ||
        die "blessing $e on candle $new failed"
done
mv "$src/golden" "$work/golden-$new"
mv "$work/golden-$old" "$src/golden"
{
    echo "# Each golden blessed on candle $old against the same arm blessed on $new"
    echo
    echo "\`lossdiff compare OLD NEW\` per golden: A is \`src/golden/…\` (blessed on $old), B is"
    echo "\`golden-$new/…\` (the same arm blessed on $new); seed traces paired by seed, the old golden's"
    echo "perturbation traces the rounding yardstick, as in the gate."
    (cd "$src/golden" && find . -name '*.golden.json' | sort) | while read -r g; do
        echo
        echo "## ${g#./}"
        echo
        echo '```text'
        "$work/bin-$new/lossdiff" compare "$src/golden/$g" "$work/golden-$new/$g" 2>&1 |
            sed "s|$work/||g" || true
        echo '```'
    done
} >"$out/arms.md"

BLESSED="${blessed[*]}" UNRUNNABLE="${unrunnable[*]}" SKIPPED="${skipped_tests[*]}" \
    python3 - "$out" "$old" "$new" "$cargo_test" <<'PY'
"""Writes OUT/summary.md: each experiment's gate verdicts against the old-release goldens."""
import json, os, sys
from pathlib import Path

out, old, new, cargo_test = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
blessed, unrunnable, skipped = (os.environ[k].split() for k in ("BLESSED", "UNRUNNABLE", "SKIPPED"))
md = [f"# candle {old} → {new}: the gate against goldens blessed on {old}", ""]
md += [f"`CI=1 cargo test --test gates` on {new} against those goldens: **{cargo_test}** "
       "(log: `cargo-test.log`)" + (f"; skipped, their experiments not blessed: {', '.join(skipped)}"
                                    if skipped else ""), ""]
for e in unrunnable:
    md += [f"Not gated: `{e}` cannot run on candle {old}, so nothing was blessed "
           f"(`{e}.cannot-run-on-{old}.txt`).", ""]
md += ["| experiment | gate | cell, arm | verdict against its golden | what the gate said |",
       "|---|---|---|---|---|"]
env_diffs = set()
for e in blessed:
    s = json.loads((out / e / "summary.json").read_text())
    gate = "pass" if s["gate"]["passed"] else "**FAIL**"
    for entry in s["entries"]:
        if not entry["name"].endswith(" vs golden"):
            continue
        env_diffs.update(entry.get("environment_differences") or [])
        name = entry["name"][len(e) + 1:-len(" vs golden")]
        md.append(f"| {e} | {gate} | {name} | {entry['verdict']} | {entry['summary']} |")
md += ["", "Environment differences the gate named (golden → this run):", ""]
md += [f"- `{d}`" for d in sorted(env_diffs)] or ["- none"]
md += ["", "Per experiment: `<experiment>/index.md` (with figures, summary.json, junit.xml). "
       "Arm by arm, all three lanes: `arms.md`. Kernel by kernel: `kernels.md`.", ""]
(out / "summary.md").write_text("\n".join(md))
PY
cat "$out/summary.md"
echo "candle-upgrade: report in $out (gate $([[ $gate_failed == 0 ]] && echo passed || echo FAILED))"
exit "$gate_failed"
