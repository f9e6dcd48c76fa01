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

node build.mjs
scratch=$(mktemp -d /tmp/cnikit-demo.XXXXXX)
node build.mjs --install --dir "$scratch/bin"

id=$$
HOST=cnikit-demo-host-$id POD1=cnikit-demo-pod1-$id POD2=cnikit-demo-pod2-$id
WEB=cnikit-demo-web-$id CLIENT=cnikit-demo-client-$id
cleanup() {
  [ -z "${web_pid:-}" ] || kill "$web_pid" 2>/dev/null || true
  for ns in "$WEB" "$CLIENT" "$POD1" "$POD2" "$HOST"; do ip netns del "$ns" 2>/dev/null || true; done
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
echo "== done; removing the scratch namespaces and $scratch"
