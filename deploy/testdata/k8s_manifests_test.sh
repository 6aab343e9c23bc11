#!/usr/bin/env bash
# The Kubernetes manifests, offline: yamllint on all of deploy/, then each
# overlay (cpu, gpu, tp) and the prometheus-adapter rules rendered with
# `kubectl kustomize` and every object validated against the Kubernetes
# OpenAPI schemas plus the cross-object checks of validate_k8s.js. Last, a
# broken copy (grace period shorter than the drain) must be refused, so the
# validator is known to fail.
set -euo pipefail
runfiles="${TEST_SRCDIR}/${TEST_WORKSPACE}"
tmp="$(mktemp -d "${TEST_TMPDIR:-/tmp}/k8s.XXXXXX")"
modules="${KESTREL_TOOLS_DIR:-/opt/kestrel/tools}/node_modules"
skip_or_fail() {
  if [[ "${CI:-}" == "true" ]]; then echo "FAIL: $* (scripts/setup installs it)"; exit 1; fi
  echo "KESTREL-SKIPPED: $*"; exit 0
}
command -v kubectl >/dev/null || skip_or_fail "kubectl missing (Debian kubernetes-client)"
command -v yamllint >/dev/null || skip_or_fail "yamllint missing (Debian yamllint)"
command -v node >/dev/null || skip_or_fail "node missing (Debian nodejs)"
python3 -c 'import yaml' 2>/dev/null || skip_or_fail "python3 yaml missing (Debian python3-yaml)"
[[ -d "$modules/kubernetes-models" && -d "$modules/@kubernetes-models/prometheus-operator" ]] ||
  skip_or_fail "npm kubernetes-models missing in $modules"

# Kustomize refuses files reached through symlinks that leave the
# kustomization root: work on a real copy of deploy/.
cp -rL "$runfiles/deploy" "$tmp/deploy"
cd "$tmp"
yamllint -s -c deploy/.yamllint deploy/
echo "ok: yamllint -s deploy/"

"$runfiles/server/kestrel-server" --help >help.txt
to_json() { python3 -c 'import sys, yaml, json; json.dump([d for d in yaml.safe_load_all(sys.stdin) if d], sys.stdout)'; }
validator="$runfiles/deploy/testdata/validate_k8s.js"
export KESTREL_TOOLS_DIR="${KESTREL_TOOLS_DIR:-/opt/kestrel/tools}"
for overlay in cpu gpu tp; do
  kubectl kustomize "deploy/k8s/overlays/$overlay" >"$overlay.yaml"
  to_json <"$overlay.yaml" >"$overlay.json"
  node "$validator" "$overlay.json" help.txt "$overlay"
done
kubectl kustomize deploy/k8s/prometheus-adapter | to_json >adapter.json
node "$validator" adapter.json help.txt prometheus-adapter

# The validator must be able to fail: a grace period under the drain timeout
# and a flag the server does not have.
python3 - <<'PY'
import json
objs = json.load(open("cpu.json"))
for o in objs:
    if o["kind"] == "Deployment":
        o["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 10
        o["spec"]["template"]["spec"]["containers"][0]["args"].append("--no-such-flag=1")
json.dump(objs, open("broken.json", "w"))
PY
if node "$validator" broken.json help.txt cpu >broken.out; then
  echo "FAIL: the validator accepted a broken Deployment"; cat broken.out; exit 1
fi
grep -q "FAIL: \[cpu\] terminationGracePeriodSeconds 10" broken.out &&
  grep -q "FAIL: \[cpu\] --no-such-flag is a kestrel-server flag" broken.out ||
  { echo "FAIL: the validator missed a defect"; cat broken.out; exit 1; }
echo "ok: a broken Deployment is refused"
echo "k8s manifests: all checks passed"
