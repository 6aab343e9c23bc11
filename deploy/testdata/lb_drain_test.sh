#!/usr/bin/env bash
# Load balancing and drain, for real on loopback: two kestrel-server replicas
# (demo model) behind nginx (`grpc_pass`, Debian's nginx), kestrel-bench
# running through nginx, SIGTERM to one replica mid-run. Checks that the
# draining replica reports NOT_SERVING (a health Watch opened before the
# signal), finishes its in-flight streams and exits 0, that nginx sends it no
# request after the drain began, and that the run ends with 0 failed requests
# out of at least 200. Everything is bounded by `timeout`; nginx runs as a
# non-daemon child with its own prefix and config in the test's temp dir.
set -euo pipefail
runfiles="${TEST_SRCDIR}/${TEST_WORKSPACE}"
tmp="$(mktemp -d "${TEST_TMPDIR:-/tmp}/lb_drain.XXXXXX")"
tools="${KESTREL_TOOLS_DIR:-/opt/kestrel/tools}/node_modules/.bin"
nginx=/usr/sbin/nginx
skip_or_fail() {
  if [[ "${CI:-}" == "true" ]]; then echo "FAIL: $* (scripts/setup installs it)"; exit 1; fi
  echo "KESTREL-SKIPPED: $*"; exit 0
}
[[ -x "$nginx" ]] || skip_or_fail "$nginx missing (Debian package nginx-light)"
[[ -x "$tools/buf" ]] || skip_or_fail "$tools/buf missing (npm @bufbuild/buf)"

pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
fail() {
  echo "FAIL: $*"
  for f in "$tmp"/*.log; do echo "--- $f"; tail -n 40 "$f"; done
  exit 1
}

# A free loopback port, as the kernel picks it.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Replicas: free ports chosen by the servers themselves (--listen=...:0).
start_replica() {
  local name=$1
  "$runfiles/server/kestrel-server" --model=demo --listen=127.0.0.1:0 \
    --port-file="$tmp/$name.port" --metrics-address= --threads=1 --drain-timeout=30s --drain-goaway \
    >"$tmp/$name.log" 2>&1 &
  pids+=($!)
  eval "${name}_pid=$!"
}
start_replica a
start_replica b
for _ in $(seq 1 600); do
  [[ -s "$tmp/a.port" && -s "$tmp/b.port" ]] && break
  kill -0 "$a_pid" 2>/dev/null && kill -0 "$b_pid" 2>/dev/null || fail "a replica exited"
  sleep 0.1
done
[[ -s "$tmp/a.port" && -s "$tmp/b.port" ]] || fail "replicas did not start in 60 s"
port_a=$(cat "$tmp/a.port")
port_b=$(cat "$tmp/b.port")

# nginx: HTTP/2 in, gRPC out, round robin, one new upstream connection per
# request (no upstream keepalive). A refused connection is retried on the
# other replica (grpc_next_upstream error) and marks the peer down.
lb_port=$(free_port)
mkdir -p "$tmp/nginx/logs"
# As root, nginx would chown its temp dirs to `nobody`, which Bazel's
# sandbox (a user namespace) does not map: keep them the caller's.
user_line=""
[[ $(id -u) -eq 0 ]] && user_line="user $(id -un) $(id -gn);"
cat >"$tmp/nginx/nginx.conf" <<CONF
$user_line
daemon off;
master_process off;
worker_processes 1;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx.log warn;
events { worker_connections 256; }
http {
  client_body_temp_path $tmp/nginx/body;
  proxy_temp_path $tmp/nginx/proxy;
  fastcgi_temp_path $tmp/nginx/fastcgi;
  uwsgi_temp_path $tmp/nginx/uwsgi;
  scgi_temp_path $tmp/nginx/scgi;
  log_format grpc '\$msec \$request_time \$upstream_addr \$request_uri \$status \$sent_trailer_grpc_status';
  access_log $tmp/nginx/access.txt grpc;
  upstream kestrel {
    server 127.0.0.1:$port_a max_fails=1 fail_timeout=60s;
    server 127.0.0.1:$port_b max_fails=1 fail_timeout=60s;
  }
  server {
    listen 127.0.0.1:$lb_port http2;
    location / {
      grpc_pass grpc://kestrel;
      grpc_next_upstream error timeout;
      grpc_connect_timeout 2s;
      grpc_read_timeout 60s;
    }
  }
}
CONF
"$nginx" -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" -e "$tmp/nginx.log" &
nginx_pid=$!
pids+=($nginx_pid)
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$lb_port") 2>/dev/null && break
  kill -0 "$nginx_pid" 2>/dev/null || fail "nginx exited"
  sleep 0.1
done

# A health Watch on replica a, opened before the signal.
buf_args=(--protocol grpc --http2-prior-knowledge --reflect-protocol grpc-v1alpha)
timeout 90 "$tools/buf" curl "${buf_args[@]}" -d '{}' \
  "http://127.0.0.1:$port_a/grpc.health.v1.Health/Watch" >"$tmp/watch.out" 2>"$tmp/watch.log" &
watch_pid=$!
pids+=($watch_pid)

# The load: 240 requests at 40 req/s (about 6 s), 192 tokens each, so that
# streams are in flight on the replica for the whole drain.
timeout 120 "$runfiles/benchmarks/kestrel-bench" --address="127.0.0.1:$lb_port" \
  --num-requests=240 --request-rate=40 --max-concurrency=32 --input-len=fixed:16 \
  --output-len=fixed:192 --ignore-eos --request-timeout=60s --seed=1 \
  --json-out="$tmp/bench.json" --label="two replicas behind nginx, SIGTERM to one" \
  >"$tmp/bench.out" 2>"$tmp/bench.log" &
bench_pid=$!
pids+=($bench_pid)

sleep 2
grep -q '"SERVING"' "$tmp/watch.out" || fail "the health Watch did not see SERVING: $(cat "$tmp/watch.out")"
term_time=$(date +%s.%N)
kill -TERM "$a_pid"
a_status=0
timeout 60 tail --pid="$a_pid" -f /dev/null || fail "replica a did not exit within 60 s"
wait "$a_pid" || a_status=$?
[[ $a_status -eq 0 ]] || fail "replica a exited with $a_status"
bench_status=0
wait "$bench_pid" || bench_status=$?
cat "$tmp/bench.out"
[[ $bench_status -eq 0 ]] || fail "kestrel-bench exited with $bench_status"

python3 - "$tmp" "$term_time" "$port_a" "$port_b" <<'PY' || fail "checks above"
import json, sys
tmp, term, port_a, port_b = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4]
ok = True
def check(cond, what):
    global ok
    print(("ok: " if cond else "FAIL: ") + what)
    ok = ok and cond
bench = json.load(open(f"{tmp}/bench.json"))
s = bench.get("summary", bench)
check(s["requests"] >= 200 and s["completed"] >= 200, f"{s['completed']} of {s['requests']} requests completed (>= 200)")
check(s["failed"] == 0, f"{s['failed']} failed requests {s.get('errors_by_status')}")
watch = open(f"{tmp}/watch.out").read()
check('"NOT_SERVING"' in watch and watch.index('"SERVING"') < watch.index('"NOT_SERVING"'),
      "the draining replica reported SERVING, then NOT_SERVING")
a = f"127.0.0.1:{port_a}"
a_before = a_after = b_after = a_in_flight = 0
for line in open(f"{tmp}/nginx/access.txt"):
    fields = line.split()
    end, duration, uri = float(fields[0]), float(fields[1]), fields[-3]
    if "kestrel.v1.Kestrel/Generate" not in uri: continue
    started = end - duration
    # "$upstream_addr" lists every peer tried: "a, b" is a refused connect to
    # a retried on b. The last one answered.
    served_by = line.split(" /")[0].split(None, 2)[2].split(",")[-1].strip()
    if started < term:
        if served_by == a:
            a_before += 1
            if end > term: a_in_flight += 1
    elif served_by == a: a_after += 1
    else: b_after += 1
print(f"replica a answered {a_before} streams that started before SIGTERM "
      f"and {a_after} that started after it; replica b {b_after} after it")
check(a_in_flight > 0, f"replica a finished {a_in_flight} streams in flight at the signal")
check(a_after == 0, "nginx routed no new stream to the draining replica")
check(b_after > 0, "replica b served the streams after the signal")
sys.exit(0 if ok else 1)
PY
grep -q "received SIGTERM" "$tmp/a.log" || fail "replica a did not log the drain"
echo "--- replica a log (drain)"; grep -E "SIGTERM|drain|stopped" "$tmp/a.log" || true
echo "lb drain: all checks passed"
