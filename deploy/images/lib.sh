# Shared by deploy/images/build.sh and deploy/images/<image>/build.sh (sourced, not run).
# Expects ROOT (the repository root); defines SUITE, VERSION, WORK, BASE, PYBASE and the helpers
# t, die, need, apt_mirror, base, python_base, host_build_mounts.
SUITE="${SUITE:-bookworm}"
VERSION="${VERSION:-0.1.0}"
WORK="$ROOT/var/images"
BASE="localhost/visearch/debian:$SUITE"
PYBASE="localhost/visearch/python:3.11-$SUITE"

t() { echo "[$(date +%T)] $*"; }
die() { echo "images/build.sh: $*" >&2; exit 1; }
need() { command -v "$1" >/dev/null || die "missing $1 (deploy/k8s/build.sh packages installs it)"; }

apt_mirror() {  # the first Debian archive URI apt uses here (deb822 or one-line format), not -security
  local m
  m=$( { grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}'
         grep -hsE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
           | sed -E 's/^deb (\[[^]]*\] )?//' | awk '{print $1}'; } | grep -v -- '-security' | grep -E '/debian/?$' | head -1)
  [ -n "$m" ] || die "no Debian mirror found in /etc/apt/sources.list*; set DEBIAN_MIRROR"
  echo "$m"
}

base() {
  need podman; need debootstrap
  if podman image exists "$BASE"; then t "$BASE present"; return; fi
  local mirror="${DEBIAN_MIRROR:-$(apt_mirror)}" start=$SECONDS rootfs="$WORK/rootfs-$SUITE"
  t "debootstrap $SUITE from $mirror"
  rm -rf "$rootfs"; mkdir -p "$WORK"
  nice -n 10 debootstrap --variant=minbase "$SUITE" "$rootfs" "$mirror" > "$WORK/debootstrap.log" 2>&1 \
    || { tail -20 "$WORK/debootstrap.log" >&2; die "debootstrap failed (log: $WORK/debootstrap.log)"; }
  rm -rf "$rootfs/var/cache/apt/archives/"*.deb "$rootfs/var/lib/apt/lists/"*
  tar -C "$rootfs" -c . | podman import --change 'CMD ["/bin/bash"]' - "$BASE" >/dev/null
  rm -rf "$rootfs"
  t "$BASE built in $((SECONDS - start)) s"
}

python_base() {
  base
  if podman image exists "$PYBASE"; then t "$PYBASE present"; return; fi
  local start=$SECONDS
  mkdir -p "$WORK/python"
  cat > "$WORK/python/Containerfile" <<CF
FROM $BASE
ENV LANG=C.UTF-8
RUN apt-get update \\
 && apt-get install -y --no-install-recommends python3 python3-venv python3-pip python-is-python3 ca-certificates \\
 && rm -rf /var/lib/apt/lists/*
CMD ["python3"]
CF
  nice -n 10 podman build --network=host -t "$PYBASE" "$WORK/python"
  t "$PYBASE built in $((SECONDS - start)) s"
}

# RUN steps see the host's package-index settings and trust store (pip.conf, the CA bundle: this machine's
# egress may re-sign TLS), bind-mounted read-only for the build only: nothing of them stays in a layer.
host_build_mounts() {
  local f
  for f in /etc/pip.conf /etc/ssl/certs/ca-certificates.crt; do
    [ -r "$f" ] && printf -- '--volume=%s:%s:ro\n' "$f" "$f"
  done
  return 0
}

