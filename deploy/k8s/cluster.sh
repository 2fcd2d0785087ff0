#!/usr/bin/env bash
# A one-node Kubernetes cluster that lives inside its own network namespace.
#
#   deploy/k8s/cluster.sh up|down|status|import IMG...|kubectl ARGS...|ctr ARGS...|exec CMD...|check-host [--help]
#
#   up          create network namespace $K8S_NETNS (visearch-k8s) and start, inside it: etcd,
#               containerd (+runc, CNI bridge), kube-apiserver, kube-controller-manager,
#               kube-scheduler, kubelet, kube-proxy (iptables mode) and CoreDNS. Idempotent: a running
#               cluster is left as it is. Binaries come from deploy/k8s/build.sh (cached).
#   down        delete the workloads, stop the processes `up` recorded (by PID, each checked against
#               its command line), delete the namespace (and with it every bridge, veth, address,
#               route and iptables rule the cluster made), restore the host sysctls the kubelet
#               rewrites, then compare the host network with the snapshot `up` took (check-host).
#               WIPE=1 also removes the cluster state (etcd data, containerd root, PKI).
#   status      processes, node and pods.
#   kubectl     kubectl against the cluster (run inside the namespace; kubeconfig in $STATE/pki).
#               From the host, tools use KUBECONFIG=$STATE/pki/host.kubeconfig: the API server
#               through a loopback relay (relay.py) on 127.0.0.1:$K8S_API_PORT (16443).
#   ctr         containerd's ctr against the cluster's containerd (namespace k8s.io).
#   import IMG...  copy podman images into the running node's containerd (pods use imagePullPolicy: Never).
#   exec        run a command inside the network namespace with KUBECONFIG set.
#   check-host  compare host links, addresses, routes, iptables and sysctls with the `up` snapshot.
#
# Addresses (all inside the namespace only): node $NODE_IP on bridge k8snode0, pods 10.244.0.0/24 on
# bridge k8sbr0, Services 10.96.0.0/24, cluster DNS 10.96.0.10. Processes join only the network
# namespace (nsenter --net), so the kubelet and containerd share the host's mount namespace.
# Environment: K8S_DOWN_GRACE_S (pod termination grace at down, 10), K8S_API_PORT, K8S_EXTRA_IMAGES (podman
# images to import into the node), K8S_DNS=0 (skip CoreDNS; for testing only), K8S_METRICS=0 (skip
# metrics-server), WIPE=1 (down: remove state), NODE_IP, K8S_NETNS.
# State: $VISEARCH_K8S_STATE (default var/k8s in the repo); binaries: $VISEARCH_K8S_CACHE/bin.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/deploy/k8s"
CACHE="${VISEARCH_K8S_CACHE:-$HOME/.cache/visearch/k8s}"
BIN="$CACHE/bin"
S="${VISEARCH_K8S_STATE:-$ROOT/var/k8s}"
NS="${K8S_NETNS:-visearch-k8s}"
NODE_IP="${NODE_IP:-10.245.255.1}"
POD_CIDR=10.244.0.0/24
SVC_CIDR=10.96.0.0/24
CLUSTER_DNS=10.96.0.10
NODE_NAME=visearch-node
R="$S/run"; L="$S/logs"; PKI="$S/pki"
KCFG="$PKI/admin.kubeconfig"
SOCK="$S/containerd/containerd.sock"
API_PORT="${K8S_API_PORT:-16443}"   # host loopback port of the API relay
HOST_KCFG="$PKI/host.kubeconfig"
COMPONENTS=(etcd containerd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy relay)
# host sysctls the kubelet rewrites at start (setupKernelTunables): recorded by up, restored by down
KUBELET_SYSCTLS=(vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops
                 kernel/keys/root_maxkeys kernel/keys/root_maxbytes)

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'; }
t() { echo "[$(date +%T)] $*"; }
die() { echo "cluster.sh: $*" >&2; exit 1; }
in_ns() { nsenter --net="/run/netns/$NS" -- "$@"; }
kc() { in_ns env KUBECONFIG="$KCFG" "$BIN/kubectl" "$@"; }
ctr_() { ctr -a "$SOCK" -n k8s.io "$@"; }

