"""Starts the real `webims serve` on free ports in a throw-away data directory."""
import json
import os
import random
import re
import signal
import socket
import shutil
import subprocess
import tempfile
import threading
import time
import unittest

# requests lets these override a session's own CA file; tests trust the server's local CA.
for _name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
    os.environ.pop(_name, None)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BINARY = os.environ.get("WEBIMS_BIN", os.path.join(ROOT, ".build", "debug", "webims"))


def free_port():
    """A port free for TCP and UDP now, below the kernel's ephemeral range: a port the
    kernel picked for us (bind to 0) may be handed out again to a server bound to port 0
    before the test's server binds it."""
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low, _ = (int(x) for x in f.read().split())
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(10000, max(10001, low))
        try:
            with socket.socket() as t, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                t.bind(("127.0.0.1", port))
                u.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port below %d" % low)


def webims(data_dir, *args, input=None, check=True):
    """Runs a `webims` command against a data directory; returns its stdout."""
    result = subprocess.run(
        [BINARY, *args, "--data-dir", data_dir], input=input, capture_output=True, text=True, timeout=120
    )
    if check and result.returncode != 0:
        raise RuntimeError("webims %s failed: %s %s" % (" ".join(args), result.stdout, result.stderr))
    return result.stdout


def thread_stacks(pid):
    """Every thread's stack of a hung process (gdb, when installed), for the failure text."""
    if not shutil.which("gdb"):
        return ""
    try:
        out = subprocess.run(["gdb", "-p", str(pid), "-batch", "-ex", "thread apply all bt 30"],
                             capture_output=True, text=True, timeout=60).stdout
    except subprocess.TimeoutExpired:
        return "\n(gdb timed out)"
    return "\nthreads of the hung server:\n" + "\n".join(l for l in out.splitlines() if l.startswith(("#", "Thread")))


class Server:
    def __init__(self, *extra, data_dir=None, wss_port=0, wwsf_port=0, waf_port=0, sip_port=0, metrics_port=0,
                 database=None):
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="webims-test-")
        self.database = database
        if database:
            extra = (*extra, "--database", database)
        ports = [("--wwsf-port", wwsf_port), ("--waf-port", waf_port), ("--wss-port", wss_port),
                 ("--sip-port", sip_port), ("--metrics-port", metrics_port)]
        self.args = [BINARY, "serve", "--data-dir", self.data_dir, "--wic-dir", os.path.join(ROOT, "wic")]
        for name, value in ports:
            if value is not None:  # None: leave it to the environment or the config file
                self.args += [name, str(value)]
        self.args += list(extra)
        self.output = []
        self.start()

    def start(self):
        self.ready = threading.Event()
        self.process = subprocess.Popen(
            self.args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT
        )
        self.reader = threading.Thread(target=self._pump, args=(self.process,), daemon=True)
        self.reader.start()
        # Ready, or exited (a port taken, a bad option): then fail at once, with all it said.
        deadline = time.time() + 60
        while not self.ready.wait(0.2):
            if self.process.poll() is not None:
                self.reader.join(5)
                raise RuntimeError("webims serve exited (%d) before ready:\n%s" % (self.process.returncode, self.log))
            if time.time() > deadline:
                stacks = thread_stacks(self.process.pid)
                self.stop()
                raise RuntimeError("webims serve did not get ready:\n" + self.log + stacks)
        with open(os.path.join(self.data_dir, "endpoints.json")) as f:
            self.endpoints = json.load(f)
        self.wwsf = (self.endpoints.get("wwsf") or "").rstrip("/")
        self.waf = self.endpoints.get("waf_issuer")
        self.epcscf = self.endpoints.get("epcscf")
        self.scscf = self.endpoints.get("scscf")
        self.ca = os.path.join(self.data_dir, "tls", "ca.pem")
        for line in self.log.splitlines():
            m = re.search(r"demo web account: user (\S+), password (\S+)", line)
            if m:
                self.demo_user, self.demo_password = m.group(1), m.group(2)
            m = re.search(r"demo subscriber (\S+) \((\S+)\), SIP Digest password: (\S+)", line)
            if m:
                self.demo_impi, self.demo_impu, self.demo_sip_password = m.groups()

    def _pump(self, process):
        for line in process.stdout:
            self.output.append(line)
            if line.startswith("webims: ready"):
                self.ready.set()

    @property
    def log(self):
        return "".join(self.output)

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        time.sleep(0.1)  # let the reader thread take the last lines
        if self.process.stdout:
            self.process.stdout.close()

    def restart(self):
        self.stop()
        self.start()

    def cli(self, *args, **kw):
        if self.database and args and args[0] in ("subscriber", "account", "token", "waf", "registrations"):
            args = (*args, "--database", self.database)
        return webims(self.data_dir, *args, **kw)


def wait_for(predicate, timeout=15, interval=0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


def final_status(data):
    """The status of the first final response in `data` (bytes), if one has arrived."""
    for head in data.split(b"\r\n\r\n"):
        if head.startswith(b"SIP/2.0 "):
            status = int(head.split(b" ", 2)[1])
            if status >= 200:
                return status
    return None


def udp_request(host_port, text, timeout=10):
    """Sends one SIP request over UDP from loopback (LOCALPORT in `text` becomes the local
    port) and returns the final response's status, or None on timeout."""
    host, port = host_port.rsplit(":", 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(timeout)
        s.sendto(text.replace("LOCALPORT", str(s.getsockname()[1])).encode(), (host, int(port)))
        deadline = time.time() + timeout
        try:
            while time.time() < deadline:
                status = final_status(s.recv(65535))
                if status is not None:
                    return status
        except socket.timeout:
            pass
    return None


class ServerTestCase(unittest.TestCase):
    """Tests that share one `webims serve`, started with `server_args`; `provision` runs
    once on it (subscribers, accounts) before the first test."""

    server_args = ()

    @classmethod
    def setUpClass(cls):
        cls.server = Server(*cls.server_args)
        try:
            cls.provision(cls.server)
        except BaseException:
            cls.server.stop()
            raise

    @classmethod
    def provision(cls, server):
        pass

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
