#!/usr/bin/env bash
# The container images, as far as they can be checked without a Docker
# engine: dockerfilelint (npm) on both Dockerfiles; each runtime stage
# installs exactly the Debian packages that `ldd` of the binaries built here
# needs (each .so mapped to its package with `dpkg -S`); and the image's
# shape: multi-stage, non-root USER, STOPSIGNAL SIGTERM, a gRPC health check,
# kestrel-server as ENTRYPOINT with flags it knows.
set -euo pipefail
runfiles="${TEST_SRCDIR}/${TEST_WORKSPACE}"
tmp="$(mktemp -d "${TEST_TMPDIR:-/tmp}/docker.XXXXXX")"
lint="${KESTREL_TOOLS_DIR:-/opt/kestrel/tools}/node_modules/.bin/dockerfilelint"
if [[ ! -x "$lint" ]] || ! command -v dpkg >/dev/null || ! command -v ldd >/dev/null; then
  if [[ "${CI:-}" == "true" ]]; then echo "FAIL: dockerfilelint, dpkg or ldd missing (scripts/setup)"; exit 1; fi
  echo "KESTREL-SKIPPED: dockerfilelint, dpkg or ldd missing"; exit 0
fi
fail() { echo "FAIL: $*"; exit 1; }
docker="$runfiles/deploy/docker"
server="$(readlink -f "$runfiles/server/kestrel-server")"
client="$(readlink -f "$runfiles/client/kestrel")"

for f in Dockerfile.cpu Dockerfile.cuda; do
  # dockerfilelint reads .dockerfilelintrc beside the file: lint a copy.
  cp "$docker/$f" "$tmp/$f"
  "$lint" "$tmp/$f" || fail "dockerfilelint: $f"
  echo "ok: dockerfilelint $f"
done

# The Debian packages the binaries need: every library ldd resolves, mapped
# with one `dpkg -S` (each tried as ldd prints it, as its real path, and
# across the /lib -> /usr/lib merge).
needed_packages() {
  for bin in "$@"; do ldd "$bin"; done | python3 -c '
import os, subprocess, sys
libs = set()
for line in sys.stdin:
    parts = line.split()
    if "=>" in parts and len(parts) > parts.index("=>") + 1 and parts[parts.index("=>") + 1].startswith("/"):
        libs.add(parts[parts.index("=>") + 1])
    elif parts and parts[0].startswith("/"):
        libs.add(parts[0])
def variants(path):
    for p in (path, os.path.realpath(path)):
        yield p
        yield p[4:] if p.startswith("/usr/") else "/usr" + p
cands = {lib: list(dict.fromkeys(variants(lib))) for lib in libs}
out = subprocess.run(["dpkg", "-S"] + sorted({c for cs in cands.values() for c in cs}),
                     capture_output=True, text=True).stdout
owner = {}
for line in out.splitlines():
    pkgs, path = line.split(": ", 1)
    owner[path] = pkgs.split(",")[0].split(":")[0].strip()
for lib in sorted(libs):
    found = [owner[c] for c in cands[lib] if c in owner]
    print(found[0] if found else "UNOWNED:" + lib)
' | sort -u
}
needed_packages "$server" "$client" >"$tmp/needed.txt"
if grep -q '^UNOWNED:' "$tmp/needed.txt"; then
  fail "libraries no Debian package owns: $(grep '^UNOWNED:' "$tmp/needed.txt" | tr '\n' ' ')"
fi
echo "ldd + dpkg -S: $(tr '\n' ' ' <"$tmp/needed.txt")"

# The packages between the runtime-packages markers of a Dockerfile.
listed_packages() {
  sed -n '/^# runtime-packages: begin/,/^# runtime-packages: end/p' "$1" |
    grep -E '^\s+[a-z0-9][a-z0-9.+-]+ \\$' | awk '{print $1}' | sort -u
}
for f in Dockerfile.cpu Dockerfile.cuda; do
  listed_packages "$docker/$f" >"$tmp/$f.listed"
  [[ -s "$tmp/$f.listed" ]] || fail "$f: no runtime-packages block"
  if ! diff -u "$tmp/needed.txt" "$tmp/$f.listed" >"$tmp/$f.diff"; then
    echo "  (- needed by ldd but not installed, + installed but not needed)"
    cat "$tmp/$f.diff"
    fail "$f: the runtime stage's packages differ from what the binaries need"
  fi
  echo "ok: $f installs exactly the $(wc -l <"$tmp/$f.listed") packages the binaries need"
done
# The comparison bites: a list without one package, or with an extra one.
head -n -1 "$tmp/needed.txt" >"$tmp/short.txt"
diff -q "$tmp/needed.txt" "$tmp/short.txt" >/dev/null && fail "self-test: a missing package went unnoticed"
(cat "$tmp/needed.txt"; echo curl) | sort >"$tmp/long.txt"
diff -q "$tmp/needed.txt" "$tmp/long.txt" >/dev/null && fail "self-test: an extra package went unnoticed"

"$server" --help >"$tmp/help.txt"
for f in Dockerfile.cpu Dockerfile.cuda; do
  d="$docker/$f"
  [[ $(grep -c '^FROM ' "$d") -ge 2 ]] && grep -q '^FROM debian:12-slim AS runtime' "$d" ||
    fail "$f: not multi-stage on debian:12-slim"
  # The runtime stage is the last one: its USER must be a non-root uid.
  user=$(sed -n '/AS runtime/,$p' "$d" | grep '^USER ' | tail -1 | awk '{print $2}')
  [[ -n "$user" && "${user%%:*}" != "0" && "${user%%:*}" != "root" ]] || fail "$f: runs as root"
  grep -qx 'STOPSIGNAL SIGTERM' "$d" || fail "$f: no STOPSIGNAL SIGTERM"
  grep -A1 '^HEALTHCHECK' "$d" | grep -q '"/usr/local/bin/kestrel", "health"' || fail "$f: no gRPC health check"
  grep -qx 'ENTRYPOINT \["/usr/local/bin/kestrel-server"\]' "$d" || fail "$f: entrypoint is not kestrel-server"
  for flag in $(grep '^CMD ' "$d" | grep -oE '"--[a-z-]+' | tr -d '"'); do
    grep -qE "^\s+$flag[=[:space:]]" "$tmp/help.txt" || fail "$f: CMD flag $flag unknown to kestrel-server"
  done
  echo "ok: $f: multi-stage, USER $user, STOPSIGNAL SIGTERM, health check, kestrel-server entrypoint"
done
echo "docker: all checks passed"
