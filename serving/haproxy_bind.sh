#!/usr/bin/env bash
# HAProxy, with its stats page and Prometheus exporter bound to the Serve host instead of every interface.
#
# Ray 2.60's HAProxy config template writes `bind *:<stats port>` and `bind :<metrics port>` and has no
# setting for their address, so on a laptop or a shared host they were open to the network while the
# HTTP frontend listened on 127.0.0.1. serving/config.set_serve_env points RAY_SERVE_HAPROXY_BINARY_PATH
# here, with the real binary in ONELOC_HAPROXY_BINARY and the address in ONELOC_HAPROXY_BIND_HOST: this
# rewrites those two bind lines of the generated config (the file given with -f; Ray writes it anew
# before every start and reload) and runs HAProxy with the same arguments.
set -euo pipefail
host="${ONELOC_HAPROXY_BIND_HOST:?}"
real="${ONELOC_HAPROXY_BINARY:?}"
args=("$@")
for ((i = 0; i < ${#args[@]} - 1; i++)); do
  if [ "${args[i]}" = "-f" ]; then
    sed -i -E "s/^([[:space:]]*bind )\*?:([0-9]+)/\1${host}:\2/" "${args[i+1]}"
  fi
done
exec "$real" "$@"
