"""Issue 5: the WWSF and the WAF over real TLS, checked from outside with requests and
an independent JWT library (PyJWT)."""
import base64
import hashlib
import html
import json
import os
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
        # Revoked (RFC 7009).
        r = self.http.post(self.server.waf + "/revoke", data={"token": issued}, auth=("test-rs", "rs-secret-123"))
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
