#!/usr/bin/env python3
"""S-CSCF registration load over UDP from loopback: TNA (one round trip) or SIP Digest
(REGISTER → 401 → REGISTER → 200, a challenge every time). Users `load%d@ims.example.com`
re-register their one contact with rising CSeq, `--concurrency` at a time, for `--seconds`.
Counts every final response by status (only 200 counts as a registration), and reports
registrations per wall second and per server CPU-second (utime+stime of --pid from /proc),
with latency percentiles of whole registrations."""
import argparse, asyncio, hashlib, os, random, re, time, uuid

HOME = "ims.example.com"


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Client(asyncio.DatagramProtocol):
    def __init__(self):
        self.waiting = {}

    def datagram_received(self, data, addr):
        m = re.search(rb"branch=([^;\r\n,]+)", data)
        if m and m.group(1) in self.waiting:
            fut = self.waiting.pop(m.group(1))
            if not fut.done():
                fut.set_result(data)


async def transaction(proto, transport, msg, branch, timeout=2.0):
    fut = asyncio.get_running_loop().create_future()
    proto.waiting[branch] = fut
    transport.sendto(msg)
    try:
        return await asyncio.wait_for(fut, timeout)
    except asyncio.TimeoutError:
        proto.waiting.pop(branch, None)
        return None


def register(n, local_port, call_id, cseq, auth):
    branch = "z9hG4bK" + uuid.uuid4().hex[:20]
    msg = (f"REGISTER sip:{HOME} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{local_port};branch={branch};rport\r\n"
           f"Max-Forwards: 70\r\nFrom: <sip:load{n}@{HOME}>;tag=t{n}\r\nTo: <sip:load{n}@{HOME}>\r\n"
           f"Call-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:load{n}@127.0.0.1:{local_port};transport=udp>\r\n"
           f"Expires: 3600\r\nAuthorization: {auth}\r\nContent-Length: 0\r\n\r\n")
    return msg.encode(), branch.encode()


def md5(s):
    return hashlib.md5(s.encode()).hexdigest()


async def user(n, args, proto, transport, local_port, stats, deadline):
    impi = f"load{n}@{HOME}"
    call_id, cseq = uuid.uuid4().hex, 1
    tna = f'Digest username="{impi}", realm="{HOME}", uri="sip:{HOME}", nonce="", response="", integrity-protected=auth-done'
    empty = f'Digest username="{impi}", realm="{HOME}", uri="sip:{HOME}", nonce="", response=""'
    while time.monotonic() < deadline:
        start = time.perf_counter()
        msg, branch = register(n, local_port, call_id, cseq, tna if args.scheme == "tna" else empty)
        cseq += 1
        reply = await transaction(proto, transport, msg, branch)
        if reply is not None and args.scheme == "digest" and reply.startswith(b"SIP/2.0 401"):
            nonce = re.search(rb'nonce="([^"]+)"', reply).group(1).decode()
            ha1 = md5(f"{impi}:{HOME}:{args.password}")
            ha2 = md5(f"REGISTER:sip:{HOME}")
            cnonce = uuid.uuid4().hex[:8]
            resp = md5(f"{ha1}:{nonce}:00000001:{cnonce}:auth:{ha2}")
            auth = (f'Digest username="{impi}", realm="{HOME}", uri="sip:{HOME}", nonce="{nonce}", algorithm=MD5, '
                    f'qop=auth, nc=00000001, cnonce="{cnonce}", response="{resp}"')
            msg, branch = register(n, local_port, call_id, cseq, auth)
            cseq += 1
            reply = await transaction(proto, transport, msg, branch)
        status = "timeout" if reply is None else reply.split(b" ", 2)[1].decode()
        stats["status"][status] = stats["status"].get(status, 0) + 1
        if status == "200":
            stats["latency"].append(time.perf_counter() - start)
        if args.rate:
            await asyncio.sleep(max(0.0, args.concurrency / args.rate - (time.perf_counter() - start)))


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--scheme", choices=["tna", "digest"], default="tna")
    p.add_argument("--users", type=int, default=500)
    p.add_argument("--concurrency", type=int, default=200)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--rate", type=float, default=0, help="target registrations/s (0: flat out)")
    p.add_argument("--password", default="load-secret")
    args = p.parse_args()
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(Client, local_addr=("127.0.0.1", 0), remote_addr=("127.0.0.1", args.port))
    local_port = transport.get_extra_info("sockname")[1]
    stats = {"status": {}, "latency": []}
    cpu0, t0 = cpu_seconds(args.pid), time.perf_counter()
    deadline = time.monotonic() + args.seconds
    users = random.sample(range(1, args.users + 1), min(args.concurrency, args.users))
    await asyncio.gather(*(user(n, args, proto, transport, local_port, stats, deadline) for n in users))
    cpu1, t1 = cpu_seconds(args.pid), time.perf_counter()
    transport.close()
    ok = stats["status"].get("200", 0)
    lat = sorted(stats["latency"]) or [0.0]
    pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000
    wall, cpu = t1 - t0, cpu1 - cpu0
    print(f"scheme={args.scheme} concurrency={args.concurrency} seconds={wall:.1f} responses={stats['status']}")
    print(f"registrations: {ok}  per wall-second: {ok / wall:.0f}  server CPU-seconds: {cpu:.2f}  "
          f"per server CPU-second: {ok / cpu if cpu else 0:.0f}")
    print(f"latency ms: p50 {pct(0.5):.2f}  p90 {pct(0.9):.2f}  p99 {pct(0.99):.2f}  max {lat[-1] * 1000:.2f}  "
          f"server RSS {rss_kib(args.pid) / 1024:.1f} MiB")


asyncio.run(main())
