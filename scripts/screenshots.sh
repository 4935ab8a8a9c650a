#!/usr/bin/env bash
# Regenerates the screenshots the README shows, from a fresh run of the nightly experiments:
#
#   docs/screenshots/index-html.png         index.html in headless Chromium (1280×1600)
#   docs/screenshots/figure-comparison.png  a diverged comparison (the dropout confound)
#   docs/screenshots/figure-heatmap.png     the lr_decay_iters sweep's effect heat map
#
# Usage: scripts/screenshots.sh [REPORT_DIR]
#   With REPORT_DIR (a report `lossdiff run` wrote), it is used as is; without, the nightly is
#   run into a temporary directory (`cargo run -- run experiments/nightly.toml`, ~1 min with a
#   warm run cache, a few minutes on a fresh one).
# Needs Chromium: `apt-get install -y chromium` on Debian (or set CHROMIUM to its binary).
#
# The screenshot of index.html is also the check that the report's status marks render in a
# browser without an emoji font: they are inline SVG and text, so they must show in it.
set -euo pipefail
cd "$(dirname "$0")/.."
out=docs/screenshots
mkdir -p "$out"

chromium=${CHROMIUM:-}
if [[ -z $chromium ]]; then
    for c in chromium chromium-browser google-chrome; do
        if command -v "$c" >/dev/null; then chromium=$(command -v "$c"); break; fi
    done
fi
if [[ -z $chromium ]]; then
    echo "screenshots.sh: no Chromium found; install it (apt-get install -y chromium) or set CHROMIUM" >&2
    exit 2
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
report=${1:-}
if [[ -z $report ]]; then
    report=$tmp/nightly
    # Exit 1 means a comparison failed its gate: the report is still written and worth a look.
    status=0
    cargo run -q -- run experiments/nightly.toml --out "$report" >"$tmp/run.log" 2>&1 || status=$?
    if [[ $status -gt 1 ]]; then
        cat "$tmp/run.log" >&2
        echo "screenshots.sh: lossdiff run failed (exit $status)" >&2
        exit 2
    fi
fi
for f in index.html figures/dropout_confound_default_naive_vs_flash.png \
    figures/lr_decay_sweep-effect-heatmap.png; do
    [[ -f $report/$f ]] || { echo "screenshots.sh: $report/$f is missing" >&2; exit 2; }
done

"$chromium" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --hide-scrollbars --user-data-dir="$tmp/profile" --window-size=1280,1600 \
    --screenshot="$out/index-html.png" "file://$(realpath "$report/index.html")" \
    >"$tmp/chromium.log" 2>&1 || { cat "$tmp/chromium.log" >&2; exit 2; }
[[ -s $out/index-html.png ]] || { cat "$tmp/chromium.log" >&2; exit 2; }
cp "$report/figures/dropout_confound_default_naive_vs_flash.png" "$out/figure-comparison.png"
cp "$report/figures/lr_decay_sweep-effect-heatmap.png" "$out/figure-heatmap.png"
echo "wrote $out/index-html.png, $out/figure-comparison.png, $out/figure-heatmap.png (from $report)"
