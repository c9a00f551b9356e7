"""Issue 7: --sip-trace shows every SIP message with its flow and peer, secrets redacted."""
import hashlib
import re
import time
import unittest

import sipws
from harness import Server, free_port


def md5(s):
    return hashlib.md5(s.encode()).hexdigest()


class SIPTraceTests(unittest.TestCase):
    def test_trace_is_complete_and_redacted(self):
        # The eP-CSCF reaches its S-CSCF over TCP here (in one process it would call it
        # directly), so both hops are on the wire: plain TCP on loopback, a lab setting.
        port = free_port()
        s = Server("--sip-trace", "--scscf-uri", "sip:127.0.0.1:%d;transport=tcp" % port, "--trusted-node", "127.0.0.1",
                   "--lab-plain-sip-trust", sip_port=port)
        try:
            token = s.cli("token", "issue", "--account", s.demo_user).strip()
            wic = sipws.WIC(s.epcscf, s.wwsf, s.ca, s.demo_impu)
            self.assertEqual(wic.register("Bearer " + token).status, 200)
            # Digest over the same flow: the challenge, then the answer.
            first = wic.register('Digest username="%s", realm="ims.example.com", uri="sip:ims.example.com", '
                                 'nonce="", response=""' % s.demo_impi)
            self.assertEqual(first.status, 401)
            challenge = first.header("www-authenticate")
            nonce = re.search(r'nonce="([^"]+)"', challenge).group(1)
            ha1 = md5("%s:ims.example.com:%s" % (s.demo_impi, s.demo_sip_password))
            ha2 = md5("REGISTER:sip:ims.example.com")
            response = md5("%s:%s:00000001:c0ffee:auth:%s" % (ha1, nonce, ha2))
            r = wic.register('Digest username="%s", realm="ims.example.com", uri="sip:ims.example.com", '
                             'nonce="%s", algorithm=MD5, qop=auth, nc=00000001, cnonce="c0ffee", response="%s"'
                             % (s.demo_impi, nonce, response))
            self.assertEqual(r.status, 200, r.text)
            wic.close()
            time.sleep(0.5)
            log = s.log
        finally:
            s.stop()
        # Both hops of the REGISTER, in and out, with flow and peer.
        self.assertRegex(log, r"SIP in from \S+ over WSS flow fl-\S+\nREGISTER sip:ims.example.com SIP/2.0")
        self.assertRegex(log, r"SIP out to \S+ over TCP\nREGISTER sip:ims.example.com SIP/2.0")
        self.assertRegex(log, r"SIP in from \S+ over TCP\nREGISTER sip:ims.example.com")
        self.assertIn("integrity-protected=auth-done", log)
        self.assertIn("Bearer [redacted]", log)
        self.assertIn('response="[redacted]"', log)
        # The secrets themselves never.
        self.assertNotIn(token, log)
        self.assertNotIn(token.split(".")[2], log)
        self.assertNotIn(response, log)


if __name__ == "__main__":
    unittest.main(verbosity=2)
