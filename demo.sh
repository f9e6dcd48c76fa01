#!/usr/bin/env bash
# The main job: build cnikit, install it into a scratch directory, and wire two real pods with
# our bridge + host-local inside a scratch "host" network namespace; then DEL and clean up.
# Nothing is created in the machine's own network namespace. Needs root.
set -euo pipefail
cd "$(dirname "$0")"
unset NODE_EXTRA_CA_CERTS

if [ ! -x node_modules/.bin/esbuild ] || [ ! -x node_modules/.bin/bun ]; then
  npm ci --no-audit --no-fund --loglevel=error  # exactly the lock, as .ci/run
  node_modules/.bin/bun --version >/dev/null 2>&1 || (cd node_modules/bun && node install.js)
fi
command -v ip >/dev/null || { echo "demo needs iproute2 (apt-get install iproute2)" >&2; exit 1; }
command -v ping >/dev/null || { apt-get update -qq && apt-get install -y -qq iputils-ping >/dev/null; }
# The two-host part needs etcd: installed (not started; the demo starts its own in a scratch netns).
if ! command -v etcd >/dev/null || ! command -v etcdctl >/dev/null; then
  policy=/usr/sbin/policy-rc.d own_policy=
  [ -e "$policy" ] || { printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"; own_policy=1; }
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends etcd-server etcd-client >/dev/null; } ||
    echo "demo: could not install etcd-server; the two-host part will be skipped" >&2
  [ -z "$own_policy" ] || rm -f "$policy"
fi

node build.mjs
scratch=$(mktemp -d /tmp/cnikit-demo.XXXXXX)
node build.mjs --install --dir "$scratch/bin"

id=$$
HOST=cnikit-demo-host-$id POD1=cnikit-demo-pod1-$id POD2=cnikit-demo-pod2-$id
WEB=cnikit-demo-web-$id CLIENT=cnikit-demo-client-$id
SW=cnikit-demo-sw-$id ETCDNS=cnikit-demo-etcd-$id HA=cnikit-demo-ha-$id HB=cnikit-demo-hb-$id SBA=demo-sa-$id
pids=()  # etcd and the overlay agents: stopped by cleanup
cleanup() {
  [ -z "${web_pid:-}" ] || kill "$web_pid" 2>/dev/null || true
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill "${pids[i]}" 2>/dev/null || true; done  # agents before etcd
  ip netns del "$SBA" 2>/dev/null || true
  for ns in "$WEB" "$CLIENT" "$POD1" "$POD2" "$HOST" "$HA" "$HB" "$ETCDNS" "$SW"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$scratch"
}
trap cleanup EXIT
for ns in "$HOST" "$POD1" "$POD2"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done

mkdir -p "$scratch/net.d"
cat > "$scratch/net.d/10-demo.conflist" <<JSON
{
  "cniVersion": "1.1.0",
  "name": "demo",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cnidemo0",
      "isGateway": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{ "subnet": "198.18.10.0/24" }], [{ "subnet": "fd00:18:10::/64" }]],
        "dataDir": "$scratch/ipam"
      }
    }
  ]
}
JSON

# Pods are wired the way a runtime does it: our cnitool (a link of cnikit) loads the list, execs
# the bridge from CNI_PATH (which runs host-local in-process) and caches the result for CHECK/DEL.
cni() { # add|check|del pod-netns
  ip netns exec "$HOST" env -i PATH="$PATH" NETCONFPATH="$scratch/net.d" CNI_PATH="$scratch/bin" \
    CNI_CACHEDIR="$scratch/cache" "$scratch/bin/cnitool" "$1" demo "/var/run/netns/$2"
}

echo "== VERSION"
CNI_COMMAND=VERSION "$scratch/bin/bridge" </dev/null; echo
echo "== ADD pod1"; cni add "$POD1"
echo "== ADD pod2"; cni add "$POD2"
echo "== pod1 eth0"; ip -n "$POD1" -br addr show eth0
echo "== pod2 eth0"; ip -n "$POD2" -br addr show eth0
echo "== host: bridge and its ports"; ip -n "$HOST" -br link show master cnidemo0; ip -n "$HOST" -br addr show cnidemo0
pod2_ip=$(ip -n "$POD2" -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f1)
pod2_ip6=$(ip -n "$POD2" -6 -o addr show eth0 scope global | awk '{print $4}' | cut -d/ -f1)
echo "== ping pod1 -> pod2 ($pod2_ip, $pod2_ip6)"
ip netns exec "$POD1" ping -c 2 -W 2 "$pod2_ip"
ip netns exec "$POD1" ping -6 -c 2 -W 2 "$pod2_ip6"
echo "== leases"; ls "$scratch/ipam/demo"
echo "== CHECK pod1 (against the cached result)"; cni check "$POD1"; echo ok
echo "== cached results"; ls "$scratch/cache/results"
echo "== DEL pod1, pod2 (and DEL again: idempotent)"
cni del "$POD1"; cni del "$POD2"; cni del "$POD2"
echo "== leases after DEL"; ls "$scratch/ipam/demo"
echo "== cached results after DEL"; ls "$scratch/cache/results"

