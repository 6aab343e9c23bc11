#!/usr/bin/env bash
# Every metric name that the Grafana dashboard, the alerting rules, the HPA
# and the prometheus-adapter rules use must be one that a live
# `kestrel-server --model=demo` exports on /metrics (scraped here, after one
# request). The dashboard's queries must also parse as PromQL (promtool).
set -euo pipefail
runfiles="${TEST_SRCDIR}/${TEST_WORKSPACE}"
tmp="$(mktemp -d "${TEST_TMPDIR:-/tmp}/dashboard.XXXXXX")"
if [[ ! -x /usr/bin/promtool ]] || ! python3 -c 'import yaml' 2>/dev/null; then
  if [[ "${CI:-}" == "true" ]]; then echo "FAIL: promtool or python3-yaml missing (scripts/setup)"; exit 1; fi
  echo "KESTREL-SKIPPED: promtool or python3-yaml missing"; exit 0
fi

"$runfiles/server/kestrel-server" --model=demo --listen=127.0.0.1:0 --port-file="$tmp/port" \
  --metrics-address=127.0.0.1:0 --metrics-port-file="$tmp/metrics_port" --threads=1 \
  >"$tmp/server.log" 2>&1 &
server=$!
trap 'kill -9 $server 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
  [[ -s "$tmp/port" && -s "$tmp/metrics_port" ]] && break
  kill -0 "$server" 2>/dev/null || { echo "FAIL: server exited"; cat "$tmp/server.log"; exit 1; }
  sleep 0.1
done
[[ -s "$tmp/port" ]] || { echo "FAIL: server did not start"; cat "$tmp/server.log"; exit 1; }
# One request past the warm-up, so every series has samples.
timeout 60 "$runfiles/client/kestrel" generate --address="127.0.0.1:$(cat "$tmp/port")" \
  --max-tokens=8 "hello" >/dev/null
timeout 30 python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())' \
  "http://127.0.0.1:$(cat "$tmp/metrics_port")/metrics" >"$tmp/metrics.txt"

obs="$runfiles/deploy/observability"
k8s="$runfiles/deploy/k8s"
python3 - "$tmp" "$obs/kestrel-dashboard.json" "$obs/prometheus-rule.yaml" \
  "$k8s/base/hpa.yaml" "$k8s/prometheus-adapter/config.yaml" <<'PY'
import json, re, subprocess, sys, yaml
tmp, dashboard_file, rule_file, hpa_file, adapter_file = sys.argv[1:]
exported = set()
for line in open(f"{tmp}/metrics.txt"):
    if line.strip() and not line.startswith("#"):
        exported.add(re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0))
print(f"the live server exports {len(exported)} series names")
# Series Prometheus makes itself, not the server.
PROMETHEUS_OWN = {"up"}

def used_names(expr):
    return set(re.findall(r"\bkestrel_[a-z0-9_]+\b", expr)) | \
        {n for n in PROMETHEUS_OWN if re.search(rf"\b{n}\{{", expr)}

def check_names(where, exprs, known):
    missing = []
    for expr in exprs:
        names = used_names(expr)
        if not names:
            missing.append(f"{where}: no metric name in {expr!r}")
        for n in sorted(names - known - PROMETHEUS_OWN):
            missing.append(f"{where}: {n} is not exported (in {expr!r})")
    return missing

dashboard = json.load(open(dashboard_file))
dash_exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
dash_exprs += [v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
rules = yaml.safe_load(open(rule_file))
rule_exprs = [r["expr"] for g in rules["spec"]["groups"] for r in g["rules"]]
hpa = yaml.safe_load(open(hpa_file))
hpa_exprs = [m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"]]
adapter = yaml.safe_load(open(adapter_file))
adapter_exprs = [r["seriesQuery"] for r in adapter["rules"]] + [r["name"]["as"] for r in adapter["rules"]]

problems = (check_names("dashboard", dash_exprs, exported) + check_names("alerts", rule_exprs, exported)
            + check_names("hpa", hpa_exprs, exported) + check_names("adapter", adapter_exprs, exported))
used = set().union(*(used_names(e) for e in dash_exprs + rule_exprs + hpa_exprs + adapter_exprs))
print(f"{len(dash_exprs)} dashboard, {len(rule_exprs)} alert, {len(hpa_exprs)} HPA and "
      f"{len(adapter_exprs)} adapter queries use {len(used)} names: {' '.join(sorted(used))}")

# The check bites: a name the server does not export is reported.
if not check_names("self-test", ["rate(kestrel_requests_waiting_total[5m])"], exported):
    problems.append("self-test: a misspelled name was not reported")

# The dashboard's queries parse as PromQL once Grafana's variables are
# filled in: promtool checks them as recording rules.
record = [{"record": f"dashboard:query{i}",
           "expr": e.replace("$__rate_interval", "5m").replace("$namespace", ".*").replace("$model", ".*")}
          for i, e in enumerate(dash_exprs) if not e.startswith("label_values(")]
yaml.safe_dump({"groups": [{"name": "dashboard", "rules": record}]}, open(f"{tmp}/dashboard-rules.yaml", "w"))
out = subprocess.run(["promtool", "check", "rules", f"{tmp}/dashboard-rules.yaml"], capture_output=True, text=True)
if out.returncode != 0:
    problems.append("dashboard queries do not parse:\n" + out.stdout + out.stderr)
else:
    print(f"ok: {len(record)} dashboard queries parse (promtool check rules)")

for p in problems: print("FAIL: " + p)
sys.exit(1 if problems else 0)
PY
echo "dashboard metrics: all checks passed"