# A recorded PID that still runs the program we started (its command line contains $2).
alive() {
  local p; p=$(cat "$R/$1.pid" 2>/dev/null) || return 1
  [ -r "/proc/$p/cmdline" ] && tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null | grep -qF -- "$2" && echo "$p"
}
start() {  # start NAME MATCH CMD...: run inside the namespace, detached, PID recorded
  local n=$1 m=$2; shift 2
  if alive "$n" "$m" >/dev/null; then t "$n already running"; return; fi
  setsid nsenter --net="/run/netns/$NS" -- "$@" > "$L/$n.log" 2>&1 < /dev/null &
  echo $! > "$R/$n.pid"
}
wait_for() {  # wait_for SECONDS WHAT CMD...
  local n=$1 what=$2 i; shift 2
  for ((i = 0; i < n * 2; i++)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
  die "timed out after ${n}s waiting for $what (logs in $L)"
}
match_of() {  # the command-line fragment that identifies each component
  case $1 in
    etcd) echo "etcd --name visearch" ;; relay) echo "$HERE/relay.py --netns $NS" ;; containerd) echo "containerd --config $S/containerd/config.toml" ;;
    *) echo "$BIN/$1" ;;
  esac
}

rules_only() {  # iptables-save output without counters, comments, and tables that hold only empty built-in
  # chains with policy ACCEPT: a table merely loaded (by any iptables call) is the same state as no table
  sed -E '/^#/d; s/\[[0-9]+:[0-9]+\]//' | awk '
    /^\*/ { table = $0; n = 0; keep = 0; next }
    /^COMMIT/ { if (keep) { print table; for (i = 1; i <= n; i++) print lines[i]; print "COMMIT" } next }
    { lines[++n] = $0; if ($0 !~ /^:[A-Z]+ ACCEPT *$/) keep = 1 }'
}

host_snapshot() {  # host_snapshot FILE: what must be identical before up and after down
  {
    echo "## links"; ip -o link show | sed -E 's/^[0-9]+: //; s/ qlen [0-9]+//' | awk '{print $1, $2, $3}' | sort
    echo "## addresses"; ip -o addr show | awk '{print $2, $3, $4}' | sort
    echo "## routes"; ip route show table all | sort
    echo "## rules"; ip rule show
    echo "## network namespaces"; ls /run/netns 2>/dev/null || true
    echo "## iptables"; { iptables-save 2>/dev/null || true; } | rules_only
    echo "## ip6tables"; { ip6tables-save 2>/dev/null || true; } | rules_only
    echo "## sysctls"
    local s
    for s in "${KUBELET_SYSCTLS[@]}" net/ipv4/ip_forward net/ipv4/conf/all/route_localnet \
             net/bridge/bridge-nf-call-iptables net/netfilter/nf_conntrack_max; do
      echo "$s $(cat "/proc/sys/$s" 2>/dev/null || echo absent)"
    done
  } > "$1"
}
check_host() {
  [ -f "$R/host.before" ] || die "no host snapshot ($R/host.before): run up first"
  host_snapshot "$R/host.after"
  if diff -u "$R/host.before" "$R/host.after"; then t "host network and sysctls as before up"
  else die "host state differs from before up (diff above)"; fi
}

ensure_images() {  # pause and CoreDNS images, made locally from cached static binaries
  local img tmp imgs=(pause)
  [ "${K8S_DNS:-1}" = 1 ] && imgs+=(coredns)
  [ "${K8S_METRICS:-1}" = 1 ] && imgs+=(metrics-server)
  for img in "${imgs[@]}"; do
    [ -x "$BIN/$img" ] || die "missing $BIN/$img: run deploy/k8s/build.sh"
    podman image exists "localhost/visearch-k8s/$img:local" && continue
    tmp=$(mktemp -d); mkdir -p "$tmp/etc"; cp "$BIN/$img" "$tmp/$img"
    echo 'nobody:x:65534:65534::/:/nonexistent' > "$tmp/etc/passwd"
    tar -C "$tmp" -c . | podman import --change "ENTRYPOINT [\"/$img\"]" - "localhost/visearch-k8s/$img:local" >/dev/null
    rm -rf "$tmp"; t "image localhost/visearch-k8s/$img:local built"
  done
}
import_images() {  # import_images IMG...: podman images into the cluster's containerd
  local img
  for img in "$@"; do
    podman save --format docker-archive "$img" | ctr_ images import - >/dev/null
  done
}

