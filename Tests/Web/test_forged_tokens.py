"""Issue 4: the forged-token matrix end to end — real `webims serve`, real WSS, tokens
minted here with PyJWT (some with the WAF's real key read from the store, so only the one
claim under test is wrong), each with the exact SIP answer the WIC gets."""
import base64
import hashlib
import hmac
import json
import os
import sqlite3
import time
import unittest
import uuid

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

import sipws
from harness import Server

IMPU = "sip:alice@ims.example.com"


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class ForgedTokenTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server()
        db = sqlite3.connect(os.path.join(cls.server.data_dir, "webims.sqlite"))
        kid, raw = db.execute("SELECT kid, private_key FROM waf_keys WHERE retired_at IS NULL").fetchone()
        db.close()
        cls.kid = kid
        cls.key = ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1())

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def claims(self, **changes):
        now = int(time.time())
        c = {"iss": self.server.waf, "sub": "alice@ims.example.com", "aud": "https://epcscf.ims.example.com",
             "exp": now + 600, "iat": now, "nbf": now, "jti": str(uuid.uuid4()), "client_id": "webims-wwsf",
             "scope": "ims-register", "impi": "alice@ims.example.com", "impu": [IMPU], "wwsf": self.server.wwsf}
        for k, v in changes.items():
            if v is None:
                c.pop(k, None)
            else:
                c[k] = v
        return c

    def token(self, key=None, headers=None, **changes):
        h = {"kid": self.kid, "typ": "at+jwt"}
        h.update(headers or {})
        return jwt.encode(self.claims(**changes), key or self.key, algorithm="ES256", headers=h)

    def register(self, authorization, impu_from=IMPU, impu_to=IMPU, origin=None):
        wic = sipws.WIC(self.server.epcscf, origin or self.server.wwsf, self.server.ca, impu_to)
        try:
            if impu_from != impu_to:
                # Hand-built so From and To differ.
                wic.impu = impu_to
                original = wic.ws.send
                wic.ws.send = lambda text: original(text.replace("From: <%s>" % impu_to, "From: <%s>" % impu_from))
            return wic.register(authorization)
        finally:
            wic.close()

    def expect(self, status, authorization, **kw):
        r = self.register(authorization, **kw)
        self.assertEqual(r.status, status, r.text)
        return r

    def test_a_good_token_registers(self):
        r = self.expect(200, "Bearer " + self.token())
        # The eP-CSCF noted where the request came from (RFC 7118 §5.3): the WIC's Via
        # names only a .invalid host.
        self.assertRegex(r.header("via"), r"^SIP/2.0/WSS \S+\.invalid;branch=\S+;received=127\.0\.0\.1")

    def test_the_matrix(self):
        public = self.key.public_key().public_bytes(serialization.Encoding.X962,
                                                     serialization.PublicFormat.UncompressedPoint)
        header = b64(json.dumps({"alg": "HS256", "typ": "at+jwt", "kid": self.kid}).encode())
        payload = b64(json.dumps(self.claims()).encode())
        hs = header + "." + payload + "." + b64(hmac.new(public, (header + "." + payload).encode(), hashlib.sha256).digest())
        none = b64(json.dumps({"alg": "none", "typ": "at+jwt", "kid": self.kid}).encode()) + "." + payload + "."
        stranger = ec.generate_private_key(ec.SECP256R1())
        cases = [
            ("garbage", 401, "Bearer garbage"),
            ("alg none", 401, "Bearer " + none),
            ("unknown key", 401, "Bearer " + self.token(key=stranger)),
            ("unknown kid", 401, "Bearer " + self.token(key=stranger, headers={"kid": "waf-forged"})),
            ("HS256 with the WAF's public key", 401, "Bearer " + hs),
            ("expired", 401, "Bearer " + self.token(exp=int(time.time()) - 120)),
            ("not yet valid", 401, "Bearer " + self.token(nbf=int(time.time()) + 600)),
            ("wrong iss", 401, "Bearer " + self.token(iss="https://evil.example")),
            ("wrong aud", 401, "Bearer " + self.token(aud="https://other.example")),
            ("typ JWT", 401, "Bearer " + self.token(headers={"typ": "JWT"})),
            ("missing scope", 403, "Bearer " + self.token(scope="openid")),
            ("access_token form works", 200, 'Bearer access_token="%s"' % self.token()),
        ]
        for name, status, authorization in cases:
            with self.subTest(name):
                r = self.expect(status, authorization)
                if status == 401:
                    challenge = r.header("www-authenticate")
                    self.assertTrue(challenge.startswith("Bearer "), challenge)
                    self.assertIn('error="invalid_token"', challenge)
                    self.assertIn('scope="ims-register"', challenge)
                    self.assertIn('authz_server="%s"' % self.server.waf, challenge)

    def test_no_token_gets_a_bare_challenge(self):
        r = self.expect(401, None)
        challenges = [v for n, v in r.headers if n == "www-authenticate"]
        bearer = [c for c in challenges if c.startswith("Bearer")]
        self.assertTrue(bearer)
        self.assertNotIn("error=", bearer[0])

    def test_identity_mismatches(self):
        other = "sip:mallory@ims.example.com"
        self.expect(403, "Bearer " + self.token(), impu_from=other, impu_to=other)  # To not in the token
        self.expect(403, "Bearer " + self.token(), impu_from=other)  # From differs from To
        self.expect(403, "Bearer " + self.token(wwsf="https://evil.example"))  # wwsf is not the page's origin

    def test_a_registered_wic_cannot_speak_or_listen_for_another(self):
        wic = sipws.WIC(self.server.epcscf, self.server.wwsf, self.server.ca, IMPU)
        try:
            self.assertEqual(wic.register("Bearer " + self.token()).status, 200)

            def send(method, uri, sender, extra=""):
                wic.ws.send(
                    "%s %s SIP/2.0\r\nVia: SIP/2.0/WSS %s;branch=z9hG4bK%s\r\nMax-Forwards: 70\r\n"
                    "From: <%s>;tag=x1\r\nTo: <%s>\r\nCall-ID: %s\r\nCSeq: 1 %s\r\n%sContent-Length: 0\r\n\r\n"
                    % (method, uri, wic.host, sipws.rand(), sender, uri, sipws.rand(), method, extra))
                return wic.receive()

            bob = "sip:bob@ims.example.com"
            r = send("MESSAGE", bob, bob)  # From an identity it did not register
            self.assertEqual((r.status, r.reason), (403, "Identity Not Registered"))
            r = send("SUBSCRIBE", bob, IMPU, "Event: reg\r\nExpires: 600\r\n")  # someone else's reg state
            self.assertEqual((r.status, r.reason), (403, "Not Your Registration"))
            r = send("SUBSCRIBE", IMPU, IMPU, "Event: reg\r\nExpires: 600\r\nContact: <sip:w@%s;transport=ws;ob>\r\n"
                     % wic.host)  # its own: fine
            self.assertEqual(r.status, 200, r.text)
        finally:
            wic.close()

    def test_a_wic_cannot_claim_auth_done(self):
        forged = ('Digest username="alice@ims.example.com", realm="ims.example.com", uri="sip:ims.example.com", '
                  'nonce="", response="", integrity-protected="auth-done"')
        r = self.expect(401, forged)
        # Treated as a plain first Digest REGISTER: the S-CSCF challenges it.
        self.assertTrue(any(v.startswith("Digest") for n, v in r.headers if n == "www-authenticate"), r.text)

    def test_z_revocation_reaches_the_edge(self):
        """Runs last (it revokes alice's tokens): a token the eP-CSCF has cached is refused
        within seconds of `webims token revoke`."""
        token = self.token()
        self.expect(200, "Bearer " + token)  # validated and cached
        time.sleep(1.1)
        self.server.cli("token", "revoke", "--account", self.server.demo_user)
        deadline = time.time() + 10
        status = 200
        while time.time() < deadline and status == 200:
            time.sleep(0.5)
            status = self.register("Bearer " + token).status
        self.assertEqual(status, 401)


if __name__ == "__main__":
    unittest.main(verbosity=2)
