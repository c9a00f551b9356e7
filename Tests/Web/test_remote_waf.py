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
    def test_wwsf_gets_tokens_from_a_waf_at_another_origin(self):
        # B's WWSF port must be known before A starts (it is in A's client list). It stays
        # bound here until B starts, so the kernel cannot hand it to one of A's listeners.
        held = socket.socket()
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        self.addCleanup(held.close)
        origin = "https://localhost:%d" % port
        clients = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
        json.dump([{"id": "wwsf-b", "secret": "b-client-secret", "redirect_uris": [origin + "/oauth/callback"],
                    "wwsf": origin}], clients)
        clients.close()
        a = Server("--waf-clients", clients.name)
        self.addCleanup(a.stop)
        held.close()
        b = Server("--wwsf-waf-issuer", a.waf, "--wwsf-waf-client-id", "wwsf-b", "--wwsf-waf-client-secret",
                   "b-client-secret", "--waf-ca", a.ca, "--waf-issuer", a.waf, wwsf_port=port)
        self.addCleanup(b.stop)
        for node, extra in ((a, []), (b, ["--allowed-waf", "localhost"])):
            node.cli("subscriber", "add", "--impi", "carol@ims.example.com", "--impu", "sip:carol@ims.example.com",
                     "--password", "x", *extra)
            node.cli("account", "add", "--username", "carol", "--password", "carol-pw", "--impi",
                     "carol@ims.example.com")

        wwsf = requests.Session()
        wwsf.verify = b.ca
        r = wwsf.post(b.wwsf + "/api/login", json={"username": "carol", "password": "carol-pw"})
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
