#!/usr/bin/env bash
# Build the slim collector `bin/otelcol-logkit` from collector/builder-config.yaml.
#
# - Installs the OpenTelemetry Collector Builder (ocb) at the cohort version into
#   .cache/go-bin with `go install` (Go's module and build caches are reused, so a rebuild after
#   a manifest change takes about a minute instead of several).
# - Skips everything when bin/otelcol-logkit is newer than a stamp of the manifest, this script
#   and the Go version (idempotent, instant when nothing changed). FORCE=1 rebuilds anyway.
# - OTELCOL_BIN=/path/to/otelcol-contrib (same version) skips the build and uses that binary.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
MANIFEST=collector/builder-config.yaml
OUT=bin/otelcol-logkit
STAMP=.cache/otelcol-logkit.stamp
GOBIN_DIR="$ROOT/.cache/go-bin"
BUILD_DIR=.cache/otelcol-logkit-build # = dist.output_path in the manifest

if [[ -n "${OTELCOL_BIN:-}" ]]; then
    if [[ ! -x "$OTELCOL_BIN" ]]; then
        echo "OTELCOL_BIN='$OTELCOL_BIN' is not an executable file" >&2
        exit 1
    fi
    echo "collector: using OTELCOL_BIN=$OTELCOL_BIN (not building)"
    exit 0
fi

command -v go >/dev/null || { echo "collector: Go is required (https://go.dev/dl/)" >&2; exit 1; }

# The builder must share the cohort's minor version: read it from the manifest.
VERSION=$(sed -n 's#^  - gomod: go.opentelemetry.io/collector/receiver/otlpreceiver \(v[0-9.]*\)$#\1#p' "$MANIFEST")
[[ -n "$VERSION" ]] || { echo "collector: cannot read the cohort version from $MANIFEST" >&2; exit 1; }

want=$({ cat "$MANIFEST" "$0"; go version; } | sha256sum | cut -d' ' -f1)
if [[ -z "${FORCE:-}" && -x "$OUT" && -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
    echo "collector: $OUT is up to date ($VERSION)"
    exit 0
fi

export GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=mod"
# The checksum database does not answer for this one transitive module of the elasticsearch
# exporter on the module proxy reachable here; its content still comes from the proxy.
export GONOSUMDB="${GONOSUMDB:+$GONOSUMDB,}go.opentelemetry.io/ebpf-profiler"

BUILDER="$GOBIN_DIR/builder"
if [[ ! -x "$BUILDER" ]] || ! "$BUILDER" version 2>&1 | grep -qF "$VERSION"; then
    echo "collector: installing the collector builder $VERSION into .cache/go-bin"
    GOBIN="$GOBIN_DIR" go install "go.opentelemetry.io/collector/cmd/builder@$VERSION"
fi

echo "collector: building $OUT with ocb $VERSION (first build takes several minutes)"
mkdir -p "$BUILD_DIR" bin .cache
"$BUILDER" --config "$MANIFEST"
cp "$BUILD_DIR/otelcol-logkit" "$OUT.tmp"
mv -f "$OUT.tmp" "$OUT"
echo "$want" >"$STAMP"
"$OUT" --version
