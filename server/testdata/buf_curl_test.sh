#!/usr/bin/env bash
# A real third-party client that knows nothing of our protos: `buf curl`
# (npm @bufbuild/buf, installed by scripts/setup) discovers the API through
# server reflection and calls it: list methods, health, stream, unary.
set -euo pipefail
runfiles="${TEST_SRCDIR}/${TEST_WORKSPACE}"
tmp="${TEST_TMPDIR:-$(mktemp -d)}"
buf="${KESTREL_TOOLS_DIR:-/opt/kestrel/tools}/node_modules/.bin/buf"
if [[ ! -x "$buf" ]]; then
  if [[ "${CI:-}" == "true" ]]; then echo "FAIL: $buf missing (scripts/setup installs it)"; exit 1; fi
  echo "KESTREL-SKIPPED: buf not installed at $buf"; exit 0
fi

source "$runfiles/server/testdata/start_server.sh"
start_server
url="http://127.0.0.1:$port"
# Debian's gRPC 1.51 serves reflection v1alpha only.
curl_args=(--protocol grpc --http2-prior-knowledge --reflect-protocol grpc-v1alpha)
fail() { echo "FAIL: $*"; cat "$tmp/server.log"; exit 1; }

methods=$(timeout 30 "$buf" curl "${curl_args[@]}" --list-methods "$url")
for m in Generate Complete Tokenize Detokenize GetModelInfo GetServerInfo Abort; do
  grep -qx "kestrel.v1.Kestrel/$m" <<<"$methods" || fail "reflection does not list $m: $methods"
done
echo "ok: reflection lists every method"

health=$(timeout 30 "$buf" curl "${curl_args[@]}" -d '{}' "$url/grpc.health.v1.Health/Check")
grep -q '"status": "SERVING"' <<<"$health" || fail "health: $health"
echo "ok: health SERVING"

stream=$(timeout 30 "$buf" curl "${curl_args[@]}" \
  -d '{"text":"hello","sampling":{"temperature":0},"stopping":{"maxTokens":5,"ignoreEos":true}}' \
  "$url/kestrel.v1.Kestrel/Generate")
chunks=$(grep -c '"chunk"' <<<"$stream" || true)
[[ "$chunks" == 5 ]] || fail "expected 5 chunks, got $chunks: $stream"
grep -q '"reason": "FINISH_REASON_LENGTH"' <<<"$stream" || fail "no LENGTH finish: $stream"
echo "ok: Generate streamed 5 chunks and a LENGTH finish"

unary=$(timeout 30 "$buf" curl "${curl_args[@]}" \
  -d '{"text":"hello","sampling":{"temperature":0},"stopping":{"maxTokens":5,"ignoreEos":true}}' \
  "$url/kestrel.v1.Kestrel/Complete")
grep -q '"completionTokens": 5' <<<"$unary" || fail "Complete: $unary"
echo "ok: Complete"

if timeout 30 "$buf" curl "${curl_args[@]}" -d '{"text":"x","sampling":{"topP":3}}' \
  "$url/kestrel.v1.Kestrel/Complete" >"$tmp/bad.out" 2>&1; then
  fail "top_p = 3 was accepted"
fi
grep -q "invalid_argument" "$tmp/bad.out" || fail "expected invalid_argument: $(cat "$tmp/bad.out")"
echo "ok: invalid request refused"

kill -TERM $server
wait $server
echo "buf curl: all checks passed"
