"""Issue 3: `webims subscriber add|list|show|remove|bar|unbar` and `webims account add`,
against the store of a running serve: what they print, what they refuse, and that a
registration sees each change."""
import hashlib
import re
import subprocess
import unittest

import sipws
from harness import BINARY, ServerTestCase, wait_for

DOMAIN = "ims.example.com"
IMPI = "dave@" + DOMAIN
IMPU = "sip:dave@" + DOMAIN
PASSWORD = "dave-sip-secret"


def md5(s):
    return hashlib.md5(s.encode()).hexdigest()


class ProvisioningTests(ServerTestCase):
    def cli(self, *args):
        """Runs a command on the server's data; returns (exit status, stdout, stderr)."""
        r = subprocess.run([BINARY, *args, "--data-dir", self.server.data_dir], capture_output=True, text=True,
                           timeout=60)
        return r.returncode, r.stdout, r.stderr

    def digest_register(self, impu=IMPU):
        """A Digest registration over WSS: the final status."""
        s = self.server
        wic = sipws.WIC(s.epcscf, s.wwsf, s.ca, impu)
        try:
            auth = 'Digest username="%s", realm="%s", uri="sip:%s", nonce="", response=""' % (IMPI, DOMAIN, DOMAIN)
            first = wic.register(auth)
            if first.status != 401:
                return first.status
            nonce = re.search(r'nonce="([^"]+)"', first.header("WWW-Authenticate")).group(1)
            ha1 = md5("%s:%s:%s" % (IMPI, DOMAIN, PASSWORD))
            response = md5("%s:%s:00000001:c0ffee:auth:%s" % (ha1, nonce, md5("REGISTER:sip:" + DOMAIN)))
            return wic.register('Digest username="%s", realm="%s", uri="sip:%s", nonce="%s", algorithm=MD5, '
                                'qop=auth, nc=00000001, cnonce="c0ffee", response="%s"'
                                % (IMPI, DOMAIN, DOMAIN, nonce, response)).status
        finally:
            wic.close()

    def test_subscriber_life_cycle_while_serving(self):
        code, out, err = self.cli("subscriber", "add", "--impi", IMPI, "--impu", IMPU, "--impu", "tel:+15551234",
                                  "--password", PASSWORD)
        self.assertEqual(code, 0, err)
        self.assertIn("subscriber %s: %s, tel:+15551234 [digest,tna]" % (IMPI, IMPU), out)
        code, out, _ = self.cli("subscriber", "list")
        self.assertIn("%s\t%s, tel:+15551234" % (IMPI, IMPU), out)
        code, out, _ = self.cli("subscriber", "show", "--impi", IMPI)
        self.assertEqual(code, 0)
        self.assertIn("impu:      " + IMPU, out)
        self.assertIn("digest:    HA1 stored", out)
        ha1 = md5("%s:%s:%s" % (IMPI, DOMAIN, PASSWORD))
        for secret in (PASSWORD, ha1):
            self.assertNotIn(secret, out)
        # The running S-CSCF sees the new subscriber at once.
        self.assertEqual(self.digest_register(), 200)

        # Barred: the registration is refused; unbarred: accepted again. The running HSS
        # sees a change to a subscriber it read within 2 s (docs/operating.md).
        code, out, err = self.cli("subscriber", "bar", "--impu", IMPU)
        self.assertEqual((code, out.strip()), (0, IMPU + " barred"), err)
        self.assertIn(IMPU + " (barred)", self.cli("subscriber", "list")[1])
        self.assertTrue(wait_for(lambda: self.digest_register() == 403, timeout=5, interval=0.5))
        self.assertEqual(self.cli("subscriber", "unbar", "--impu", IMPU)[0], 0)
        self.assertTrue(wait_for(lambda: self.digest_register() == 200, timeout=5, interval=0.5))

        # Removed: gone from the list, and not registrable.
        code, out, _ = self.cli("subscriber", "remove", "--impi", IMPI)
        self.assertEqual((code, out.strip()), (0, "removed " + IMPI))
        self.assertNotIn(IMPI, self.cli("subscriber", "list")[1])
        self.assertTrue(wait_for(lambda: self.digest_register() != 200, timeout=5, interval=0.5))
        code, _, err = self.cli("subscriber", "remove", "--impi", IMPI)
        self.assertNotEqual(code, 0)
        self.assertIn("no subscriber " + IMPI, err)

    def test_bad_arguments_are_refused_cleanly(self):
        cases = [
            (["subscriber", "add", "--impi", "e@x", "--impu", "not-a-uri"], "not a sip:, sips: or tel: URI"),
            (["subscriber", "add", "--impi", "e@x", "--impu", "https://e.example"], "not a sip:, sips: or tel: URI"),
            (["subscriber", "add", "--impi", "e@x", "--impu", "sip:e@x", "--aka-k", "zz"], "--aka-k takes 32 hex"),
            (["subscriber", "add", "--impi", "e@x", "--impu", "sip:e@x", "--aka-k", "0" * 32],
             "--aka-k needs --aka-opc or --aka-op"),
            (["subscriber", "add", "--impi", "e@x", "--impu", "sip:e@x", "--schemes", "magic"], "unknown scheme"),
            (["subscriber", "show", "--impi", "nobody@x"], "no subscriber nobody@x"),
            (["subscriber", "bar", "--impu", "sip:nobody@x"], "no subscriber has sip:nobody@x"),
            (["account", "add", "--username", "e", "--password", "pw-e-123", "--impi", "nobody@x"],
             "no subscriber nobody@x"),
        ]
        for args, message in cases:
            code, out, err = self.cli(*args)
            # Exit status 64 (a usage error), never a crash on the way out.
            self.assertEqual(code, 64, "%s: %s" % (args, err[-1500:]))
            self.assertIn(message, err, args)
        # Nothing half-written: e@x was never added.
        self.assertNotIn("e@x", self.cli("subscriber", "list")[1])

    def test_an_account_names_only_identities_of_its_impi(self):
        self.assertEqual(self.cli("subscriber", "add", "--impi", "fay@x.example", "--impu", "sip:fay@x.example",
                                  "--impu", "sip:fay.work@x.example", "--password", "pw")[0], 0)
        code, _, err = self.cli("account", "add", "--username", "fay", "--password", "fay-web-pw",
                                "--impi", "fay@x.example", "--impu", "sip:someone.else@x.example")
        self.assertEqual(code, 64)
        self.assertIn("sip:someone.else@x.example is not a public identity of fay@x.example", err)
        code, out, err = self.cli("account", "add", "--username", "fay", "--password", "fay-web-pw",
                                  "--impi", "fay@x.example", "--impu", "sip:fay.work@x.example")
        self.assertEqual(code, 0, err)
        self.assertIn("fay\tfay@x.example\tsip:fay.work@x.example", self.cli("account", "list")[1])


if __name__ == "__main__":
    unittest.main(verbosity=2)
