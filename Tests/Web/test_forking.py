"""Issue 27: the proxy core both CSCFs share. A request for an identity registered on two
flows goes to both at once through the S-CSCF's proxy core (parallel forking, RFC 3261
§16.6), and the sender gets the one best answer; each hop takes one from Max-Forwards."""
import unittest

import sipws
from harness import ServerTestCase, wait_for


class ForkingTests(ServerTestCase):
    @classmethod
    def provision(cls, s):
        s.cli("subscriber", "add", "--impi", "carol@ims.example.com", "--impu", "sip:carol@ims.example.com",
              "--password", "carol-sip")
        s.cli("account", "add", "--username", "carol", "--password", "carol-web-pw", "--impi",
              "carol@ims.example.com")

    def flow(self, account, impu):
        s = self.server
        token = s.cli("token", "issue", "--account", account).strip()
        w = sipws.WIC(s.epcscf, s.wwsf, s.ca, impu)
        self.addCleanup(w.close)
        r = w.register("Bearer " + token)
        self.assertEqual(r.status, 200, r.text)
        return w

    def test_a_message_reaches_every_flow_of_the_identity_at_once(self):
        s = self.server
        phone, laptop = self.flow(s.demo_user, s.demo_impu), self.flow(s.demo_user, s.demo_impu)
        phone.answer_requests()
        laptop.answer_requests()
        carol = self.flow("carol", "sip:carol@ims.example.com")
        r = carol.message(s.demo_impu, "to both")
        self.assertEqual(r.status, 200, r.text)
        for w in (phone, laptop):
            self.assertTrue(wait_for(lambda: any("to both" in m for m in w.received), timeout=5), w.received)
            delivered = next(m for m in w.received if "to both" in m)
            # eP-CSCF, S-CSCF, eP-CSCF: three proxy hops.
            self.assertIn("\r\nMax-Forwards: 67\r\n", delivered)

    def test_when_one_flow_is_gone_the_other_still_gets_it(self):
        s = self.server
        alive, gone = self.flow(s.demo_user, s.demo_impu), self.flow(s.demo_user, s.demo_impu)
        alive.answer_requests()
        gone.close()  # its binding stays for the flow-close grace; that branch gets 430
        carol = self.flow("carol", "sip:carol@ims.example.com")
        r = carol.message(s.demo_impu, "still here")
        self.assertEqual(r.status, 200, r.text)
        self.assertTrue(wait_for(lambda: any("still here" in m for m in alive.received), timeout=5))


if __name__ == "__main__":
    unittest.main(verbosity=2)
