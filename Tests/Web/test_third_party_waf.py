"""A third-party WAF (issue 4 §4, issue 5 §4): node B's eP-CSCF trusts node A's WAF by
its issuer URL, fetches A's keys over HTTPS from A's metadata, fetches again when A
rotates, and B's S-CSCF admits A's tokens only for subscriptions whose HSS entry lists
A as an allowed WAF."""
import time
import unittest

import sipws
from harness import Server


class ThirdPartyWAFTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.a = Server()
        cls.b = Server("--waf-issuer", cls.a.waf, "--waf-ca", cls.a.ca, "--allowed-origin", cls.a.wwsf)
        a = cls.a
        for impi, extra in [("tp", ["--allowed-waf", a.waf, "--allowed-wwsf", a.wwsf]), ("nowaf", []),
                            ("hostonly", ["--allowed-waf", "localhost", "--allowed-wwsf", a.wwsf]),
                            ("nowwsf", ["--allowed-waf", a.waf])]:
            for node in (cls.a, cls.b):
                node.cli("subscriber", "add", "--impi", "%s@ims.example.com" % impi,
                         "--impu", "sip:%s@ims.example.com" % impi, "--password", "x-%s" % impi, *extra)
            cls.a.cli("account", "add", "--username", impi, "--password", "pw-%s" % impi,
                      "--impi", "%s@ims.example.com" % impi)

    @classmethod
    def tearDownClass(cls):
        cls.a.stop()
        cls.b.stop()

    def register_at_b(self, account):
        token = self.a.cli("token", "issue", "--account", account).strip()
        wic = sipws.WIC(self.b.epcscf, self.a.wwsf, self.b.ca, "sip:%s@ims.example.com" % account)
        try:
            return wic.register("Bearer " + token)
        finally:
            wic.close()

    def test_tokens_of_the_other_waf(self):
        r = self.register_at_b("tp")
        self.assertEqual(r.status, 200, r.text)
        # Not in the subscription's list of allowed WAFs: refused by B's S-CSCF.
        self.assertEqual(self.register_at_b("nowaf").status, 403)
        # A rotates; B meets the new kid, fetches A's JWKS again, and accepts it.
        self.a.cli("waf", "rotate-key", "--publish-ahead", "0")
        time.sleep(6)  # A's WAF reloads its keys every 5 s
        r = self.register_at_b("tp")
        self.assertEqual(r.status, 200, r.text)

    def test_item14_the_whole_waf_and_the_wwsf_are_checked(self):
        # Issue 26 item 14: the WAF is named by its issuer URL, not its host, and the
        # third-party WWSF (the token's wwsf) must be allowed too.
        self.assertEqual(self.register_at_b("hostonly").status, 403)
        self.assertEqual(self.register_at_b("nowwsf").status, 403)
        self.assertEqual(self.register_at_b("tp").status, 200)


if __name__ == "__main__":
    unittest.main(verbosity=2)
