#!/usr/bin/env bash
# The alerting rules with promtool (Debian's prometheus package): the rule
# groups of the PrometheusRule are written out as a plain rules file, then
# `promtool check rules` and `promtool test rules` (prometheus-rule.test.yaml:
# a firing and a quiet case per alert). Last, a copy with one threshold
# changed must fail its unit tests, so the tests are known to bite.
set -euo pipefail
runfiles="${TEST_SRCDIR}/${TEST_WORKSPACE}"
tmp="$(mktemp -d "${TEST_TMPDIR:-/tmp}/rules.XXXXXX")"
if [[ ! -x /usr/bin/promtool ]]; then
  if [[ "${CI:-}" == "true" ]]; then echo "FAIL: promtool missing (Debian prometheus)"; exit 1; fi
  echo "KESTREL-SKIPPED: promtool missing (Debian prometheus)"; exit 0
fi
obs="$runfiles/deploy/observability"
cp "$obs/prometheus-rule.test.yaml" "$tmp/"
cd "$tmp"
python3 - "$obs/prometheus-rule.yaml" <<'PY'
import sys, yaml
rule = yaml.safe_load(open(sys.argv[1]))
assert rule["kind"] == "PrometheusRule", rule["kind"]
yaml.safe_dump({"groups": rule["spec"]["groups"]}, open("kestrel-rules.yaml", "w"), sort_keys=False)
PY
promtool check rules kestrel-rules.yaml
promtool test rules prometheus-rule.test.yaml

# Every alert has a unit test that expects it to fire.
for alert in $(python3 -c 'import yaml; print(" ".join(r["alert"] for g in yaml.safe_load(open("kestrel-rules.yaml"))["groups"] for r in g["rules"] if "alert" in r))'); do
  python3 - "$alert" <<'PY' || { echo "FAIL: $alert has no firing and quiet test"; exit 1; }
import sys, yaml
alert = sys.argv[1]
cases = [c for t in yaml.safe_load(open("prometheus-rule.test.yaml"))["tests"]
         for c in t.get("alert_rule_test", []) if c["alertname"] == alert]
sys.exit(0 if any(c["exp_alerts"] for c in cases) and any(not c["exp_alerts"] for c in cases) else 1)
PY
  echo "ok: $alert has a firing and a quiet case"
done

sed -i 's/kestrel_kv_usage_ratio) > 0.95/kestrel_kv_usage_ratio) > 0.98/' kestrel-rules.yaml
if promtool test rules prometheus-rule.test.yaml >mutant.out 2>&1; then
  echo "FAIL: the unit tests pass with the KV threshold at 0.98"; exit 1
fi
echo "ok: the unit tests fail when a threshold changes"
echo "rules: all checks passed"
