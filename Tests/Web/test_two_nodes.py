"""Issue 7: two eP-CSCFs and two S-CSCFs (and a WWSF/WAF node) as separate processes
sharing one PostgreSQL server on loopback."""
import os
import random
import signal
import subprocess
import time
import unittest
import urllib.parse

import sipws
from harness import Server, udp_request, wait_for

BASE = os.environ.get("WEBIMS_TEST_POSTGRES_URL")


def fresh_database():
    name = "webims_two_nodes_%d" % random.randint(0, 10**9)
    subprocess.run(["psql", BASE, "-q", "-c", "CREATE DATABASE %s" % name], check=True, capture_output=True)
    parts = urllib.parse.urlparse(BASE)
    return parts._replace(path="/" + name).geturl()


@unittest.skipUnless(BASE, "needs WEBIMS_TEST_POSTGRES_URL (scripts/test starts a PostgreSQL server)")
class TwoNodeTests(unittest.TestCase):
    def setUp(self):
        db = fresh_database()
        self.web = Server("--role", "wwsf,waf", database=db)
        self.addCleanup(self.web.stop)
        self.s1 = Server("--role", "s-cscf", "--trusted-node", "127.0.0.1", "--lab-plain-sip-trust", database=db)
        self.addCleanup(self.s1.stop)
        self.s2 = Server("--role", "s-cscf", "--trusted-node", "127.0.0.1", "--lab-plain-sip-trust", *os.environ.get("S2_ARGS", "").split(), database=db)
        self.addCleanup(self.s2.stop)
        # Plain TCP between the CSCFs on loopback: a lab setting (test_node_tls has mutual TLS).
        common = ["--role", "ep-cscf", "--lab-plain-sip-trust", "--home-waf-issuer", self.web.waf, "--home-wwsf", self.web.wwsf, "--waf-ca", self.web.ca,
                  "--allowed-origin", self.web.wwsf]
        self.e1 = Server(*common, "--scscf-uri", "sip:%s;transport=tcp" % self.s1.scscf, database=db)
        self.addCleanup(self.e1.stop)
        self.e2 = Server(*common, "--scscf-uri", "sip:%s;transport=tcp" % self.s2.scscf, database=db)
        self.addCleanup(self.e2.stop)
        self.web.cli("subscriber", "add", "--impi", "bob@ims.example.com", "--impu", "sip:bob@ims.example.com",
                     "--password", "bob-sip")
        self.web.cli("account", "add", "--username", "bob", "--password", "bob-web", "--impi", "bob@ims.example.com")

    def wic(self, edge, user):
        token = self.web.cli("token", "issue", "--account", user).strip()
        impu = "sip:%s@ims.example.com" % ("alice" if user == self.web.demo_user else user)
        w = sipws.WIC(edge.epcscf, self.web.wwsf, edge.ca, impu)
        return w, w.register("Bearer " + token)

    def test_shared_registrations_and_path_routing(self):
        wic, r = self.wic(self.e1, self.web.demo_user)
        self.assertEqual(r.status, 200, r.text)
        self.assertIn(self.s1.scscf, r.header("service-route"))
        wic.answer_requests()
        # The other S-CSCF finds the binding in the shared store and routes a request for
        # the identity by the stored Path: through eP-CSCF 1, down the WIC's WebSocket.
        notify = (
            "NOTIFY sip:alice@ims.example.com SIP/2.0\r\n"
            "Via: SIP/2.0/UDP 127.0.0.1:LOCALPORT;branch=z9hG4bK%d;rport\r\n"
            "Max-Forwards: 70\r\nFrom: <sip:as@ims.example.com>;tag=as1\r\nTo: <sip:alice@ims.example.com>\r\n"
            "Call-ID: two-nodes-%d\r\nCSeq: 1 NOTIFY\r\nEvent: message-summary\r\n"
            "Subscription-State: active\r\nContent-Length: 0\r\n\r\n" % (random.randint(0, 10**9), random.randint(0, 10**9)))
        self.assertEqual(udp_request(self.s2.scscf, notify), 200)
        self.assertTrue(wait_for(lambda: any(m.startswith("NOTIFY ") for m in wic.received), timeout=5))
        # An identity that is not registered anywhere: 480 from the shared store's view.
        self.assertEqual(udp_request(self.s2.scscf, notify.replace("NOTIFY sip:alice@", "NOTIFY sip:bob@")), 480)
        wic.close()

    def test_one_scscf_dies_and_nothing_is_lost(self):
        wic1, r = self.wic(self.e1, self.web.demo_user)
        self.assertEqual(r.status, 200, r.text)
        os.kill(self.s1.process.pid, signal.SIGKILL)
        self.s1.process.wait()
        # Through the other pair, registrations keep working.
        wic2, r = self.wic(self.e2, "bob")
        self.assertEqual(r.status, 200, r.text)
        # The binding made through the dead S-CSCF is still there.
        aors = [line.split("\t")[0] for line in self.s2.cli("registrations").splitlines()]
        self.assertIn("sip:alice@ims.example.com", aors)
        self.assertIn("sip:bob@ims.example.com", aors)
        # Through the pair whose S-CSCF is gone: an answer, never silence.
        token = self.web.cli("token", "issue", "--account", self.web.demo_user).strip()
        start = time.time()
        r = wic1.register("Bearer " + token)
        self.assertIn(r.status, (408, 503), r.text)
        self.assertLess(time.time() - start, 40)
        wic1.close()
        wic2.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
