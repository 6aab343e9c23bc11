#!/usr/bin/env bash
# Generates Python stubs from the API's .proto files with Debian's protoc
# and grpc_python_plugin, starts kestrel-server on the demo model, and runs
# server/testdata/python_client.py against it.
set -euo pipefail
runfiles="${TEST_SRCDIR}/${TEST_WORKSPACE}"
tmp="${TEST_TMPDIR:-$(mktemp -d)}"
python=/usr/bin/python3
if ! "$python" -c "import grpc" 2>/dev/null; then
  if [[ "${CI:-}" == "true" ]]; then
    echo "FAIL: Debian's python3-grpcio is missing (scripts/setup installs it)"; exit 1
  fi
  echo "KESTREL-SKIPPED: python3-grpcio not installed"; exit 0
fi

stubs="$tmp/stubs"
mkdir -p "$stubs"
/usr/bin/protoc -I"$runfiles/proto" --python_out="$stubs" --grpc_python_out="$stubs" \
  --plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin \
  "$runfiles"/proto/kestrel/v1/*.proto "$runfiles/proto/grpc/health/v1/health.proto"
# Make the generated folders importable packages (grpc.health lives beside
# Debian's grpc package, so expose it under its own name via a path hook).
touch "$stubs/kestrel/__init__.py" "$stubs/kestrel/v1/__init__.py"
mv "$stubs/grpc" "$stubs/kestrel_grpc_std"
touch "$stubs/kestrel_grpc_std/__init__.py" "$stubs/kestrel_grpc_std/health/__init__.py" \
  "$stubs/kestrel_grpc_std/health/v1/__init__.py"
sed -i 's/^from grpc.health.v1 import/from kestrel_grpc_std.health.v1 import/' \
  "$stubs"/kestrel_grpc_std/health/v1/*.py

source "$runfiles/server/testdata/start_server.sh"
start_server

sed 's/^from grpc.health.v1 import/from kestrel_grpc_std.health.v1 import/' \
  "$runfiles/server/testdata/python_client.py" >"$tmp/python_client.py"
timeout 120 "$python" "$tmp/python_client.py" "$stubs" "127.0.0.1:$port"
kill -TERM $server
wait $server
