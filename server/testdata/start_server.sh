# Sourced by the shell tests: starts kestrel-server (demo model) from the
# runfiles on a free loopback port, sets $server (its pid) and $port, and
# kills it when the test exits. Needs $runfiles and $tmp.
start_server() {
  local port_file="$tmp/port"
  "$runfiles/server/kestrel-server" --listen=127.0.0.1:0 --port-file="$port_file" \
    --metrics-address= "$@" >"$tmp/server.log" 2>&1 &
  server=$!
  trap 'kill -9 $server 2>/dev/null || true' EXIT
  for _ in $(seq 1 600); do
    [[ -s "$port_file" ]] && break
    kill -0 "$server" 2>/dev/null || { echo "server exited:"; cat "$tmp/server.log"; exit 1; }
    sleep 0.1
  done
  [[ -s "$port_file" ]] || { echo "server did not start"; cat "$tmp/server.log"; exit 1; }
  port=$(cat "$port_file")
}