pki() {
  [ -f "$PKI/admin.kubeconfig" ] && return
  mkdir -p "$PKI"; chmod 700 "$PKI"
  (
    umask 077; cd "$PKI"
    openssl genrsa -out ca.key 2048 2>/dev/null
    openssl req -x509 -new -nodes -key ca.key -subj "/CN=visearch-k8s-ca" -days 3650 -out ca.crt
    printf '[req]\ndistinguished_name=dn\n[dn]\n[srv]\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,IP:%s,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\n[cli]\nbasicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n' "$NODE_IP" > x509.cnf
    openssl genrsa -out apiserver.key 2048 2>/dev/null
    openssl req -new -key apiserver.key -subj "/CN=kube-apiserver" -config x509.cnf -out apiserver.csr
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -extfile x509.cnf -extensions srv -out apiserver.crt 2>/dev/null
    openssl genrsa -out admin.key 2048 2>/dev/null
    openssl req -new -key admin.key -subj "/O=system:masters/CN=kubernetes-admin" -config x509.cnf -out admin.csr
    openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -extfile x509.cnf -extensions cli -out admin.crt 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null; openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    cat > admin.kubeconfig.tmp <<KC
apiVersion: v1
kind: Config
clusters: [{name: visearch-k8s, cluster: {server: "https://$NODE_IP:6443", certificate-authority: $PKI/ca.crt}}]
users: [{name: admin, user: {client-certificate: $PKI/admin.crt, client-key: $PKI/admin.key}}]
contexts: [{name: visearch-k8s, context: {cluster: visearch-k8s, user: admin}}]
current-context: visearch-k8s
KC
    mv admin.kubeconfig.tmp admin.kubeconfig
  )
  t "pki created"
}

front_proxy_pki() {  # API aggregation (metrics-server): the CA and client cert the API server proxies with
  [ -f "$PKI/front-proxy-client.crt" ] && return
  (
    umask 077; cd "$PKI"
    openssl genrsa -out front-proxy-ca.key 2048 2>/dev/null
    openssl req -x509 -new -nodes -key front-proxy-ca.key -subj "/CN=visearch-k8s-front-proxy-ca" -days 3650 -out front-proxy-ca.crt
    openssl genrsa -out front-proxy-client.key 2048 2>/dev/null
    openssl req -new -key front-proxy-client.key -subj "/CN=front-proxy-client" -config x509.cnf -out front-proxy-client.csr
    openssl x509 -req -in front-proxy-client.csr -CA front-proxy-ca.crt -CAkey front-proxy-ca.key -CAcreateserial \
      -days 3650 -extfile x509.cnf -extensions cli -out front-proxy-client.crt 2>/dev/null
  )
  t "front-proxy pki created"
}

netns_up() {
  if ! ip netns list | grep -qw "^$NS"; then
    ip netns add "$NS"; t "network namespace $NS created"
  fi
  in_ns ip link set lo up
  in_ns ip link show k8snode0 >/dev/null 2>&1 || in_ns ip link add k8snode0 type bridge
  in_ns ip addr show dev k8snode0 | grep -qF "$NODE_IP/" || in_ns ip addr add "$NODE_IP/32" dev k8snode0
  in_ns ip link set k8snode0 up
  # locally generated traffic to Service IPs needs a route before kube-proxy's DNAT applies
  in_ns ip route replace default dev k8snode0 src "$NODE_IP"
  echo 1 | in_ns tee /proc/sys/net/ipv4/ip_forward >/dev/null   # per namespace
}

