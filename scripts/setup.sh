#!/usr/bin/env bash
# Idempotent environment setup for tensorscan (local machines and CI).
#
#  1. Makes WebGPU work without a GPU: installs Mesa >= 25's lavapipe (software
#     Vulkan) plus the Vulkan loader. Debian 12's own Mesa 22 is refused by
#     Dawn, so on bookworm it comes from bookworm-backports.
#  2. Installs npm dependencies when node_modules is missing or older than
#     package-lock.json.
#
# Safe to re-run: when everything is already in place it only runs a few
# dpkg/stat checks and finishes in well under a second.
# Set SKIP_GPU_SETUP=1 to skip step 1 (e.g. on a machine with a real GPU).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

MESA_MIN=25

# Runs "$@" with its output captured; shows the output only if it fails.
quietly() {
  local out rc=0
  out=$(mktemp)
  ("$@") >"$out" 2>&1 || rc=$?
  if [[ $rc -ne 0 ]]; then
    cat "$out" >&2
    rm -f "$out"
    die "failed ($rc): $*"
  fi
  rm -f "$out"
}

# --- privileges ------------------------------------------------------------
as_root() {
  if [[ ${EUID:-$(id -u)} -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "need root (or sudo) to run: $*"
  fi
}

# --- 1. lavapipe (Mesa >= 25) ------------------------------------------------
pkg_version() { # prints the installed version of $1, or nothing
  dpkg-query -W -f='${db:Status-Status} ${Version}\n' "$1" 2>/dev/null |
    awk '$1 == "installed" { print $2 }'
}

lavapipe_ok() {
  local v
  v=$(pkg_version mesa-vulkan-drivers)
  [[ -n $v ]] && dpkg --compare-versions "$v" ge "$MESA_MIN" || return 1
  [[ -n $(pkg_version libvulkan1) ]] || return 1
  # the lavapipe ICD manifest must be there too
  compgen -G '/usr/share/vulkan/icd.d/lvp_icd*.json' >/dev/null
}

codename() {
  # shellcheck disable=SC1091
  (. /etc/os-release && printf '%s' "${VERSION_CODENAME:-}")
}

# Adds <codename>-backports as a deb822 source, reusing the mirror and keyring
# of the existing Debian source. No-op when a backports source already exists.
ensure_backports_source() {
  local suite=$1 file=/etc/apt/sources.list.d/debian-backports.sources
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [[ -f $f ]] || continue
    if grep -vE '^[[:space:]]*#' "$f" | grep -qE "(^|[[:space:]])${suite}([[:space:]]|$)"; then
      return 0
    fi
  done
  local uri="" keyring=""
  local src=/etc/apt/sources.list.d/debian.sources
  if [[ -f $src ]]; then
    # first stanza whose Suites contain the plain release (not -security)
    read -r uri keyring < <(awk -v rel="$2" '
      function flush() {
        if (!done && uri != "" && (" " suites " ") ~ (" " rel " ")) {
          print uri, (key == "" ? "-" : key); done = 1
        }
        uri = ""; suites = ""; key = ""
      }
      /^[[:space:]]*$/ { flush(); next }
      /^URIs:/      { uri = $2 }
      /^Suites:/    { $1 = ""; suites = $0 }
      /^Signed-By:/ { key = $2 }
      END { flush() }' "$src") || true
  fi
  [[ -n $uri ]] || uri=http://deb.debian.org/debian
  [[ -n $keyring && $keyring != - ]] || keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  log "adding apt source $suite ($uri)"
  printf 'Types: deb\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: %s\n' \
    "$uri" "$suite" "$keyring" | as_root tee "$file" >/dev/null
}

# Newest version of $1 that apt could install from suite $2 (empty if none).
candidate_in_suite() {
  apt-cache madison "$1" 2>/dev/null | awk -F'|' -v s="$2" '
    $3 ~ ("[ /]" s "[ /]") { gsub(/ /, "", $2); print $2; exit }'
}

setup_lavapipe() {
  if [[ ${SKIP_GPU_SETUP:-0} == 1 ]]; then
    return 0
  fi
  if lavapipe_ok; then
    return 0
  fi
  command -v apt-get >/dev/null 2>&1 ||
    die "Mesa >= $MESA_MIN (lavapipe) is missing and this is not a Debian/Ubuntu system; install mesa-vulkan-drivers >= $MESA_MIN and libvulkan1 by hand"

  local rel target=() suite=""
  rel=$(codename)
  if [[ $rel == bookworm ]]; then
    suite=bookworm-backports
    ensure_backports_source "$suite" "$rel"
    target=(-t "$suite")
  fi

  local cand=""
  if [[ -n $suite ]]; then
    cand=$(candidate_in_suite mesa-vulkan-drivers "$suite")
  else
    cand=$(apt-cache policy mesa-vulkan-drivers 2>/dev/null | awk '/Candidate:/ { print $2 }')
  fi
  if [[ -z $cand || $cand == "(none)" ]] || ! dpkg --compare-versions "$cand" ge "$MESA_MIN"; then
    log "apt-get update"
    quietly as_root apt-get update -qq
  fi

  log "installing Mesa >= $MESA_MIN lavapipe (mesa-vulkan-drivers${suite:+ from $suite})"
  quietly as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    --no-install-recommends "${target[@]}" mesa-vulkan-drivers libvulkan1

  lavapipe_ok || die "mesa-vulkan-drivers >= $MESA_MIN is still not installed (got: '$(pkg_version mesa-vulkan-drivers)')"
  log "installed mesa-vulkan-drivers $(pkg_version mesa-vulkan-drivers)"
}

# --- 2. npm dependencies -----------------------------------------------------
setup_node_modules() {
  command -v npm >/dev/null 2>&1 || die "npm not found (need Node >= 20)"
  local stamp=node_modules/.package-lock.json # written by npm at the end of every install
  if [[ -f package-lock.json ]]; then
    if [[ -f $stamp && ! package-lock.json -nt $stamp && ! package.json -nt $stamp ]]; then
      return 0
    fi
    log "npm ci"
    npm ci --no-audit --no-fund --loglevel=error >/dev/null
  else
    if [[ -f $stamp && ! package.json -nt $stamp ]]; then
      return 0
    fi
    log "npm install (no package-lock.json)"
    npm install --no-audit --no-fund --loglevel=error >/dev/null
  fi
}

setup_lavapipe
setup_node_modules
