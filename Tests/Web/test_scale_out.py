"""Issue 32: scale-out behind a load balancer. HAProxy (Debian's, TCP mode, health checks)
in front of two all-role `webims serve` nodes on one PostgreSQL, all on loopback. Both nodes
are one WWSF, one WAF and one eP-CSCF to a browser (--public-wwsf, --public-waf,
--public-epcscf, one certificate); the nonce key is in the database. docs/scale-out.md."""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import sipws
from harness import Server, free_port, wait_for
from test_browser import bindings
from test_two_nodes import BASE, fresh_database

DOMAIN = "ims.example.com"


class Balancer:
    """HAProxy in TCP mode: TLS goes through to the nodes, which share one certificate."""

    def __init__(self, frontends):
        """`frontends`: {name: (port, [backend ports])}."""
        lines = [
            "global", "    maxconn 4096",
            "defaults", "    mode tcp", "    timeout connect 1s", "    timeout client 1h", "    timeout server 1h",
            # A connection refused by a dead node goes to the other (the health check may
            # not have seen it go yet).
            "    retries 2", "    option redispatch",
        ]
        for name, (port, backends) in frontends.items():
            lines += ["listen %s" % name, "    bind 127.0.0.1:%d" % port, "    balance roundrobin"]
            lines += ["    server n%d 127.0.0.1:%d check inter 500 fall 1 rise 2" % (i, p) for i, p in enumerate(backends)]
        self.config = tempfile.NamedTemporaryFile("w", suffix=".cfg", delete=False)
        self.config.write("\n".join(lines) + "\n")
        self.config.close()
        self.process = subprocess.Popen(["haproxy", "-db", "-f", self.config.name], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, text=True)
        ports = [port for port, _ in frontends.values()]
        up = wait_for(lambda: all(self.listening(p) for p in ports), timeout=10, interval=0.1)
        if not up:
            self.stop()
            raise RuntimeError("haproxy did not start: %s" % self.process.stderr.read())

    @staticmethod
    def listening(port):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            return False

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        os.unlink(self.config.name)


