#!/usr/bin/env bash
# Re-vendors candle-core VERSION from crates.io into vendor/candle-core and applies lossdiff's
# patches (vendor/candle-core-*.patch, in name order). Run it when bumping candle
# (docs/upgrading.md):
#
#   scripts/vendor-candle.sh 0.12.0
#
# If a patch no longer applies, upstream has probably merged an equivalent change (for the
# first-gradient patch, huggingface/candle#3822): check the file it touches, and delete that patch;
# with no patch left, delete vendor/candle-core and the [patch.crates-io] section of Cargo.toml.
set -euo pipefail
version=${1:?usage: scripts/vendor-candle.sh VERSION (e.g. 0.11.1)}
root=$(cd "$(dirname "$0")/.." && pwd)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# Let cargo download and unpack the crate into its registry cache, then copy it from there.
mkdir -p "$scratch/fetch/src"
cat > "$scratch/fetch/Cargo.toml" <<TOML
[package]
name = "fetch-candle"
version = "0.0.0"
edition = "2021"
[dependencies]
candle-core = "=$version"
TOML
touch "$scratch/fetch/src/lib.rs"
(cd "$scratch/fetch" && cargo fetch --quiet)
src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"candle-core-$version" | head -1)
[ -d "$src" ] || { echo "vendor-candle: candle-core $version not found in cargo's registry cache" >&2; exit 1; }

cp -r "$src" "$scratch/candle-core"
for p in "$root"/vendor/candle-core-*.patch; do
    if ! (cd "$scratch/candle-core" && patch -p1 --forward --quiet < "$p"); then
        echo "vendor-candle: $(basename "$p") does not apply to candle-core $version; see the comment at the top of this script" >&2
        exit 1
    fi
done
rm -rf "$root/vendor/candle-core"
mv "$scratch/candle-core" "$root/vendor/candle-core"
echo "vendored candle-core $version with $(ls "$root"/vendor/candle-core-*.patch | wc -l) patches into vendor/candle-core"
echo "now set candle-core = \"$version\" in Cargo.toml, run cargo test, and read the gate's report"
