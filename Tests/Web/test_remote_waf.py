"""Issue 5 §4: the WWSF configured to use a WAF at another origin. The browser is sent to
that WAF to sign in (authorization code + PKCE), the WWSF redeems the code with its client
secret, the WIC gets a token issued by that WAF, and it registers through the eP-CSCF,
whose HSS entry allows that WAF."""
import html
import json
import re
import socket
import tempfile
import unittest
import urllib.parse

import jwt
import requests

import sipws
from harness import Server


class RemoteWAFTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # B's WWSF port must be known before A starts (it is in A's client list). It stays
        # bound here until B starts, so the kernel cannot hand it to one of A's listeners.
        held = socket.socket()
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        origin = "https://localhost:%d" % port
        clients = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
        json.dump([{"id": "wwsf-b", "secret": "b-client-secret", "redirect_uris": [origin + "/oauth/callback"],
                    "wwsf": origin}], clients)
        clients.close()
        cls.a = a = Server("--waf-clients", clients.name)
        held.close()
        cls.b = b = Server("--wwsf-waf-issuer", a.waf, "--wwsf-waf-client-id", "wwsf-b", "--wwsf-waf-client-secret",
                           "b-client-secret", "--waf-ca", a.ca, "--waf-issuer", a.waf, wwsf_port=port)
        cls.origin = origin
        for node, extra in ((a, []), (b, ["--allowed-waf", a.waf])):
            for user in ("carol", "mallory"):
                node.cli("subscriber", "add", "--impi", user + "@ims.example.com", "--impu",
                         "sip:%s@ims.example.com" % user, "--password", "x", *extra)
                node.cli("account", "add", "--username", user, "--password", user + "-pw", "--impi",
                         user + "@ims.example.com")

    @classmethod
    def tearDownClass(cls):
        cls.b.stop()
        cls.a.stop()

    def wwsf_login(self, user):
        wwsf = requests.Session()
        wwsf.verify = self.b.ca
        r = wwsf.post(self.b.wwsf + "/api/login", json={"username": user, "password": user + "-pw"})
        self.assertEqual(r.status_code, 200, r.text)
        return wwsf, r.json()["csrf"]

    def waf_sign_in(self, authorize, user):
        """The user's browser at the other WAF: signs in there; returns the callback URL."""
        waf = requests.Session()
        waf.verify = self.a.ca
        form = waf.get(authorize)
        fields = {html.unescape(n): html.unescape(v)
                  for n, v in re.findall(r'<input type="hidden" name="([^"]*)" value="([^"]*)">', form.text)}
        fields.update({"username": user, "password": user + "-pw"})
        r = waf.post(self.a.waf + "/authorize", data=fields, allow_redirects=False)
        self.assertEqual(r.status_code, 302, r.text)
        return r.headers["Location"]

    def test_item03_a_callback_is_bound_to_the_browser_that_started_it(self):
        # Issue 26 item 3: mallory starts a flow with her own WWSF session and sends the
        # authorize link to carol; carol signs in and her browser brings the code back.
        mallory, mallory_csrf = self.wwsf_login("mallory")
        r = mallory.post(self.b.wwsf + "/api/token", headers={"X-CSRF-Token": mallory_csrf})
        r = mallory.get(r.json()["authorize_url"], allow_redirects=False)
        link = r.headers["Location"]
        carol, carol_csrf = self.wwsf_login("carol")
        callback = self.waf_sign_in(link, "carol")
        r = carol.get(callback, allow_redirects=False)
        self.assertNotEqual(r.status_code, 302, r.text)
        self.assertIn("another browser session", r.text)
        # Nobody got carol's token: not mallory, and not carol by a flow she did not start.
        r = mallory.post(self.b.wwsf + "/api/token", headers={"X-CSRF-Token": mallory_csrf})
        self.assertEqual(r.status_code, 401, r.text)
        r = carol.post(self.b.wwsf + "/api/token", headers={"X-CSRF-Token": carol_csrf})
        self.assertEqual(r.status_code, 401, r.text)
        # Mallory's own browser bringing the code (had she stolen it) fails too: state used.
        self.assertNotEqual(mallory.get(callback, allow_redirects=False).status_code, 302)

    def test_wwsf_gets_tokens_from_a_waf_at_another_origin(self):
        a, b, origin = self.a, self.b, self.origin

        wwsf = requests.Session()
        wwsf.verify = b.ca
        r = wwsf.post(b.wwsf + "/api/login", json={"username": "carol", "password": "carol-pw"})
        self.assertEqual(r.status_code, 200, r.text)
        csrf = r.json()["csrf"]
        # No token yet: the WIC is told where to go.
        r = wwsf.post(b.wwsf + "/api/token", headers={"X-CSRF-Token": csrf})
        self.assertEqual(r.status_code, 401)
        self.assertEqual(r.json()["error"], "authorization_required")
        start = r.json()["authorize_url"]
        # The browser: to the WWSF's start, to the other WAF, signs in there, back.
        r = wwsf.get(start, allow_redirects=False)
        self.assertEqual(r.status_code, 302)
        authorize = r.headers["Location"]
        self.assertTrue(authorize.startswith(a.waf + "/authorize?"), authorize)
        waf = requests.Session()
        waf.verify = a.ca
        form = waf.get(authorize)
        fields = {html.unescape(n): html.unescape(v)
                  for n, v in re.findall(r'<input type="hidden" name="([^"]*)" value="([^"]*)">', form.text)}
        fields.update({"username": "carol", "password": "carol-pw"})
        r = waf.post(a.waf + "/authorize", data=fields, allow_redirects=False)
        self.assertEqual(r.status_code, 302, r.text)
        callback = r.headers["Location"]
        self.assertTrue(callback.startswith(origin + "/oauth/callback?"), callback)
        r = wwsf.get(callback, allow_redirects=False)
        self.assertEqual((r.status_code, r.headers.get("Location")), (302, "/"), r.text)
        # Now the WWSF hands out the other WAF's token.
        r = wwsf.post(b.wwsf + "/api/token", headers={"X-CSRF-Token": csrf})
        self.assertEqual(r.status_code, 200, r.text)
        token = r.json()["token"]
        claims = jwt.decode(token, options={"verify_signature": False})
        self.assertEqual(claims["iss"], a.waf)
        self.assertEqual(claims["wwsf"], origin)
        self.assertEqual(claims["client_id"], "wwsf-b")
        wic = sipws.WIC(b.epcscf, origin, b.ca, "sip:carol@ims.example.com")
        try:
            self.assertEqual(wic.register("Bearer " + token).status, 200)
        finally:
            wic.close()
        # A replayed callback is refused (the state was used).
        r = wwsf.get(callback, allow_redirects=False)
        self.assertNotEqual(r.status_code, 302)


if __name__ == "__main__":
    unittest.main(verbosity=2)
