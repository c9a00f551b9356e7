"""Issue 26: the chain web login -> WAF token -> eP-CSCF -> TNA -> S-CSCF tried the way an
attacker on the same machine would, against `webims serve` with its defaults. One test per
item of the issue, named after it (test_itemNN_...)."""
import random
import re
import socket
import time
import unittest

import requests

import sipws
from harness import Server, ServerTestCase, final_status, udp_request, wait_for

# A public identity nobody has: a MESSAGE to it is answered at once (404) when forwarded.
NOBODY = "sip:nobody@ims.example.com"


def tna_register(impi, impu, contact_host="198.51.100.7"):
    """A REGISTER claiming integrity-protected=auth-done, as a forger would write it."""
    n = random.randint(0, 10**9)
    return ("REGISTER sip:ims.example.com SIP/2.0\r\n"
            "Via: SIP/2.0/UDP 127.0.0.1:LOCALPORT;branch=z9hG4bK%d;rport\r\n"
            "Max-Forwards: 70\r\nFrom: <%s>;tag=f%d\r\nTo: <%s>\r\nCall-ID: forged-%d\r\nCSeq: 1 REGISTER\r\n"
            "Contact: <sip:attacker@%s:5060>\r\nExpires: 600\r\n"
            'Authorization: Digest username="%s", realm="ims.example.com", uri="sip:ims.example.com", '
            'nonce="", response="", integrity-protected=auth-done\r\n'
            "Content-Length: 0\r\n\r\n" % (n, impu, n, impu, n, contact_host, impi))


def tcp_request(host_port, text, timeout=5):
    """One request over plain TCP; the final status, or None when nothing came back."""
    host, port = host_port.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as s:
            s.sendall(text.replace("LOCALPORT", str(s.getsockname()[1])).replace("SIP/2.0/UDP", "SIP/2.0/TCP").encode())
            data, deadline = b"", time.time() + timeout
            while time.time() < deadline and final_status(data) is None:
                chunk = s.recv(65535)
                if not chunk:
                    break
                data += chunk
            return final_status(data)
    except (OSError, socket.timeout):
        return None


