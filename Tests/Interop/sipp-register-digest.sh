#!/usr/bin/env bash
# SIPp registers with SIP Digest against a real `webims serve` over UDP and over TCP.
# A standard SIP tool agreeing with our registrar is the point. Needs `sipp` (sip-tester)
# and a built webims (debug). Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=.build/debug/webims
work=$(mktemp -d)
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
$bin subscriber add --data-dir "$work" --impi sippuser@ims.example.com --impu sip:sippuser@ims.example.com \
  --password s1pp-secret >/dev/null
$bin serve --data-dir "$work" --sip-port "$port" --log-level warning >"$work/serve.log" 2>&1 &
server=$!
for _ in $(seq 1 100); do grep -q "S-CSCF listening" "$work/serve.log" && break; sleep 0.1; done

printf 'SEQUENTIAL\nsippuser;ims.example.com;[authentication username=sippuser@ims.example.com password=s1pp-secret]\n' >"$work/users.csv"
status=0
for transport in u1 t1; do
  if sipp 127.0.0.1:"$port" -sf Tests/Interop/sipp-register-digest.xml -inf "$work/users.csv" \
      -t "$transport" -i 127.0.0.1 -m 5 -l 1 -timeout 20 -timeout_error \
      -trace_err -error_file "$work/errors-$transport.log" >/dev/null 2>&1 </dev/null; then
    echo "sipp: Digest REGISTER over $([ $transport = u1 ] && echo UDP || echo TCP): 5 of 5 passed"
  else
    echo "sipp: Digest REGISTER over $transport FAILED" >&2
    cat "$work/errors-$transport.log" >&2 2>/dev/null || true
    status=1
  fi
done
exit $status
