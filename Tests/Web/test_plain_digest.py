"""Issue 27: standard WebRTC SIP clients (JsSIP, SIP.js) send their first REGISTER without
any Authorization and answer the Digest challenge they get. Over WSS through the real
eP-CSCF and S-CSCF of `webims serve`."""
import hashlib
import re
import unittest

import sipws
from harness import ServerTestCase


def md5(text):
    return hashlib.md5(text.encode()).hexdigest()


class PlainDigestTests(ServerTestCase):
    def test_a_jssip_style_registration_with_ims_credentials(self):
        s = self.server
        w = sipws.WIC(s.epcscf, s.wwsf, s.ca, s.demo_impu)
        self.addCleanup(w.close)
        # 1. REGISTER, no Authorization: the S-CSCF's Digest challenge, and the eP-CSCF's
        #    Bearer one beside it (RFC 8898 §2.4), so the client may take either.
        first = w.register()
        self.assertEqual(first.status, 401, first.text)
        challenges = first.all("www-authenticate")
        self.assertTrue(any(c.startswith("Digest ") for c in challenges), challenges)
        self.assertTrue(any(c.startswith("Bearer ") and "error=" not in c for c in challenges), challenges)
        digest = next(c for c in challenges if c.startswith("Digest ") and "algorithm=MD5" in c)
        realm = re.search(r'realm="([^"]+)"', digest).group(1)
        nonce = re.search(r'nonce="([^"]+)"', digest).group(1)
        # 2. The answer, as JsSIP computes it: the username is the IMPI the user typed.
        ha1 = md5("%s:%s:%s" % (s.demo_impi, realm, s.demo_sip_password))
        ha2 = md5("REGISTER:sip:ims.example.com")
        response = md5("%s:%s:00000001:abcdef01:auth:%s" % (ha1, nonce, ha2))
        ok = w.register('Digest algorithm=MD5, username="%s", realm="%s", nonce="%s", uri="sip:ims.example.com", '
                        'response="%s", qop=auth, cnonce="abcdef01", nc=00000001' % (s.demo_impi, realm, nonce,
                                                                                    response))
        self.assertEqual(ok.status, 200, ok.text)
        self.assertIn(s.demo_impu, s.cli("registrations"))

    def test_an_unknown_identity_gets_the_bearer_challenge_alone(self):
        s = self.server
        w = sipws.WIC(s.epcscf, s.wwsf, s.ca, "sip:nobody-here@ims.example.com")
        self.addCleanup(w.close)
        r = w.register()
        self.assertEqual(r.status, 401, r.text)
        challenges = r.all("www-authenticate")
        self.assertEqual(len(challenges), 1, challenges)
        self.assertTrue(challenges[0].startswith("Bearer "), challenges)
        self.assertNotIn("error=", challenges[0])


if __name__ == "__main__":
    unittest.main(verbosity=2)
