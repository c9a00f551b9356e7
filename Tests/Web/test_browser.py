"""Issue 6: the WIC and its demo page in real headless Chromium against the real
`webims serve`. Every test checks the S-CSCF's own state (the binding store through
`webims registrations`), not only the page."""
import json
import os
import time
import unittest

from selenium.webdriver.common.by import By

import browser
from harness import ROOT, Server, free_port, wait_for


def bindings(server, impu=None):
    args = ["registrations", "--json"] + (["--impu", impu] if impu else [])
    return [json.loads(line) for line in server.cli(*args).splitlines() if line.strip()]


class BrowserTests(unittest.TestCase):
    server = None

    @classmethod
    def setUpClass(cls):
        # Fixed ports, so a restarted server is where the page expects it.
        cls.ports = dict(wss_port=free_port(), wwsf_port=free_port(), waf_port=free_port(), sip_port=free_port())
        cls.server = Server("--token-lifetime", "20", "--flow-close-grace", "1", **cls.ports)
        cls.server.cli("subscriber", "add", "--impi", "carol@ims.example.com", "--impu", "sip:carol@ims.example.com",
                       "--password", "carol-sip-pw")
        cls.server.cli("account", "add", "--username", "carol", "--password", "carol-web-pw",
                       "--impi", "carol@ims.example.com")

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def setUp(self):
        self.driver = browser.chromium(self.server)
        self.addCleanup(self.driver.quit)

    def open(self):
        self.driver.get(self.server.wwsf + "/")

    def text(self, element_id):
        return self.driver.find_element(By.ID, element_id).text

    def log_in(self, user, password, mode="token", digest=None):
        d = self.driver
        d.find_element(By.ID, "username").send_keys(user)
        d.find_element(By.ID, "password").send_keys(password)
        if mode == "digest":
            d.find_element(By.CSS_SELECTOR, "input[name=mode][value=digest]").click()
            d.find_element(By.ID, "impi").send_keys(digest["impi"])
            d.find_element(By.ID, "impu").send_keys(digest["impu"])
            d.find_element(By.ID, "sip-password").send_keys(digest["password"])
        d.find_element(By.ID, "login-button").click()

    def wait_state(self, state, timeout=20):
        ok = wait_for(lambda: self.text("state") == state, timeout=timeout)
        self.assertTrue(ok, "page state %r, error %r" % (self.text("state"), self.text("error")))

    def test_token_registration_and_logout(self):
        self.open()
        self.log_in(self.server.demo_user, self.server.demo_password)
        self.wait_state("registered")
        self.assertEqual(self.text("impu-value"), self.server.demo_impu)
        self.assertIn(self.server.demo_impu, self.text("associated"))
        self.assertIn("fl-", self.text("flow"))
        found = bindings(self.server, self.server.demo_impu)
        self.assertEqual(len(found), 1)
        self.assertEqual(found[0]["scheme"], "tna")
        # The token capped the registration at its 20 s lifetime.
        self.assertLessEqual(found[0]["expires_in"], 20)
        # The SIP trace shows the exchange, never the token.
        self.driver.find_element(By.ID, "trace-toggle").click()
        trace = self.text("trace")
        self.assertIn("REGISTER sip:ims.example.com SIP/2.0", trace)
        self.assertIn("SIP/2.0 200 OK", trace)
        self.assertIn("Bearer [token]", trace)
        self.assertNotIn("Bearer eyJ", trace)
        # WIC-12: it subscribed to its reg event; the full-state NOTIFY came down its flow.
        self.assertTrue(wait_for(lambda: "NOTIFY " in self.text("trace"), timeout=10), "no reg-event NOTIFY")
        trace = self.text("trace")
        self.assertIn("SUBSCRIBE sip:alice@ims.example.com SIP/2.0", trace)
        self.assertIn("Event: reg", trace)
        self.assertIn('state="active"', trace)
        if os.environ.get("WEBIMS_SCREENSHOT"):
            self.driver.save_screenshot(os.environ["WEBIMS_SCREENSHOT"])
        # Logout de-registers at the S-CSCF.
        self.driver.find_element(By.ID, "logout-button").click()
        self.wait_state("not registered")
        self.assertTrue(wait_for(lambda: not bindings(self.server, self.server.demo_impu), timeout=10))

    def test_digest_registration(self):
        self.open()
        self.log_in("carol", "carol-web-pw", mode="digest", digest={
            "impi": "carol@ims.example.com", "impu": "sip:carol@ims.example.com", "password": "carol-sip-pw"})
        self.wait_state("registered")
        found = bindings(self.server, "sip:carol@ims.example.com")
        self.assertEqual([b["scheme"] for b in found], ["digest"])
        self.driver.find_element(By.ID, "logout-button").click()
        self.assertTrue(wait_for(lambda: not bindings(self.server, "sip:carol@ims.example.com"), timeout=10))

    def test_wrong_password_is_readable(self):
        self.open()
        self.log_in("carol", "not-the-password")
        self.assertTrue(wait_for(lambda: self.text("error"), timeout=10))
        self.assertEqual(self.text("error"), "Wrong user name or password.")
        self.assertEqual(bindings(self.server, "sip:carol@ims.example.com"), [])

    def test_short_token_refreshes_without_a_gap(self):
        """20 s tokens: over 45 s the page refreshes (new token each time) and the S-CSCF
        never loses the binding."""
        self.open()
        self.log_in("carol", "carol-web-pw")
        self.wait_state("registered")
        call_ids, cseqs = set(), set()
        deadline = time.time() + 45
        while time.time() < deadline:
            found = bindings(self.server, "sip:carol@ims.example.com")
            self.assertEqual(len(found), 1, "the binding went missing")
            self.assertGreater(found[0]["expires_in"], 0)
            call_ids.add(found[0]["call_id"])
            cseqs.add(found[0]["cseq"])
            time.sleep(1)
        self.assertEqual(len(call_ids), 1)  # refreshes keep the Call-ID
        self.assertGreaterEqual(len(cseqs), 4)  # at least three refreshes happened
        self.driver.find_element(By.ID, "logout-button").click()
        self.assertTrue(wait_for(lambda: not bindings(self.server, "sip:carol@ims.example.com"), timeout=10))

    def test_server_restart_reconnects_and_reregisters(self):
        self.open()
        self.log_in("carol", "carol-web-pw")
        self.wait_state("registered")
        before = bindings(self.server, "sip:carol@ims.example.com")[0]["path"]
        self.server.restart()
        # The page notices, backs off, reconnects and registers on a new flow by itself.
        self.assertTrue(wait_for(lambda: bindings(self.server, "sip:carol@ims.example.com") and
                                 bindings(self.server, "sip:carol@ims.example.com")[0]["path"] != before, timeout=60),
                        "no re-registration after the restart; page says %r" % self.text("state"))
        self.wait_state("registered")
        # One binding, not two: the same +sip.instance replaced the old one.
        self.assertEqual(len(bindings(self.server, "sip:carol@ims.example.com")), 1)
        self.driver.find_element(By.ID, "logout-button").click()
        self.assertTrue(wait_for(lambda: not bindings(self.server, "sip:carol@ims.example.com"), timeout=10))

    def test_reload_keeps_one_binding(self):
        self.open()
        self.log_in("carol", "carol-web-pw")
        self.wait_state("registered")
        self.driver.refresh()
        self.wait_state("registered")
        time.sleep(2)  # past the flow-close grace of the old page's flow
        self.assertEqual(len(bindings(self.server, "sip:carol@ims.example.com")), 1)
        self.driver.find_element(By.ID, "logout-button").click()
        self.assertTrue(wait_for(lambda: not bindings(self.server, "sip:carol@ims.example.com"), timeout=10))


if __name__ == "__main__":
    unittest.main(verbosity=2)