class DefaultServerTests(ServerTestCase):
    """Against one `webims serve` with nothing but free ports set."""

    def wic(self):
        s = self.server
        token = s.cli("token", "issue", "--account", s.demo_user).strip()
        w = sipws.WIC(s.epcscf, s.wwsf, s.ca, s.demo_impu)
        self.addCleanup(w.close)
        return w, token

    def test_item01_auth_done_over_udp_from_a_local_process_registers_nothing(self):
        s = self.server
        status = udp_request(s.scscf, tna_register(s.demo_impi, s.demo_impu))
        self.assertEqual(status, 401)  # challenged as any UE: auth-done ignored
        self.assertNotIn("attacker@", s.cli("registrations"))
        tcp = tcp_request(s.scscf, tna_register(s.demo_impi, s.demo_impu))
        self.assertEqual(tcp, 401)
        self.assertNotIn("attacker@", s.cli("registrations"))

    def test_item08_the_epcscf_sip_port_takes_nothing_from_outside(self):
        s = self.server
        w, token = self.wic()
        r = w.register("Bearer " + token)
        self.assertEqual(r.status, 200, r.text)
        w.answer_requests()
        flow = re.search(r"<sip:(fl-[^@]+)@", r.header("path")).group(1)
        edge_sip = s.endpoints["epcscf_sip"]
        n = random.randint(0, 10**9)
        forged = ("MESSAGE sip:alice@ims.example.com SIP/2.0\r\n"
                  "Via: SIP/2.0/TCP 127.0.0.1:LOCALPORT;branch=z9hG4bK%d;rport\r\n"
                  "Route: <sip:%s@%s;lr;transport=tcp>\r\n"
                  "Max-Forwards: 70\r\nFrom: <sip:bank@ims.example.com>;tag=x%d\r\nTo: <sip:alice@ims.example.com>\r\n"
                  "P-Asserted-Identity: <sip:bank@ims.example.com>\r\n"
                  "Call-ID: inject-%d\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"
                  % (n, flow, edge_sip, n, n))
        self.assertIn(tcp_request(edge_sip, forged), (403, None))
        time.sleep(0.3)
        self.assertEqual(w.received, [])
        # What the S-CSCF routes by the Path, in process, still reaches the WIC: bob's
        # MESSAGE to alice goes eP-CSCF -> S-CSCF -> eP-CSCF without a socket in between.
        bob = self.bob()
        self.assertEqual(bob.message("sip:alice@ims.example.com", "hi alice").status, 200)
        self.assertTrue(wait_for(lambda: any("hi alice" in m for m in w.received), timeout=5), w.received)
        # Three proxy hops on the way (issues 27, 28): the eP-CSCF from bob's flow, the
        # S-CSCF, the eP-CSCF again towards alice's flow.
        delivered = next(m for m in w.received if "hi alice" in m)
        self.assertIn("\r\nMax-Forwards: 67\r\n", delivered)

    def test_item05_a_revoked_token_ends_what_its_flow_may_send(self):
        s = self.server
        bob = self.bob()
        self.assertNotIn(bob.message(NOBODY, "before").status, (401, 403))
        s.cli("token", "revoke", "--account", "bob")
        # The eP-CSCF reads revocations every 5 s; then the flow's requests are refused.
        def refused():
            r = bob.message(NOBODY, "after revoke")
            return r if r.status == 401 else None
        r = wait_for(refused, timeout=12, interval=1)
        self.assertTrue(r, "a MESSAGE on a revoked token's flow was still forwarded")
        self.assertIn('error="invalid_token"', r.header("www-authenticate"))
        # The identities are gone from the flow: still refused, and 403 now (register first).
        self.assertEqual(bob.message(NOBODY, "again").status, 403)

    def bob(self):
        s = self.server
        if "bob@ims.example.com" not in s.cli("subscriber", "list"):
            s.cli("subscriber", "add", "--impi", "bob@ims.example.com", "--impu", "sip:bob@ims.example.com",
                  "--password", "bob-sip")
            s.cli("account", "add", "--username", "bob", "--password", "bob-web-pw", "--impi", "bob@ims.example.com")
        token = s.cli("token", "issue", "--account", "bob").strip()
        b = sipws.WIC(s.epcscf, s.wwsf, s.ca, "sip:bob@ims.example.com")
        self.addCleanup(b.close)
        r = b.register("Bearer " + token)
        self.assertEqual(r.status, 200, r.text)
        return b