@unittest.skipUnless(BASE and shutil.which("haproxy"), "needs WEBIMS_TEST_POSTGRES_URL and haproxy")
class ScaleOutTests(unittest.TestCase):
    def setUp(self):
        db = fresh_database()
        self.lb = {name: free_port() for name in ("wwsf", "waf", "wss")}
        self.public = {"wwsf": "https://localhost:%d" % self.lb["wwsf"], "waf": "https://localhost:%d" % self.lb["waf"],
                       "wss": "wss://localhost:%d" % self.lb["wss"]}
        common = ["--public-wwsf", self.public["wwsf"], "--public-waf", self.public["waf"],
                  "--public-epcscf", self.public["wss"], "--media-gateway", "none",
                  # Every browser comes from the balancer's address (no PROXY protocol).
                  "--login-attempts-per-source", "1000"]
        self.ports = [dict(wwsf_port=free_port(), waf_port=free_port(), wss_port=free_port(), sip_port=free_port())
                      for _ in range(2)]
        a = Server(*common, database=db, **self.ports[0])
        self.addCleanup(a.stop)
        # One certificate for the one public name: the second node takes the first's.
        tls = os.path.join(a.data_dir, "tls")
        b = Server(*common, "--tls-certificate", os.path.join(tls, "server.pem"), "--tls-key",
                   os.path.join(tls, "server-key.pem"), database=db, **self.ports[1])
        self.addCleanup(b.stop)
        self.nodes = [a, b]
        self.balancer = Balancer({name: (self.lb[name], [p[name + "_port"] for p in self.ports])
                                  for name in ("wwsf", "waf", "wss")})
        self.addCleanup(self.balancer.stop)
        for user in ("dora", "erin", "fred"):
            a.cli("subscriber", "add", "--impi", "%s@%s" % (user, DOMAIN), "--impu", "sip:%s@%s" % (user, DOMAIN),
                  "--password", user + "-sip")
            a.cli("account", "add", "--username", user, "--password", user + "-web", "--impi", "%s@%s" % (user, DOMAIN))

    def holder(self, impu):
        """The node whose eP-CSCF holds the identity's flow (its Path names that node's SIP port)."""
        live = next(n for n in self.nodes if n.process.poll() is None)
        found = bindings(live, impu)
        for node in self.nodes:
            sip_port = node.endpoints["epcscf_sip"].rsplit(":", 1)[1]
            if any(re.search(r"@[^;>]*:%s[;>]" % sip_port, " ".join(b["path"])) for b in found):
                return node
        return None

    def wic(self, user, url=None, calling=False):
        token = self.nodes[0].cli("token", "issue", "--account", user).strip()
        kind = sipws.CallingWIC if calling else sipws.WIC
        w = kind(url or self.public["wss"], self.public["wwsf"], os.path.join(self.nodes[0].data_dir, "tls", "ca.pem"),
                 "sip:%s@%s" % (user, DOMAIN))
        self.addCleanup(w.close)
        r = w.register("Bearer " + token)
        self.assertEqual(r.status, 200, r.text)
        return w

    def test_both_nodes_are_one_public_face(self):
        # Every node announces the balancer's names; a token one node's WAF issues is
        # accepted at the other's eP-CSCF, for a page of the public origin.
        for node in self.nodes:
            self.assertEqual(node.endpoints["wwsf"], self.public["wwsf"] + "/")
            self.assertEqual(node.endpoints["waf_issuer"], self.public["waf"])
            self.assertEqual(node.endpoints["epcscf"], self.public["wss"])
        for issuing, serving in ((0, 1), (1, 0)):
            token = self.nodes[issuing].cli("token", "issue", "--account", "erin").strip()
            w = sipws.WIC("wss://localhost:%d" % self.ports[serving]["wss_port"], self.public["wwsf"],
                          os.path.join(self.nodes[0].data_dir, "tls", "ca.pem"), "sip:erin@%s" % DOMAIN)
            self.addCleanup(w.close)
            r = w.register("Bearer " + token)
            self.assertEqual(r.status, 200, r.text)

    def test_logins_through_the_balancer_are_not_throttled_as_one_source(self):
        import requests
        ca = os.path.join(self.nodes[0].data_dir, "tls", "ca.pem")
        # 45 logins: more than the default 20 a minute per source on each node.
        codes = [requests.post(self.public["wwsf"] + "/api/login", json={"username": "erin", "password": "erin-web"},
                               verify=ca, timeout=10).status_code for _ in range(45)]
        self.assertEqual(set(codes), {200}, codes)

    def test_digest_through_the_balancer_challenged_at_one_node_answered_at_the_other(self):
        ca = os.path.join(self.nodes[0].data_dir, "tls", "ca.pem")
        fred, impi = "sip:fred@%s" % DOMAIN, "fred@%s" % DOMAIN
        # Two connections through the balancer: round robin puts them on different nodes
        # (checked below by the edges their bindings name).
        flows = [sipws.WIC(self.public["wss"], self.public["wwsf"], ca, fred) for _ in range(2)]
        for w in flows:
            self.addCleanup(w.close)
        first = flows[0].register('Digest username="%s", realm="%s", uri="sip:%s", nonce="", response=""'
                                  % (impi, DOMAIN, DOMAIN))
        self.assertEqual(first.status, 401, first.text)
        nonce = re.search(r'nonce="([^"]+)"', first.header("www-authenticate")).group(1)
        # Answered at the other node: it knows the nonce (the key is in the database)…
        r = flows[1].digest_answer(impi, "fred-sip", nonce)
        self.assertEqual(r.status, 200, r.text)
        # …and the same answer cannot be replayed at the node that made the challenge.
        replay = flows[0].digest_answer(impi, "fred-sip", nonce)
        self.assertEqual(replay.status, 401, replay.text)
        self.assertIn("stale=true", replay.header("www-authenticate"))
        self.assertEqual(flows[0].digest_register(impi, "fred-sip", cnonce="f00d").status, 200)
        edges = {n.endpoints["epcscf_sip"].rsplit(":", 1)[1] for n in self.nodes}
        named = {re.search(r"@[^;>]*:(\d+)[;>]", " ".join(b["path"])).group(1) for b in bindings(self.nodes[0], fred)}
        self.assertEqual(named, edges, "the two flows landed on one node")

    def test_the_page_moves_to_the_other_node_when_its_node_dies(self):
        import browser
        from selenium.webdriver.common.by import By
        driver = browser.chromium(self.nodes[0], media=True)  # fake microphone for the call
        self.addCleanup(driver.quit)
        text = lambda element_id: driver.find_element(By.ID, element_id).text  # noqa: E731
        driver.get(self.public["wwsf"] + "/")
        driver.find_element(By.ID, "username").send_keys("dora")
        driver.find_element(By.ID, "password").send_keys("dora-web")
        driver.find_element(By.ID, "login-button").click()
        self.assertTrue(wait_for(lambda: text("state") == "registered", timeout=20), text("error"))
        dora = "sip:dora@%s" % DOMAIN
        doomed = self.holder(dora)
        self.assertIsNotNone(doomed, bindings(self.nodes[0], dora))
        survivor = self.nodes[1 - self.nodes.index(doomed)]
        # Another user registered through the doomed node, straight at its eP-CSCF.
        self.wic("erin", url="wss://localhost:%d" % self.ports[self.nodes.index(doomed)]["wss_port"])
        killed = time.time()
        os.kill(doomed.process.pid, signal.SIGKILL)
        doomed.process.wait()
        # The WIC reconnects through the balancer, gets a token from the surviving WWSF on
        # the same web session (no new login), and registers there.
        moved = wait_for(lambda: self.holder(dora) is survivor, timeout=20, interval=0.2)
        elapsed = time.time() - killed
        self.assertTrue(moved, "not registered again; page says %r, %r" % (text("state"), text("error")))
        self.assertLessEqual(elapsed, 10, "registered again after %.1f s" % elapsed)
        sys.stderr.write("(registered again on the other node %.1f s after the SIGKILL) " % elapsed)
        self.assertTrue(wait_for(lambda: text("state") == "registered", timeout=5))
        self.assertEqual(len(bindings(survivor, dora)), 1)  # the same instance replaced its old binding
        # Nothing answered 200 was lost with the node.
        self.assertEqual(len(bindings(survivor, "sip:erin@%s" % DOMAIN)), 1)
        fred = self.wic("fred", calling=True)
        # Erin's only binding is behind the dead node: 480 at once, not a proxy's 500.
        erin = "sip:erin@%s" % DOMAIN
        started = time.time()
        self.assertEqual(fred.message(erin, "anyone?").status, 480)
        self.assertLess(time.time() - started, 3)
        # With a second binding on the live node, that one is reached.
        self.wic("erin", url="wss://localhost:%d" % self.ports[self.nodes.index(survivor)]["wss_port"]).answer_requests()
        self.assertEqual(fred.message(erin, "there now?").status, 200)
        # A MESSAGE reaches the page on the surviving node…
        r = fred.message(dora, "still there?")
        self.assertEqual(r.status, 200, r.text)
        self.assertTrue(wait_for(lambda: text("last-im") == "sip:fred@%s: still there?" % DOMAIN, timeout=5),
                        text("last-im"))
        # …and so does a call (SDP passes through: this test is about signalling).
        result = {}
        caller = threading.Thread(target=lambda: result.update(call=fred.invite(dora, body=sipws.WEBRTC_OFFER)))
        caller.start()
        self.assertTrue(wait_for(lambda: text("call-state") == "incoming call", timeout=15), text("call-state"))
        self.assertEqual(text("caller"), "sip:fred@%s" % DOMAIN)
        driver.find_element(By.ID, "answer-button").click()
        caller.join(20)
        responses, dialog = result["call"]
        self.assertEqual(responses[-1].status, 200, responses[-1].text)
        fred.ack(dialog)
        self.assertEqual(fred.bye(dialog).status, 200)
        self.assertTrue(wait_for(lambda: text("call-state").startswith("ended"), timeout=10), text("call-state"))


if __name__ == "__main__":
    unittest.main(verbosity=2)
