#!/usr/bin/env bash
# Calls between SIP phones through the S-CSCF of a real `webims serve` (issue 28), each
# phone a SIPp instance registered with SIP Digest over UDP: every caller's INVITE is
# challenged with 407 first. Cases: answered and hung up by either side, cancelled while
# ringing (487), busy (486), callee not registered (480), unknown (404), a tel: target, and
# a callee with two contacts (forked: one answers, the other is cancelled).
# Needs `sipp` (sip-tester) and a built webims (debug). Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=.build/debug/webims
dir=Tests/Interop/calls
work=$(mktemp -d)
server=
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT

read -r sip alice bob carol ivan dave grace heidi1 heidi2 < <(python3 - <<'PY'
import socket
socks = []
for _ in range(9):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); socks.append(s)
t = socket.socket(); t.bind(("127.0.0.1", socks[0].getsockname()[1]))  # the SIP port serves TCP too
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
)
for user in alice bob carol ivan dave erin heidi; do
  $bin subscriber add --data-dir "$work" --impi "$user@ims.example.com" --impu "sip:$user@ims.example.com" \
    --password "$user-pw" >/dev/null
done
$bin subscriber add --data-dir "$work" --impi grace@ims.example.com --impu sip:grace@ims.example.com \
  --impu tel:+15550001 --password grace-pw >/dev/null
$bin serve --data-dir "$work" --sip-port "$sip" --log-level warning >"$work/serve.log" 2>&1 &
server=$!
for _ in $(seq 1 100); do grep -q "S-CSCF listening" "$work/serve.log" && break; sleep 0.1; done

status=0
fail() {
  echo "sipp calls: $1 FAILED" >&2
  for log in "$work"/*errors*.log; do [ -f "$log" ] && { echo "--- $log" >&2; head -40 "$log" >&2; }; done
  status=1
}
common=(-i 127.0.0.1 -m 1 -timeout 20 -timeout_error -trace_err ${SIPP_TRACE:+-trace_msg})

# A phone's contact (the port its UAS listens on), registered with Digest from another port.
register() {
  timeout 30 sipp 127.0.0.1:"$sip" -sf $dir/register.xml -t u1 -s "$1" -au "$1@ims.example.com" -ap "$1-pw" \
    -key contact_port "$2" "${common[@]}" -error_file "$work/register-$1-errors.log" >/dev/null 2>&1 </dev/null \
    || fail "REGISTER of $1"
}
# A phone waiting for one call in the background: scenario, port, extra options. Its pid
# is added to `phones`.
phones=()
answer() {
  local scenario=$1 port=$2
  shift 2
  timeout 40 sipp -sf "$dir/$scenario" -p "$port" "${common[@]}" -error_file "$work/uas-$port-errors.log" "$@" \
    >/dev/null 2>&1 </dev/null &
  phones+=($!)
}
# Alice calls `target` with `scenario`.
call() {
  timeout 40 sipp 127.0.0.1:"$sip" -sf "$1" -t u1 -p "$alice" -s alice -au alice@ims.example.com -ap alice-pw \
    -key ruri "$2" "${common[@]}" -error_file "$work/uac-errors.log" >/dev/null 2>&1 </dev/null
}
# One case: the callee phones must end well too.
check() {
  local name=$1 ok=$2
  for pid in "${phones[@]}"; do wait "$pid" || ok=1; done
  phones=()
  if [ "$ok" = 0 ]; then echo "sipp calls: $name passed"; else fail "$name"; fi
  rm -f "$work"/*errors*.log
}

register alice "$alice"
register bob "$bob"
register carol "$carol"
register ivan "$ivan"
register dave "$dave"
register grace "$grace"
register heidi "$heidi1"
register heidi "$heidi2"

answer uas.xml "$bob" -d 100; sleep 0.3
call $dir/uac.xml sip:bob@ims.example.com && r=0 || r=1
check "phone to phone (407, then 180/200/ACK, caller's BYE)" $r

answer uas-hangs-up.xml "$carol" -d 100; sleep 0.3
call $dir/uac-callee-hangs-up.xml sip:carol@ims.example.com && r=0 || r=1
check "phone to phone, callee's BYE" $r

answer uas-rings.xml "$ivan"; sleep 0.3
call $dir/uac-cancel.xml sip:ivan@ims.example.com && r=0 || r=1
check "CANCEL while ringing (487)" $r

for code in 486 480 404; do sed "s/CODE/$code/g" $dir/uac-refused.xml.in >"$work/uac-$code.xml"; done
answer uas-busy.xml "$dave"; sleep 0.3
call "$work/uac-486.xml" sip:dave@ims.example.com && r=0 || r=1
check "busy (486)" $r
call "$work/uac-480.xml" sip:erin@ims.example.com && r=0 || r=1
check "callee not registered (480)" $r
call "$work/uac-404.xml" sip:nobody@ims.example.com && r=0 || r=1
check "unknown callee (404)" $r

answer uas.xml "$grace" -d 100; sleep 0.3
call $dir/uac.xml tel:+15550001 && r=0 || r=1
check "tel: target (the callee's implicit set)" $r

answer uas.xml "$heidi1" -d 400
answer uas-rings.xml "$heidi2"; sleep 0.3
call $dir/uac.xml sip:heidi@ims.example.com && r=0 || r=1
check "forked to two contacts (one answers, the other is cancelled)" $r
exit $status