def udp_register(host_port, impi, impu, call_id, authorization):
    """One REGISTER over UDP; (status, WWW-Authenticate) of the final answer."""
    host, port = host_port.rsplit(":", 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(10)
        n = random.randint(0, 10**9)
        s.sendto(("REGISTER sip:ims.example.com SIP/2.0\r\n"
                  "Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK%d;rport\r\n"
                  "Max-Forwards: 70\r\nFrom: <%s>;tag=t%d\r\nTo: <%s>\r\nCall-ID: %s\r\nCSeq: %d REGISTER\r\n"
                  "Contact: <sip:ue@127.0.0.1:%d>\r\nExpires: 600\r\nAuthorization: %s\r\nContent-Length: 0\r\n\r\n"
                  % (s.getsockname()[1], n, impu, n, impu, call_id, n % 1000 + 1, s.getsockname()[1],
                     authorization)).encode(), (host, int(port)))
        while True:
            data = s.recv(65535).decode()
            status = int(data.split(" ", 2)[1])
            if status >= 200:
                challenge = re.search(r"(?im)^WWW-Authenticate: (.*)$", data)
                return status, challenge.group(1) if challenge else None


class SchemeTests(ServerTestCase):
    """Digest and IMS AKA at the S-CSCF, through the eP-CSCF or straight over UDP."""

    @classmethod
    def provision(cls, s):
        s.cli("subscriber", "add", "--impi", "aka@ims.example.com", "--impu", "sip:aka@ims.example.com",
              "--aka-k", "465b5ce8b199b49faa5f0a2ee238a6bc", "--aka-opc", "cd63cb71954a9f4e48a5994e37a02baf")
        s.cli("subscriber", "add", "--impi", "dg@ims.example.com", "--impu", "sip:dg@ims.example.com",
              "--password", "dg-secret")

    def sqn(self):
        return int(re.search(r"SQN (\d+)", self.server.cli("subscriber", "show", "--impi", "aka@ims.example.com"))
                   .group(1))

    def test_item06_a_strangers_requests_neither_replace_the_challenge_nor_write_per_request(self):
        s = self.server
        empty = 'Digest username="aka@ims.example.com", realm="ims.example.com", uri="sip:ims.example.com", ' \
                'nonce="", response=""'
        status, challenge = udp_register(s.scscf, "aka@ims.example.com", "sip:aka@ims.example.com", "victim", empty)
        self.assertEqual(status, 401)
        nonce = re.search(r'nonce="([^"]+)"', challenge).group(1)
        before = self.sqn()
        # The attacker: a credential-less REGISTER for the victim every 100 ms, while
        # the victim's answer is on its way.
        for i in range(5):
            self.assertEqual(udp_register(s.scscf, "aka@ims.example.com", "sip:aka@ims.example.com", "stranger-%d" % i,
                                          empty)[0], 401)
            time.sleep(0.1)
        # No SQN written for those five challenges (the first one reserved a block).
        self.assertEqual(self.sqn(), before)
        # The victim's challenge is still the one it answers: a wrong RES is judged (403),
        # not met with a new challenge (401) as for a challenge that was replaced.
        answer = ('Digest username="aka@ims.example.com", realm="ims.example.com", uri="sip:ims.example.com", '
                  'nonce="%s", algorithm=AKAv1-MD5, qop=auth, nc=00000001, cnonce="c", response="%s"'
                  % (nonce, "0" * 32))
        self.assertEqual(udp_register(s.scscf, "aka@ims.example.com", "sip:aka@ims.example.com", "victim", answer)[0],
                         403)

    def test_item07_digest_needs_qop_and_guessing_is_throttled(self):
        s = self.server
        w = sipws.WIC(s.epcscf, s.wwsf, s.ca, "sip:dg@ims.example.com")
        self.addCleanup(w.close)
        r = w.digest_register("dg@ims.example.com", "dg-secret", qop=False)
        self.assertEqual(r.status, 403, r.text)
        for _ in range(5):
            self.assertEqual(w.digest_register("dg@ims.example.com", "guess").status, 403)
        r = w.digest_register("dg@ims.example.com", "dg-secret")
        self.assertEqual((r.status, r.reason), (403, "Too Many Failed Attempts"), r.text)
        self.assertTrue(r.header("retry-after"))
        # A token registration of the same IMPI is not throttled.
        s.cli("account", "add", "--username", "dg", "--password", "dg-web-pw", "--impi", "dg@ims.example.com")
        token = s.cli("token", "issue", "--account", "dg").strip()
        t = sipws.WIC(s.epcscf, s.wwsf, s.ca, "sip:dg@ims.example.com")
        self.addCleanup(t.close)
        self.assertEqual(t.register("Bearer " + token).status, 200)

    def test_item13_an_identity_holds_at_most_twenty_contacts(self):
        s = self.server
        s.cli("subscriber", "add", "--impi", "many@ims.example.com", "--impu", "sip:many@ims.example.com",
              "--password", "many-secret")
        s.cli("account", "add", "--username", "many", "--password", "many-web-pw", "--impi", "many@ims.example.com")
        token = s.cli("token", "issue", "--account", "many").strip()
        statuses = []
        for _ in range(21):  # 21 browser tabs, each its own instance
            w = sipws.WIC(s.epcscf, s.wwsf, s.ca, "sip:many@ims.example.com")
            self.addCleanup(w.close)
            r = w.register("Bearer " + token)
            statuses.append((r.status, r.reason))
        self.assertEqual(statuses[:20], [(200, "OK")] * 20)
        self.assertEqual(statuses[20], (403, "Too Many Contacts"))
        bound = [l for l in s.cli("registrations").splitlines() if l.startswith("sip:many@ims.example.com\t")]
        self.assertEqual(len(bound), 20)


class PoolTests(ServerTestCase):
    """Issue 26 item 4: web users of one IMPU pool (scenario 3) share an IMPI, not their
    registrations."""

    @classmethod
    def provision(cls, s):
        s.cli("subscriber", "add", "--impi", "pool@ims.example.com", "--impu", "sip:p1@ims.example.com",
              "--impu", "sip:p2@ims.example.com", "--impu", "sip:p3@ims.example.com", "--password", "pool-sip",
              "--pool")
        for user in ("u1", "u2", "u3"):
            s.cli("account", "add", "--username", user, "--password", user + "-web-pw", "--impi",
                  "pool@ims.example.com", "--pool")

    def web_login(self, user):
        s = self.server
        http = requests.Session()
        http.verify = s.ca
        r = http.post(s.wwsf + "/api/login", json={"username": user, "password": user + "-web-pw"},
                      headers={"Origin": s.wwsf})
        self.assertEqual(r.status_code, 200, r.text)
        csrf = r.json()["csrf"]
        r = http.post(s.wwsf + "/api/token", headers={"X-CSRF-Token": csrf})
        self.assertEqual(r.status_code, 200, r.text)
        answer = r.json()
        self.assertEqual(len(answer["impus"]), 1)
        return http, csrf, answer["token"], answer["impus"][0]

    def test_item04_a_pool_user_registers_asserts_receives_and_removes_only_its_impu(self):
        s = self.server
        http1, csrf1, token1, impu1 = self.web_login("u1")
        _, _, token2, impu2 = self.web_login("u2")
        self.assertNotEqual(impu1, impu2)
        w1 = sipws.WIC(s.epcscf, s.wwsf, s.ca, impu1)
        self.addCleanup(w1.close)
        r = w1.register("Bearer " + token1)
        self.assertEqual(r.status, 200, r.text)
        # Registered: its own IMPU, nobody else's.
        self.assertIn(impu1, r.header("p-associated-uri"))
        self.assertNotIn(impu2, r.header("p-associated-uri"))
        self.assertNotIn(impu2, s.cli("registrations"))
        w2 = sipws.WIC(s.epcscf, s.wwsf, s.ca, impu2)
        self.addCleanup(w2.close)
        self.assertEqual(w2.register("Bearer " + token2).status, 200)
        # Asserts: not the other user's IMPU.
        self.assertNotIn(w1.message(NOBODY, "as u1").status, (401, 403))  # its own identity may speak
        w1.impu, own = impu2, impu1
        self.assertEqual(w1.message(NOBODY, "as u2").status, 403)
        w1.impu = own
        # Receives: a MESSAGE to u2's IMPU reaches u2's flow only.
        w1.answer_requests()
        w2.answer_requests()
        bob = DefaultServerTests.bob(self)
        self.assertEqual(bob.message(impu2, "for u2").status, 200)
        self.assertTrue(wait_for(lambda: any("for u2" in m for m in w2.received), timeout=5))
        self.assertFalse(any("for u2" in m for m in w1.received))
        # Removes: Contact: * from u1 takes only u1's binding.
        w1.ws.send("\r\n".join([
            "REGISTER sip:ims.example.com SIP/2.0", "Via: SIP/2.0/WSS %s;branch=z9hG4bKwild1" % w1.host,
            "Max-Forwards: 70", "From: <%s>;tag=%s" % (impu1, w1.tag), "To: <%s>" % impu1,
            "Call-ID: %s" % w1.call_id, "CSeq: 9 REGISTER", "Contact: *", "Expires: 0",
            "Authorization: Bearer " + token1, "Content-Length: 0"]) + "\r\n\r\n")
        time.sleep(0.5)
        bindings = s.cli("registrations")
        self.assertNotIn(impu1, bindings)
        self.assertIn(impu2, bindings)
        # Logout revokes the token issued for the pool IMPU.
        r = http1.post(s.wwsf + "/api/logout", headers={"X-CSRF-Token": csrf1})
        self.assertEqual(r.status_code, 200, r.text)
        # The next pool user gets a token that works: in the same second as the logout, an
        # IMPU other than the one just revoked; after it, any free IMPU.
        _, _, token3, impu3 = self.web_login("u3")
        w4 = sipws.WIC(s.epcscf, s.wwsf, s.ca, impu3)
        self.addCleanup(w4.close)
        self.assertEqual(w4.register("Bearer " + token3).status, 200)
        w3 = sipws.WIC(s.epcscf, s.wwsf, s.ca, impu1)
        self.addCleanup(w3.close)
        def refused():
            return w3.register("Bearer " + token1).status == 401
        self.assertTrue(wait_for(refused, timeout=12, interval=1), "u1's token still registers after logout")


class ShortLivedTests(ServerTestCase):
    """Tokens of 6 s and registrations as short as 2 s."""

    server_args = ("--token-lifetime", "6", "--min-expires", "2")

    def test_item05_an_expired_token_ends_what_its_flow_may_send(self):
        s = self.server
        token = s.cli("token", "issue", "--account", s.demo_user, "--ttl", "5").strip()
        w = sipws.WIC(s.epcscf, s.wwsf, s.ca, s.demo_impu)
        self.addCleanup(w.close)
        self.assertEqual(w.register("Bearer " + token).status, 200)
        self.assertNotIn(w.message(NOBODY, "while valid").status, (401, 403))
        time.sleep(6)
        r = w.message(NOBODY, "after expiry")
        self.assertEqual(r.status, 401, r.text)
        self.assertIn('error="invalid_token"', r.header("www-authenticate"))

    def test_item05_a_lapsed_or_removed_registration_ends_what_its_flow_may_send(self):
        s = self.server
        w = sipws.WIC(s.epcscf, s.wwsf, s.ca, s.demo_impu)
        self.addCleanup(w.close)
        r = w.digest_register(s.demo_impi, s.demo_sip_password, expires=2)
        self.assertEqual(r.status, 200, r.text)
        time.sleep(3)
        r = w.message(NOBODY, "after lapse")
        self.assertEqual(r.status, 403, r.text)
        self.assertIn("Lapsed", r.reason)
        # De-registered: the same.
        self.assertEqual(w.digest_register(s.demo_impi, s.demo_sip_password, expires=600).status, 200)
        self.assertNotIn(w.message(NOBODY, "registered").status, (401, 403))
        self.assertEqual(w.digest_register(s.demo_impi, s.demo_sip_password, expires=0).status, 200)
        self.assertEqual(w.message(NOBODY, "after de-registration").status, 403)


class DataDirectoryTests(unittest.TestCase):
    def test_item10_the_database_and_its_directory_are_owner_only(self):
        import os
        import stat
        import tempfile
        parent = tempfile.mkdtemp(prefix="webims-perm-")
        data = os.path.join(parent, "data")  # made by webims itself
        s = Server(data_dir=data)
        try:
            files = [data, os.path.join(data, "webims.sqlite"), os.path.join(data, "webims.sqlite-wal"),
                     os.path.join(data, "nonce.key")]
            for path in files:
                if os.path.exists(path):
                    mode = stat.S_IMODE(os.stat(path).st_mode)
                    self.assertEqual(mode & 0o077, 0, "%s is %o" % (path, mode))
            self.assertTrue(os.path.exists(files[1]))
            self.assertNotIn("warning: " + data, s.log)
        finally:
            s.stop()
        # Opened wider by someone: start-up says so.
        os.chmod(data, 0o755)
        os.chmod(os.path.join(data, "webims.sqlite"), 0o644)
        s = Server(data_dir=data)
        try:
            self.assertIn("warning: %s is 755" % data, s.log)
            self.assertIn("webims.sqlite is 644", s.log)
        finally:
            s.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