# The CNM shim: the same suite in Docker's terms. cnm runs in the host netns through nsenter --net
# (not `ip netns exec`, whose throwaway mount namespace would hide the sandboxes it bind-mounts under
# /run/netns); its state, leases and the result cache stay in the scratch dir.
cnm() {
  env -i PATH="$PATH" CNI_PATH="$scratch/bin" CNI_CACHEDIR="$scratch/cache" CNM_STATE_DIR="$scratch/cnm" \
    nsenter --net="/var/run/netns/$HOST" "$scratch/bin/cnm" "$@"
}
cnm_bg() { # cnm in the background whose pid is $! itself (env and nsenter exec into it): a signal reaches cnm
  env -i PATH="$PATH" CNI_PATH="$scratch/bin" CNI_CACHEDIR="$scratch/cache" CNM_STATE_DIR="$scratch/cnm" \
    nsenter --net="/var/run/netns/$HOST" "$scratch/bin/cnm" "$@" &
  web_pid=$!
}
echo "== CNM: cnm network create (a bridge network, Docker's defaults: gateway = first address, masquerade)"
cnm network create --subnet 198.18.20.0/24 --label demo=cnm cnmdemo
cnm network ls
echo "== CNM: cnm run web (--ip 198.18.20.10, in the background) and cnm run client, which pings it"
cnm_bg run --rm --name "$WEB" --network cnmdemo --ip 198.18.20.10 -- sleep 60
for _ in $(seq 100); do ip netns pids "$WEB" 2>/dev/null | grep -q . && break; sleep 0.1; done
cnm run --rm --name "$CLIENT" --network cnmdemo -- sh -c 'ip -br addr show eth0; ip route; ping -c 2 -W 2 198.18.20.10'
echo "== CNM: cnm network inspect cnmdemo (web is still attached)"
cnm network inspect cnmdemo
echo "== CNM: stop web (cnm run --rm disconnects and removes its sandbox), cnm network rm"
kill -TERM "$web_pid"; wait "$web_pid" || true; web_pid=
cnm sandbox ls
cnm network rm cnmdemo
# Two hosts, one overlay network (Docker's two-host overlay demo): host netns on a scratch underlay
# switch, etcd in its own netns, an overlay agent per host, the network created with cnm on host A,
# a sandbox on A pinged from a `cnm run` on host B across VXLAN.
if command -v etcd >/dev/null; then
  echo "== two hosts: underlay 198.19.0.0/24, etcd at 198.19.0.100"
  for ns in "$SW" "$ETCDNS" "$HA" "$HB"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
  ip -n "$SW" link add sw0 type bridge; ip -n "$SW" link set sw0 up
  plug() { # netns port address
    ip -n "$SW" link add "$2" type veth peer name eth0 netns "$1"; ip -n "$SW" link set "$2" master sw0 up
    ip -n "$1" addr add "$3/24" dev eth0; ip -n "$1" link set eth0 up
  }
  plug "$ETCDNS" e0 198.19.0.100; plug "$HA" ha 198.19.0.11; plug "$HB" hb 198.19.0.12
  E=http://198.19.0.100:2379
  nsenter --net="/run/netns/$ETCDNS" etcd --data-dir "$scratch/etcd" --listen-client-urls $E --advertise-client-urls $E \
    --log-level error 2>"$scratch/etcd.log" & pids+=($!); disown
  for h in "$HA:198.19.0.11:a" "$HB:198.19.0.12:b"; do
    IFS=: read -r ns ip n <<<"$h"
    nsenter --net="/run/netns/$ns" "$scratch/bin/overlay-agent" --etcd $E --underlay-ip "$ip" --name "host-$n" \
      --state-dir "$scratch/ovl-$n" --lease-ttl 5 --log-level warn & pids+=($!); disown
  done
  cnm_at() { # host-netns letter cnm-args...
    local ns=$1 n=$2; shift 2
    CNI_CACHEDIR="$scratch/cache-$n" nsenter --net="/run/netns/$ns" "$scratch/bin/cnm" --state-dir "$scratch/cnm-$n" \
      --cluster-store "etcd://198.19.0.100:2379" --overlay-state-dir "$scratch/ovl-$n" --cni-path "$scratch/bin" "$@"
  }
  until nsenter --net="/run/netns/$ETCDNS" etcdctl --endpoints=$E endpoint health >/dev/null 2>&1; do sleep 0.2; done
  echo "== host A: cnm network create -d overlay --subnet 198.18.128.0/17 multi"
  cnm_at "$HA" a network create -d overlay --subnet 198.18.128.0/17 multi >/dev/null
  echo "== host B: cnm network ls"; cnm_at "$HB" b network ls
  until [ -e "$scratch/ovl-a/multi.json" ] && [ -e "$scratch/ovl-b/multi.json" ]; do sleep 0.1; done
  echo "== host leases"; cat "$scratch/ovl-a/multi.json" "$scratch/ovl-b/multi.json"
  cnm_at "$HA" a sandbox create "$SBA" >/dev/null; cnm_at "$HA" a network connect multi "$SBA"
  sa_ip=$(ip -n "$SBA" -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f1)
  echo "== host B: cnm run --network multi -- ping $sa_ip (a sandbox on host A, over VXLAN)"
  cnm_at "$HB" b run --rm --network multi -- ping -c 2 -W 2 "$sa_ip"
  echo "== host A: routes and FDB towards host B"; ip -n "$HA" route show dev ovl.1; bridge -n "$HA" fdb show dev ovl.1
  cnm_at "$HA" a sandbox rm "$SBA" >/dev/null; cnm_at "$HB" b network rm multi >/dev/null; echo "== network removed from host B"
else
  echo "== (two-host overlay part skipped: etcd-server could not be installed)"
fi
echo "== done; removing the scratch namespaces and $scratch"
