#!/usr/bin/env python3
"""Crash test: SIGKILL the S-CSCF in the middle of a registration load, restart it, and
check that every binding that was answered 200 OK is still there and the database is sound.

Starts a real `webims serve` (debug build) on a fresh data directory, sends TNA REGISTERs
over UDP from loopback (a trusted node) on several threads, kills the server with SIGKILL
after a bounded time, then reads the SQLite file and restarts the server on it.
Exits non-zero on any lost binding or corruption. Bounded: at most ~10 s of load."""
import os, random, signal, socket, sqlite3, subprocess, sys, tempfile, threading, time, uuid

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, ".build", "debug", "webims")
IMPI, IMPU, HOME = "crash@ims.example.com", "sip:crash@ims.example.com", "ims.example.com"


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


def start_server(data, port):
    path = os.path.join(data, "serve.log")
    offset = os.path.getsize(path) if os.path.exists(path) else 0
    log = open(path, "a")
    proc = subprocess.Popen([BIN, "serve", "--data-dir", data, "--sip-port", str(port), "--trusted-node", "127.0.0.1", "--lab-plain-sip-trust", "--max-contacts", "1000000",
                             "--log-level", "warning"], stdout=log, stderr=log)
    deadline = time.time() + 20
    while time.time() < deadline:
        if "S-CSCF listening" in open(path).read()[offset:]:
            return proc
        time.sleep(0.05)
    proc.kill()
    sys.exit("server did not start")


def register(sock, port, contact, call_id):
    branch = "z9hG4bK" + uuid.uuid4().hex[:16]
    msg = (f"REGISTER sip:{HOME} SIP/2.0\r\n"
           f"Via: SIP/2.0/UDP 127.0.0.1:{sock.getsockname()[1]};branch={branch};rport\r\n"
           f"Max-Forwards: 70\r\nFrom: <{IMPU}>;tag=crash\r\nTo: <{IMPU}>\r\nCall-ID: {call_id}\r\nCSeq: 1 REGISTER\r\n"
           f"Contact: <{contact}>\r\nExpires: 3600\r\n"
           f'Authorization: Digest username="{IMPI}", realm="{HOME}", uri="sip:{HOME}", nonce="", response="", '
           f"integrity-protected=auth-done\r\nContent-Length: 0\r\n\r\n")
    sock.sendto(msg.encode(), ("127.0.0.1", port))
    data, _ = sock.recvfrom(65535)
    return data.split(b"\r\n", 1)[0]


def main():
    data = tempfile.mkdtemp(prefix="webims-crash-")
    subprocess.run([BIN, "subscriber", "add", "--data-dir", data, "--impi", IMPI, "--impu", IMPU, "--schemes", "tna"],
                   check=True, stdout=subprocess.DEVNULL)
    port = free_port()
    server = start_server(data, port)
    acknowledged, lock, stop = set(), threading.Lock(), threading.Event()

    def worker(n):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0)); sock.settimeout(1.0)
        i = 0
        while not stop.is_set() and i < 5000:
            contact = f"sip:w{n}c{i}@127.0.0.1:{sock.getsockname()[1]}"
            i += 1
            try:
                status = register(sock, port, contact, uuid.uuid4().hex)
            except OSError:
                continue  # timeout: the server is gone; not acknowledged, so not promised
            if status.startswith(b"SIP/2.0 200"):
                with lock:
                    acknowledged.add(contact)
        sock.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads: t.start()
    time.sleep(1.0 + random.random())
    server.send_signal(signal.SIGKILL)
    server.wait()
    stop.set()
    for t in threads: t.join()

    db = sqlite3.connect(os.path.join(data, "webims.sqlite"))
    integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
    stored = {row[0] for row in db.execute("SELECT contact FROM bindings WHERE aor = ?", (IMPU,))}
    db.close()
    lost = acknowledged - stored
    print(f"crash: {len(acknowledged)} registrations answered 200 before SIGKILL, {len(stored)} bindings on disk, "
          f"{len(lost)} lost, integrity_check={integrity}")
    # The server must start again on the same data and answer.
    server = start_server(data, port)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); sock.bind(("127.0.0.1", 0)); sock.settimeout(3.0)
    after = register(sock, port, "sip:after@127.0.0.1", uuid.uuid4().hex)
    server.terminate(); server.wait(timeout=10)
    ok = not lost and integrity == "ok" and len(acknowledged) > 0 and after.startswith(b"SIP/2.0 200")
    if ok:
        subprocess.run(["rm", "-rf", data])
    else:
        print(f"crash: FAILED (data kept in {data}); restart answer: {after!r}", file=sys.stderr)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
