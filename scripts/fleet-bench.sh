#!/usr/bin/env bash
# Fleet benchmarks recorded in BENCHMARKS.md: generates the mesh, starts
# `shmesh serve` on it (debounce 100ms, ports picked by the OS), runs
# shmesh-loadgen against it and stops shmesh again.
#
# usage: scripts/fleet-bench.sh WORKLOAD [OUTDIR]
#   WORKLOAD: w1-delta | w1-sotw | w1-vhds | w2 | w2-mux | smoke
#             (w1-vhds: W1 delta with `shmesh serve --vhds`)
#   OUTDIR:   where meshes, logs and JSON reports go (default target/fleet-bench)
# env: BIN (directory holding shmesh and shmesh-loadgen, default target/release),
#      CLIENTS (override the workload's client count), TIMEOUT (whole run, s,
#      default 900), SYNC_TIMEOUT (s to wait for the fleet to sync before the
#      changes, default TIMEOUT), EXTRA (more loadgen flags)
#
# Build first: cargo build --release -p shmesh -p shmesh-loadgen
set -euo pipefail

workload=${1:?usage: $0 w1-delta|w1-sotw|w1-vhds|w2|w2-mux|smoke [OUTDIR]}
out=${2:-target/fleet-bench}
bin=${BIN:-target/release}
mkdir -p "$out"

case $workload in
  w1-*)
    mesh=$out/mesh-w1
    gen=(--namespaces 10 --services 100 --endpoints 10 --versions 3 --virtual-services 100)
    api=${workload#w1-}
    serve=()
    if [ "$api" = vhds ]; then api=delta; serve=(--vhds); fi
    run=(--clients "${CLIENTS:-2000}" --api "$api" --namespaces 10 --connect-rate 2000
         --change endpoint,weights --changes 10 --interval-ms 1000)
    ;;
  w2 | w2-mux)
    serve=()
    mesh=$out/mesh-w2
    gen=(--namespaces 100 --services 20 --endpoints 10 --versions 3 --virtual-services 100 --scoped)
    run=(--clients "${CLIENTS:-30000}" --api delta --namespaces 100 --connect-rate 2000
         --change endpoint,weights --changes 10 --interval-ms 1000 --change-timeout-s 20)
    if [ "$workload" = w2-mux ]; then run+=(--streams-per-connection 2); fi
    ;;
  smoke)
    serve=()
    mesh=$out/mesh-smoke
    gen=(--namespaces 3 --services 4 --endpoints 3 --virtual-services 2 --scoped)
    run=(--clients "${CLIENTS:-50}" --api delta --namespaces 3 --change endpoint,weights --changes 2
         --interval-ms 200)
    ;;
  *) echo "unknown workload $workload" >&2; exit 2 ;;
esac

"$bin/shmesh-loadgen" gen-mesh --clean --out "$mesh" "${gen[@]}"
"$bin/shmesh" validate "$mesh"

# One socket per proxy: take every file descriptor the hard limit allows.
ulimit -n "$(ulimit -Hn)"
addr=$out/$workload.addr
rm -f "$addr"
# shellcheck disable=SC2086
"$bin/shmesh" serve --config-dir "$mesh" --debounce 100ms \
  --xds-addr 127.0.0.1:0 --admin-addr 127.0.0.1:0 --address-file "$addr" \
  "${serve[@]}" ${SERVE_EXTRA:-} >"$out/$workload.shmesh.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
  [ -s "$addr" ] && grep -q '^admin=' "$addr" && break
  sleep 0.1
done
xds=$(sed -n 's/^xds=//p' "$addr")
admin=$(sed -n 's/^admin=//p' "$addr")
for _ in $(seq 1 300); do
  curl -sf "http://$admin/readyz" >/dev/null && break
  sleep 0.1
done

# 30 source addresses: 30,000 connections from one address to one port
# would run out of ephemeral ports.
# shellcheck disable=SC2086
"$bin/shmesh-loadgen" run --xds "$xds" --admin "$admin" --pid "$pid" \
  --source-ips 127.0.0.2-127.0.0.31 --mesh-dir "$mesh" --debounce-ms 100 \
  --timeout-s "${TIMEOUT:-900}" --sync-timeout-s "${SYNC_TIMEOUT:-${TIMEOUT:-900}}" --json-out "$out/$workload.json" "${run[@]}" ${EXTRA:-} \
  2> >(tee "$out/$workload.progress" >&2) | tee "$out/$workload.txt"