write_configs() {
  mkdir -p "$S/containerd" "$S/cni/net.d" "$S/kubelet" "$S/kube-proxy"
  cat > "$S/containerd/config.toml" <<CONF
version = 2
root = "$S/containerd/root"
state = "$S/containerd/state"
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/visearch-k8s/pause:local"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$S/cni/net.d"
CONF
  cat > "$S/cni/net.d/10-bridge.conflist" <<CONF
{"cniVersion": "0.4.0", "name": "visearch-k8s", "plugins": [
  {"type": "bridge", "bridge": "k8sbr0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "dataDir": "$S/cni/ipam", "ranges": [[{"subnet": "$POD_CIDR"}]],
            "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "loopback"}]}
CONF
  cat > "$S/kubelet/config.yaml" <<CONF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
authentication: {anonymous: {enabled: false}, webhook: {enabled: true}, x509: {clientCAFile: $PKI/ca.crt}}
authorization: {mode: AlwaysAllow}
cgroupDriver: cgroupfs
cgroupRoot: /visearch-k8s
failCgroupV1: false
containerRuntimeEndpoint: unix://$SOCK
failSwapOn: false
oomScoreAdj: 0
clusterDomain: cluster.local
clusterDNS: [$CLUSTER_DNS]
resolvConf: /etc/resolv.conf
podCIDR: $POD_CIDR
maxPods: 60
serializeImagePulls: false
evictionHard: {memory.available: "200Mi", nodefs.available: "5%", imagefs.available: "5%"}
imageGCHighThresholdPercent: 95
imageGCLowThresholdPercent: 90
CONF
  cat > "$S/kube-proxy/config.yaml" <<CONF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $KCFG}
mode: iptables
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
clusterCIDR: $POD_CIDR
hostnameOverride: $NODE_NAME
nodePortAddresses: ["$NODE_IP/32"]
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
CONF
}

up() {
  [ "$(id -u)" = 0 ] || die "needs root (network namespace, containerd, kubelet)"
  local c
  for c in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl pause; do
    [ -x "$BIN/$c" ] || die "missing $BIN/$c: run deploy/k8s/build.sh first"
  done
  for c in etcd etcdctl containerd ctr runc podman nsenter iptables openssl; do
    command -v "$c" >/dev/null || die "missing $c: run deploy/k8s/build.sh packages"
  done
  local t0=$SECONDS
  mkdir -p "$R" "$L"
  # host state before the first up (kept across repeated ups until down)
  [ -f "$R/host.before" ] || host_snapshot "$R/host.before"
  [ -f "$R/sysctl.orig" ] || for c in "${KUBELET_SYSCTLS[@]}"; do echo "$c $(cat "/proc/sys/$c")"; done > "$R/sysctl.orig"
  netns_up
  pki; front_proxy_pki
  write_configs
  ensure_images

  start etcd "$(match_of etcd)" nice -n 5 etcd --name visearch --data-dir "$S/etcd-data" \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster visearch=http://127.0.0.1:2380 --listen-metrics-urls http://127.0.0.1:2381 --unsafe-no-fsync
  wait_for 60 etcd in_ns env ETCDCTL_API=3 etcdctl --endpoints http://127.0.0.1:2379 endpoint health
  t "etcd ok"

  start containerd "$(match_of containerd)" containerd --config "$S/containerd/config.toml"
  wait_for 60 containerd ctr_ version
  import_images localhost/visearch-k8s/pause:local ${K8S_EXTRA_IMAGES:-}
  if [ "${K8S_DNS:-1}" = 1 ]; then import_images localhost/visearch-k8s/coredns:local; fi
  if [ "${K8S_METRICS:-1}" = 1 ]; then import_images localhost/visearch-k8s/metrics-server:local; fi
  t "containerd ok, images imported"

  start kube-apiserver "$BIN/kube-apiserver" nice -n 5 "$BIN/kube-apiserver" --etcd-servers=http://127.0.0.1:2379 \
    --bind-address="$NODE_IP" --advertise-address="$NODE_IP" --secure-port=6443 \
    --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" --client-ca-file="$PKI/ca.crt" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
    --service-cluster-ip-range="$SVC_CIDR" --authorization-mode=Node,RBAC --allow-privileged=true \
    --requestheader-client-ca-file="$PKI/front-proxy-ca.crt" --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- --enable-aggregator-routing=true \
    --proxy-client-cert-file="$PKI/front-proxy-client.crt" --proxy-client-key-file="$PKI/front-proxy-client.key" \
    --kubelet-client-certificate="$PKI/admin.crt" --kubelet-client-key="$PKI/admin.key" \
    --kubelet-preferred-address-types=InternalIP --endpoint-reconciler-type=lease --profiling=false
  wait_for 120 "the API server" kc get --raw /readyz
  t "apiserver ready"
  if ! alive relay "$(match_of relay)" >/dev/null; then  # host side: 127.0.0.1:$API_PORT only
    setsid python3 "$HERE/relay.py" --netns "$NS" --listen "127.0.0.1:$API_PORT" --target "$NODE_IP:6443" \
      > "$L/relay.log" 2>&1 < /dev/null &
    echo $! > "$R/relay.pid"
  fi
  (umask 077; sed -e "s|https://$NODE_IP:6443|https://127.0.0.1:$API_PORT|" "$KCFG" > "$HOST_KCFG")
  wait_for 30 "the API relay" env KUBECONFIG="$HOST_KCFG" "$BIN/kubectl" get --raw /readyz
  t "API server reachable from the host: KUBECONFIG=$HOST_KCFG (relay 127.0.0.1:$API_PORT)"
  start kube-controller-manager "$BIN/kube-controller-manager" nice -n 5 "$BIN/kube-controller-manager" \
    --kubeconfig="$KCFG" --authentication-kubeconfig="$KCFG" --authorization-kubeconfig="$KCFG" \
    --bind-address=127.0.0.1 --leader-elect=false --service-account-private-key-file="$PKI/sa.key" \
    --root-ca-file="$PKI/ca.crt" --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
    --use-service-account-credentials=true --service-cluster-ip-range="$SVC_CIDR" --profiling=false
  start kube-scheduler "$BIN/kube-scheduler" nice -n 5 "$BIN/kube-scheduler" --kubeconfig="$KCFG" \
    --authentication-kubeconfig="$KCFG" --authorization-kubeconfig="$KCFG" \
    --bind-address=127.0.0.1 --leader-elect=false --profiling=false

  cgroups_up
  start kubelet "$BIN/kubelet" nice -n 5 "$BIN/kubelet" --config="$S/kubelet/config.yaml" --kubeconfig="$KCFG" \
    --root-dir="$S/kubelet/root" --hostname-override="$NODE_NAME" --node-ip="$NODE_IP"
  wait_for 120 "node Ready" node_ready
  sleep 1; restore_sysctls
  t "node Ready (host sysctls the kubelet rewrote restored)"

  start kube-proxy "$BIN/kube-proxy" nice -n 5 "$BIN/kube-proxy" --config="$S/kube-proxy/config.yaml"
  wait_for 60 kube-proxy in_ns curl -sf -o /dev/null http://127.0.0.1:10256/healthz
  t "kube-proxy ok"
  if [ "${K8S_DNS:-1}" = 1 ]; then
    sed -e "s|@CLUSTER_DNS@|$CLUSTER_DNS|" "$HERE/coredns.yaml" | kc apply -f - >/dev/null
    kc -n kube-system rollout status deploy/coredns --timeout=180s >/dev/null
    t "coredns ok"
  else t "K8S_DNS=0: CoreDNS not deployed (testing only)"; fi
  if [ "${K8S_METRICS:-1}" = 1 ]; then
    kc apply -f "$HERE/metrics-server.yaml" >/dev/null
    kc -n kube-system rollout status deploy/metrics-server --timeout=180s >/dev/null
    t "metrics-server ok (metrics.k8s.io for HPAs)"
  fi
  t "cluster up in $((SECONDS - t0)) s"
  kc get nodes -o wide
}

cgroup_mounts() { awk '$3 == "cgroup" || $3 == "cgroup2" {print $2}' /proc/mounts; }
cgroups_up() {  # the kubelet's cgroupRoot (/visearch-k8s) must exist in every hierarchy
  local m
  for m in $(cgroup_mounts); do
    [ -d "$m/visearch-k8s" ] && continue
    mkdir "$m/visearch-k8s"
    if [ -f "$m/cpuset.cpus" ]; then
      cat "$m/cpuset.cpus" > "$m/visearch-k8s/cpuset.cpus"; cat "$m/cpuset.mems" > "$m/visearch-k8s/cpuset.mems"
    fi
  done
}
cgroups_down() {  # remove them (innermost first); a non-empty one is reported, not forced
  local m
  for m in $(cgroup_mounts); do
    [ -d "$m/visearch-k8s" ] || continue
    find "$m/visearch-k8s" -depth -type d -exec rmdir {} + 2>/dev/null || true
    [ -d "$m/visearch-k8s" ] && echo "warning: $m/visearch-k8s not empty, left in place" >&2
  done
  return 0
}

node_ready() { kc get node "$NODE_NAME" 2>/dev/null | grep -q ' Ready'; }

restore_sysctls() {
  [ -f "$R/sysctl.orig" ] || return 0
  local s v
  while read -r s v; do
    [ "$(cat "/proc/sys/$s")" = "$v" ] || echo "$v" > "/proc/sys/$s"
  done < "$R/sysctl.orig"
}

stop_pid() {  # stop_pid NAME: TERM, then KILL after 20 s, the recorded process if still ours
  local p i m; m=$(match_of "$1")
  p=$(alive "$1" "$m") || { rm -f "$R/$1.pid"; return 0; }
  kill "$p" 2>/dev/null || true
  for ((i = 0; i < 40; i++)); do alive "$1" "$m" >/dev/null || break; sleep 0.5; done
  if alive "$1" "$m" >/dev/null; then kill -KILL "$p" 2>/dev/null || true; sleep 0.5; fi
  rm -f "$R/$1.pid"; t "stopped $1 ($p)"
}

down() {
  [ "$(id -u)" = 0 ] || die "needs root"
  local t0=$SECONDS c p
  if alive kube-apiserver "$BIN/kube-apiserver" >/dev/null && alive kubelet "$BIN/kubelet" >/dev/null \
     && kc get --raw /readyz >/dev/null 2>&1; then
    for c in $(kc get ns -o jsonpath='{.items[*].metadata.name}'); do
      kc -n "$c" delete deploy,statefulset,daemonset,job,replicaset,pod --all --wait=false \
        --grace-period="${K8S_DOWN_GRACE_S:-10}" >/dev/null 2>&1 || true
    done
    for ((p = 0; p < 90; p++)); do [ -z "$(kc get pods -A -o name 2>/dev/null)" ] && break; sleep 1; done
    t "workloads deleted"
  fi
  for c in relay kube-proxy kubelet kube-scheduler kube-controller-manager kube-apiserver; do stop_pid "$c"; done
  if alive containerd "$(match_of containerd)" >/dev/null; then
    for c in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks kill -s KILL "$c" >/dev/null 2>&1 || true; done
    sleep 1
    for c in $(ctr_ containers ls -q 2>/dev/null); do
      ctr_ tasks delete "$c" >/dev/null 2>&1 || true; ctr_ containers delete "$c" >/dev/null 2>&1 || true
    done
  fi
  stop_pid containerd; stop_pid etcd
  # pod sandboxes' network namespaces and mounts the runtime left under our state dir
  for p in $(awk -v s="$S/" 'index($2, s) == 1 {print $2}' /proc/mounts | sort -r); do umount "$p" 2>/dev/null || umount -l "$p" || true; done
  if ip netns list | grep -qw "^$NS"; then
    p=$(ip netns pids "$NS" 2>/dev/null | tr '\n' ' ')
    [ -z "$p" ] || die "processes still in namespace $NS: $p (not ours to kill blindly; inspect them)"
    ip netns delete "$NS"; t "network namespace $NS deleted"
  fi
  # the kubelet's cgroups (cgroupRoot /visearch-k8s), innermost first, only when empty
  cgroups_down
  restore_sysctls
  if [ "${WIPE:-0}" = 1 ]; then
    rm -rf "$S/etcd-data" "$S/containerd/root" "$S/containerd/state" "$S/kubelet/root" "$S/cni/ipam" "$PKI"
    t "state wiped"
  fi
  t "down in $((SECONDS - t0)) s"
  p=$(awk -v s="$S/" 'index($2, s) == 1' /proc/mounts | wc -l)
  [ "$p" = 0 ] || echo "warning: $p mounts left under $S" >&2
  if [ -f "$R/host.before" ]; then check_host && rm -f "$R/host.before" "$R/host.after" "$R/sysctl.orig"; fi
}

status() {
  local c p
  ip netns list | grep -qw "^$NS" && echo "namespace $NS: present" || echo "namespace $NS: absent"
  for c in "${COMPONENTS[@]}"; do
    if p=$(alive "$c" "$(match_of "$c")"); then printf '  %-24s running (pid %s)\n' "$c" "$p"
    else printf '  %-24s stopped\n' "$c"; fi
  done
  if alive kube-apiserver "$BIN/kube-apiserver" >/dev/null && kc get --raw /readyz >/dev/null 2>&1; then
    kc get nodes -o wide; kc get pods -A -o wide
  fi
}

# sourced (tests): only the functions
[[ "${BASH_SOURCE[0]}" == "$0" ]] || return 0
cmd="${1:-}"; [ $# -gt 0 ] && shift
case "$cmd" in
  up) up ;;
  down) down ;;
  status) status ;;
  kubectl) kc "$@" ;;
  ctr) ctr_ "$@" ;;
  import) [ $# -gt 0 ] || { echo "usage: cluster.sh import IMG..." >&2; exit 2; }; import_images "$@" ;;
  exec) in_ns env KUBECONFIG="$KCFG" PATH="$BIN:$PATH" "$@" ;;
  check-host) check_host ;;
  -h|--help|help) usage ;;
  *) usage >&2; exit 2 ;;
esac
