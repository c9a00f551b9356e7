"""Issue 5: the WWSF and the WAF over real TLS, checked from outside with requests and
an independent JWT library (PyJWT)."""
import base64
import hashlib
import html
import json
import os
import random
import re
import secrets
import tempfile
import time
import unittest
import urllib.parse

import jwt
import requests

from harness import Server, wait_for

CLIENTS = [
    {"id": "test-app", "redirect_uris": ["https://app.example/cb"], "wwsf": "https://app.example"},
    {"id": "test-rs", "secret": "rs-secret-123", "redirect_uris": ["https://rs.example/cb"], "wwsf": "https://rs.example"},
]
SECRETS_SEEN = set()


def pkce():
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


class WebAuthTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        clients = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
        json.dump(CLIENTS, clients)
        clients.close()
        cls.server = Server("--waf-clients", clients.name, "--log-level", "trace")
        s = cls.server
        SECRETS_SEEN.add(s.demo_password)
        cls.http = requests.Session()
        cls.http.verify = s.ca
        s.cli("subscriber", "add", "--impi", "bob@ims.example.com", "--impu", "sip:bob@ims.example.com",
              "--password", "bob-sip-pw-1")
        s.cli("account", "add", "--username", "bob", "--password", "bob-web-pw-1", "--impi", "bob@ims.example.com")
        s.cli("account", "add", "--username", "mallory", "--password", "mallory-pw-9", "--impi", "bob@ims.example.com")
        SECRETS_SEEN.update(["bob-sip-pw-1", "bob-web-pw-1", "mallory-pw-9", "rs-secret-123"])

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        # No password, token, code or session cookie in anything the server wrote, at
        # trace level, except the demo credentials it prints once on purpose.
        log = "\n".join(l for l in cls.server.log.splitlines() if "demo web account" not in l)
        for secret in SECRETS_SEEN:
            assert secret not in log, "a secret reached the log"

    # Helpers

    def login(self, user="bob", password="bob-web-pw-1"):
        session = requests.Session()
        session.verify = self.server.ca
        r = session.post(self.server.wwsf + "/api/login", json={"username": user, "password": password},
                         headers={"Origin": self.server.wwsf})
        self.assertEqual(r.status_code, 200, r.text)
        SECRETS_SEEN.add(session.cookies.get("__Host-webims-session"))
        return session, r.json()["csrf"]

    def jwks(self):
        return self.http.get(self.server.waf + "/jwks.json").json()

    def verify(self, token):
        header = jwt.get_unverified_header(token)
        key = next(k for k in self.jwks()["keys"] if k["kid"] == header["kid"])
        return header, jwt.decode(token, jwt.PyJWK(key).key, algorithms=["ES256"],
                                  audience="https://epcscf.ims.example.com", issuer=self.server.waf)

    def authorize(self, client="test-app", redirect="https://app.example/cb", user="bob", password="bob-web-pw-1"):
        verifier, challenge = pkce()
        browser = requests.Session()
        browser.verify = self.server.ca
        params = {"response_type": "code", "client_id": client, "redirect_uri": redirect, "state": "st-1",
                  "code_challenge": challenge, "code_challenge_method": "S256", "scope": "ims-register"}
        form = browser.get(self.server.waf + "/authorize", params=params, allow_redirects=False)
        self.assertEqual(form.status_code, 200)
        fields = {html.unescape(n): html.unescape(v)
                  for n, v in re.findall(r'<input type="hidden" name="([^"]*)" value="([^"]*)">', form.text)}
        fields.update({"username": user, "password": password})
        answer = browser.post(self.server.waf + "/authorize", data=fields, allow_redirects=False,
                              headers={"Origin": self.server.waf})
        return answer, verifier, browser

    def code_from(self, answer):
        self.assertEqual(answer.status_code, 302, answer.text)
        location = urllib.parse.urlparse(answer.headers["Location"])
        query = urllib.parse.parse_qs(location.query)
        self.assertEqual(query["state"], ["st-1"])
        self.assertEqual(query["iss"], [self.server.waf])
        SECRETS_SEEN.add(query["code"][0])
        return query["code"][0]

    def token_request(self, code, verifier, client="test-app", redirect="https://app.example/cb"):
        return self.http.post(self.server.waf + "/token", data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": redirect,
            "code_verifier": verifier, "client_id": client})

    def introspect(self, token, auth=("test-rs", "rs-secret-123")):
        return self.http.post(self.server.waf + "/introspect", data={"token": token}, auth=auth)

    # Metadata and keys

    def test_metadata_and_jwks(self):
        meta = self.http.get(self.server.waf + "/.well-known/oauth-authorization-server").json()
        self.assertEqual(meta["issuer"], self.server.waf)
        for name in ["authorization_endpoint", "token_endpoint", "jwks_uri", "introspection_endpoint"]:
            self.assertTrue(meta[name].startswith(self.server.waf + "/"), name)
        self.assertEqual(meta["code_challenge_methods_supported"], ["S256"])
        keys = self.jwks()["keys"]
        self.assertGreaterEqual(len(keys), 1)
        for k in keys:
            self.assertEqual((k["kty"], k["crv"], k["alg"], k["use"]), ("EC", "P-256", "ES256", "sig"))
            self.assertNotIn("d", k)  # never the private part
        discovery = self.http.get(self.server.wwsf + "/.well-known/webims").json()
        self.assertEqual(discovery["epcscf"], self.server.epcscf)
        self.assertEqual(discovery["waf_issuer"], self.server.waf)
        self.assertEqual(discovery["home_domain"], "ims.example.com")

    def test_security_headers(self):
        r = self.http.get(self.server.wwsf + "/.well-known/webims")
        csp = r.headers["Content-Security-Policy"]
        self.assertIn("connect-src 'self' " + self.server.epcscf, csp)
        self.assertIn("frame-ancestors 'none'", csp)
        self.assertIn("default-src 'self'", csp)
        self.assertEqual(r.headers["X-Content-Type-Options"], "nosniff")
        self.assertIn("max-age=", r.headers["Strict-Transport-Security"])
        r = self.http.get(self.server.waf + "/jwks.json")
        self.assertIn("frame-ancestors 'none'", r.headers["Content-Security-Policy"])

    # The WWSF's own login and token endpoint

    def test_login_cookie_flags_and_token_claims(self):
        session = requests.Session()
        session.verify = self.server.ca
        r = session.post(self.server.wwsf + "/api/login", json={"username": "bob", "password": "bob-web-pw-1"})
        self.assertEqual(r.status_code, 200)
        cookie = r.headers["Set-Cookie"]
        self.assertTrue(cookie.startswith("__Host-webims-session="))
        for flag in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"]:
            self.assertIn(flag, cookie)
        SECRETS_SEEN.add(session.cookies.get("__Host-webims-session"))
        csrf = r.json()["csrf"]
        t = session.post(self.server.wwsf + "/api/token", headers={"X-CSRF-Token": csrf})
        self.assertEqual(t.status_code, 200, t.text)
        self.assertEqual(t.headers["Cache-Control"], "no-store")
        body = t.json()
        SECRETS_SEEN.add(body["token"])
        header, claims = self.verify(body["token"])
        self.assertEqual(header["typ"], "at+jwt")
        self.assertEqual(header["alg"], "ES256")
        for name in ["iss", "aud", "sub", "exp", "iat", "jti", "client_id", "scope", "impi", "impu", "wwsf"]:
            self.assertIn(name, claims)
        self.assertEqual(claims["impi"], "bob@ims.example.com")
        self.assertEqual(claims["impu"], ["sip:bob@ims.example.com"])
        self.assertEqual(claims["sub"], "bob@ims.example.com")
        self.assertEqual(claims["wwsf"], self.server.wwsf)
        self.assertEqual(claims["scope"], "ims-register")
        self.assertEqual(claims["exp"] - claims["iat"], 3600)
        self.assertEqual(body["epcscf"], self.server.epcscf)
        # Logged out: the session is gone.
        self.assertEqual(session.post(self.server.wwsf + "/api/logout", headers={"X-CSRF-Token": csrf}).status_code, 200)
        self.assertEqual(session.post(self.server.wwsf + "/api/token", headers={"X-CSRF-Token": csrf}).status_code, 401)

    def test_csrf_is_refused(self):
        session, csrf = self.login()
        self.assertEqual(session.post(self.server.wwsf + "/api/token").status_code, 403)
        self.assertEqual(session.post(self.server.wwsf + "/api/token", headers={"X-CSRF-Token": "x" + csrf}).status_code, 403)
        # Login from a foreign page, or as a plain form post, is refused.
        r = self.http.post(self.server.wwsf + "/api/login", json={"username": "bob", "password": "bob-web-pw-1"},
                           headers={"Origin": "https://evil.example"})
        self.assertEqual(r.status_code, 403)
        r = self.http.post(self.server.wwsf + "/api/login", data={"username": "bob", "password": "bob-web-pw-1"})
        self.assertEqual(r.status_code, 415)
        # The WAF's login form without its CSRF token.
        verifier, challenge = pkce()
        r = self.http.post(self.server.waf + "/authorize", data={
            "response_type": "code", "client_id": "test-app", "redirect_uri": "https://app.example/cb",
            "code_challenge": challenge, "code_challenge_method": "S256", "username": "bob",
            "password": "bob-web-pw-1"}, allow_redirects=False)
        self.assertEqual(r.status_code, 403)

    def test_lockout_after_repeated_failures(self):
        url = self.server.wwsf + "/api/login"
        codes = [self.http.post(url, json={"username": "mallory", "password": "wrong-%d" % i}).status_code
                 for i in range(5)]
        self.assertEqual(codes[:4], [401] * 4)
        self.assertEqual(codes[4], 429)
        # Even the right password is refused while locked, with a readable reason.
        r = self.http.post(url, json={"username": "mallory", "password": "mallory-pw-9"})
        self.assertEqual(r.status_code, 429)
        self.assertIn("locked", r.json()["error_description"])
        self.assertIn("Retry-After", r.headers)
        # An unknown user gets the same answer as a wrong password.
        r = self.http.post(url, json={"username": "nobody", "password": "x"})
        self.assertEqual((r.status_code, r.json()["error"]), (401, "invalid_credentials"))
        # The operator lifts it with a new password.
        self.server.cli("account", "passwd", "--username", "mallory", "--password", "mallory-pw-9")
        self.assertEqual(self.http.post(url, json={"username": "mallory", "password": "mallory-pw-9"}).status_code, 200)

    def login_from(self, source, user, password):
        """POST /api/login from a given loopback source address; (status, JSON, seconds)."""
        import http.client
        import ssl
        host, port = urllib.parse.urlparse(self.server.wwsf).netloc.rsplit(":", 1)
        context = ssl.create_default_context(cafile=self.server.ca)
        connection = http.client.HTTPSConnection(host, int(port), context=context, source_address=(source, 0))
        body = json.dumps({"username": user, "password": password})
        started = time.monotonic()
        connection.request("POST", "/api/login", body, {"Content-Type": "application/json"})
        answer = connection.getresponse()
        data = json.loads(answer.read() or b"{}")
        elapsed = time.monotonic() - started
        connection.close()
        return answer.status, data, elapsed

    def test_item12_lockout_tells_nothing_and_is_per_account_and_source(self):
        # Issue 26 item 12. An unknown user name and a known one with a wrong password: the
        # same answers, locked after five, after about the same work (PBKDF2 both ways).
        self.server.cli("subscriber", "add", "--impi", "dora@ims.example.com", "--impu", "sip:dora@ims.example.com",
                        "--password", "dora-sip-pw")
        self.server.cli("account", "add", "--username", "dora", "--password", "dora-web-pw", "--impi",
                        "dora@ims.example.com")
        SECRETS_SEEN.update(["dora-sip-pw", "dora-web-pw"])
        known = [self.login_from("127.0.0.3", "dora", "wrong-%d" % i) for i in range(6)]
        unknown = [self.login_from("127.0.0.3", "no-such-user-x", "wrong-%d" % i) for i in range(6)]
        self.assertEqual([(c, d.get("error")) for c, d, _ in known], [(c, d.get("error")) for c, d, _ in unknown])
        self.assertEqual([c for c, _, _ in known], [401, 401, 401, 401, 429, 429])
        median = lambda xs: sorted(xs)[len(xs) // 2]
        t_known, t_unknown = median([t for _, _, t in known]), median([t for _, _, t in unknown])
        self.assertLess(max(t_known, t_unknown) / max(min(t_known, t_unknown), 1e-6), 3.0, (t_known, t_unknown))
        # The owner, from another address, is not locked out by that third party.
        code, data, _ = self.login_from("127.0.0.4", "dora", "dora-web-pw")
        self.assertEqual(code, 200, data)
        # From the guesser's address the account stays locked, even with the right password.
        self.assertEqual(self.login_from("127.0.0.3", "dora", "dora-web-pw")[0], 429)

    # Authorization code + PKCE

    def test_pkce_code_flow(self):
        answer, verifier, _ = self.authorize()
        code = self.code_from(answer)
        r = self.token_request(code, verifier)
        self.assertEqual(r.status_code, 200, r.text)
        body = r.json()
        SECRETS_SEEN.add(body["access_token"])
        self.assertEqual(body["token_type"], "Bearer")
        _, claims = self.verify(body["access_token"])
        self.assertEqual(claims["client_id"], "test-app")
        self.assertEqual(claims["wwsf"], "https://app.example")
        self.assertEqual(claims["impi"], "bob@ims.example.com")
        # The code is single use: a replay fails and revokes what the code gave.
        again = self.token_request(code, verifier)
        self.assertEqual((again.status_code, again.json()["error"]), (400, "invalid_grant"))
        self.assertFalse(self.introspect(body["access_token"]).json()["active"])

    def test_pkce_wrong_verifier(self):
        answer, verifier, _ = self.authorize()
        code = self.code_from(answer)
        r = self.token_request(code, verifier[:-1] + ("A" if verifier[-1] != "A" else "B"))
        self.assertEqual((r.status_code, r.json()["error"]), (400, "invalid_grant"))

    def test_unregistered_redirect_is_not_followed(self):
        verifier, challenge = pkce()
        r = self.http.get(self.server.waf + "/authorize", params={
            "response_type": "code", "client_id": "test-app", "redirect_uri": "https://evil.example/cb",
            "code_challenge": challenge, "code_challenge_method": "S256"}, allow_redirects=False)
        self.assertEqual(r.status_code, 400)
        self.assertNotIn("Location", r.headers)

    def test_pkce_is_required(self):
        r = self.http.get(self.server.waf + "/authorize", params={
            "response_type": "code", "client_id": "test-app", "redirect_uri": "https://app.example/cb",
            "state": "st-1"}, allow_redirects=False)
        self.assertEqual(r.status_code, 302)
        query = urllib.parse.parse_qs(urllib.parse.urlparse(r.headers["Location"]).query)
        self.assertEqual(query["error"], ["invalid_request"])
        plain = self.http.get(self.server.waf + "/authorize", params={
            "response_type": "code", "client_id": "test-app", "redirect_uri": "https://app.example/cb",
            "code_challenge": "abc", "code_challenge_method": "plain"}, allow_redirects=False)
        self.assertEqual(plain.status_code, 302)
        self.assertIn("error=invalid_request", plain.headers["Location"])

    def test_wrong_password_at_the_waf_shows_the_form_again(self):
        answer, _, _ = self.authorize(password="not-it")
        self.assertEqual(answer.status_code, 401)
        self.assertIn("Wrong user name or password", answer.text)
        self.assertNotIn("Location", answer.headers)

    # Introspection, revocation, rotation

    def test_introspection(self):
        issued = self.server.cli("token", "issue", "--account", "bob").strip()
        SECRETS_SEEN.add(issued)
        r = self.introspect(issued)
        self.assertEqual(r.status_code, 200)
        self.assertTrue(r.json()["active"])
        self.assertEqual(r.json()["impi"], "bob@ims.example.com")
        # Without client authentication, or as a public client: refused.
        self.assertEqual(self.http.post(self.server.waf + "/introspect", data={"token": issued}).status_code, 401)
        self.assertEqual(self.introspect(issued, auth=("test-rs", "wrong")).status_code, 401)
        self.assertEqual(self.introspect(issued, auth=("test-app", "")).status_code, 401)
        # Garbage and forged tokens are simply inactive.
        self.assertFalse(self.introspect("not.a.token").json()["active"])
        self.assertFalse(self.introspect(issued[:-4] + "AAAA").json()["active"])
        # Expired.
        short = self.server.cli("token", "issue", "--account", "bob", "--ttl", "1").strip()
        SECRETS_SEEN.add(short)
        time.sleep(2.2)
        self.assertFalse(self.introspect(short).json()["active"])
        # Revoked (RFC 7009), by the client it was issued to.
        r = self.http.post(self.server.waf + "/revoke", data={"token": issued}, auth=("webims-wwsf", self.wwsf_secret()))
        self.assertEqual(r.status_code, 200)
        self.assertFalse(self.introspect(issued).json()["active"])

    def test_item02_no_markup_injection_on_the_login_page(self):
        # Issue 26 item 2: the login form, parsed by a real HTML parser, gives back each
        # reflected value exactly and holds exactly the elements the WAF wrote, for values
        # rich in quotes, angle brackets, combining marks (U+0301 ...) and prefixed
        # marks (U+0600); unknown parameters are not in the page at all; and the page may
        # post nowhere else and not be framed.
        from html.parser import HTMLParser

        class Page(HTMLParser):
            def __init__(self):
                super().__init__(convert_charrefs=True)
                self.elements, self.inputs = [], {}

            def handle_starttag(self, tag, attrs):
                self.elements.append(tag)
                attrs = dict(attrs)
                if tag == "input" and attrs.get("type") == "hidden":
                    self.inputs[attrs.get("name")] = attrs.get("value")

        rng = random.Random(2612)
        alphabet = ['"', "'", "<", ">", "&", "/", "=", " ", "a", "Z", "\u0301", "\u0300", "\u0327", "\u0600",
                    "\u200d", "\ufe0f", "\U0001F600", "\u00e9", "e", "\t", ";", "#", "x"]
        expected_elements = None
        _, challenge = pkce()
        for i in range(150):
            value = "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 24)))
            params = {"response_type": "code", "client_id": "test-app", "redirect_uri": "https://app.example/cb",
                      "state": value, "code_challenge": challenge, "code_challenge_method": "S256",
                      "scope": "ims-register", "evil" + str(i): value, "action": "https://evil.example/steal"}
            r = self.http.get(self.server.waf + "/authorize", params=params, allow_redirects=False)
            self.assertEqual(r.status_code, 200, r.text)
            page = Page()
            page.feed(r.text)
            page.close()
            self.assertEqual(page.inputs.get("state"), value, repr(value))
            self.assertNotIn("evil" + str(i), page.inputs)
            self.assertNotIn("action", page.inputs)
            if expected_elements is None:
                expected_elements = page.elements
            self.assertEqual(page.elements, expected_elements, repr(value))
            self.assertEqual(page.elements.count("form"), 1)
        policy = r.headers["Content-Security-Policy"]
        self.assertIn("form-action 'self' https://app.example", policy)
        self.assertIn("frame-ancestors 'none'", policy)
        for path in ("/jwks.json", "/.well-known/oauth-authorization-server", "/authorize"):
            policy = self.http.get(self.server.waf + path).headers["Content-Security-Policy"]
            self.assertIn("form-action 'self'", policy, path)
            self.assertIn("frame-ancestors 'none'", policy, path)
        policy = self.http.get(self.server.wwsf + "/").headers["Content-Security-Policy"]
        self.assertIn("form-action 'self'", policy)
        self.assertIn("frame-ancestors 'none'", policy)

    def wwsf_secret(self):
        # Shared by every node on the database (issue 32), so kept there.
        import sqlite3
        db = sqlite3.connect(os.path.join(self.server.data_dir, "webims.sqlite"))
        try:
            (value,) = db.execute("SELECT value FROM shared_secrets WHERE name = 'waf-client-secret'").fetchone()
        finally:
            db.close()
        secret = base64.urlsafe_b64encode(value).rstrip(b"=").decode()
        SECRETS_SEEN.add(secret)
        return secret

    def test_item11_only_the_client_a_token_was_issued_to_may_revoke_it(self):
        # Issue 26 item 11, RFC 7009 §2.1: another client, confidential or public, is refused
        # and the token stays active.
        issued = self.server.cli("token", "issue", "--account", "bob").strip()
        SECRETS_SEEN.add(issued)
        for auth in (("test-rs", "rs-secret-123"), ("test-app", "")):
            r = self.http.post(self.server.waf + "/revoke", data={"token": issued}, auth=auth)
            self.assertEqual(r.status_code, 400, r.text)
            self.assertEqual(r.json()["error"], "unauthorized_client")
            self.assertTrue(self.introspect(issued).json()["active"])
        r = self.http.post(self.server.waf + "/revoke", data={"token": issued}, auth=("webims-wwsf", self.wwsf_secret()))
        self.assertEqual(r.status_code, 200)
        self.assertFalse(self.introspect(issued).json()["active"])

    def test_revoke_all_tokens_of_a_user(self):
        session, csrf = self.login()
        token = session.post(self.server.wwsf + "/api/token", headers={"X-CSRF-Token": csrf}).json()["token"]
        SECRETS_SEEN.add(token)
        self.assertTrue(self.introspect(token).json()["active"])
        time.sleep(1.1)  # tokens issued up to and including this second are revoked
        self.server.cli("token", "revoke", "--account", "bob")
        self.assertFalse(self.introspect(token).json()["active"])
        # Its web sessions ended too.
        self.assertEqual(session.post(self.server.wwsf + "/api/token", headers={"X-CSRF-Token": csrf}).status_code, 401)
        time.sleep(1.1)
        session, csrf = self.login()
        fresh = session.post(self.server.wwsf + "/api/token", headers={"X-CSRF-Token": csrf}).json()["token"]
        SECRETS_SEEN.add(fresh)
        self.assertTrue(self.introspect(fresh).json()["active"])

    def test_key_rotation_overlap(self):
        before = self.server.cli("token", "issue", "--account", "bob").strip()
        SECRETS_SEEN.add(before)
        old_kid = jwt.get_unverified_header(before)["kid"]
        out = self.server.cli("waf", "rotate-key", "--publish-ahead", "0")
        new_kid = re.search(r"new signing key ([A-Za-z0-9_-]+)", out).group(1)
        # The running WAF publishes the new key within its reload period, keeping the old.
        kids = wait_for(lambda: {k["kid"] for k in self.jwks()["keys"]} >= {old_kid, new_kid} and
                        {k["kid"] for k in self.jwks()["keys"]}, timeout=15)
        self.assertTrue(kids, "the new key was not published")
        session, csrf = self.login()
        after = wait_for(lambda: (lambda t: jwt.get_unverified_header(t)["kid"] == new_kid and t)(
            session.post(self.server.wwsf + "/api/token", headers={"X-CSRF-Token": csrf}).json()["token"]))
        self.assertTrue(after, "the new key does not sign")
        SECRETS_SEEN.add(after)
        # Both verify during the overlap, with keys from the published JWKS alone.
        self.verify(before)
        self.verify(after)
        self.assertTrue(self.introspect(before).json()["active"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
