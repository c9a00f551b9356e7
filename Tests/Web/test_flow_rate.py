"""Issue 4: a flow that sends more SIP messages than `--flow-message-rate` allows is closed
with 1008 (policy violation); a flow at a WIC's pace on the same server is not."""
import time
import unittest

from websockets.exceptions import ConnectionClosed

import sipws
from harness import Server


class FlowRateTests(unittest.TestCase):
    def test_a_flooding_flow_is_closed_with_1008_and_a_paced_one_stays(self):
        s = Server("--flow-message-rate", "5")
        try:
            for n in (1, 2):
                s.cli("subscriber", "add", "--impi", "rate%d@ims.example.com" % n,
                      "--impu", "sip:rate%d@ims.example.com" % n, "--password", "x")
                s.cli("account", "add", "--username", "rate%d" % n, "--password", "pw",
                      "--impi", "rate%d@ims.example.com" % n)
            tokens = {n: s.cli("token", "issue", "--account", "rate%d" % n).strip() for n in (1, 2)}
            paced = sipws.WIC(s.epcscf, s.wwsf, s.ca, "sip:rate2@ims.example.com")
            self.assertEqual(paced.register("Bearer " + tokens[2]).status, 200)

            flooding = sipws.WIC(s.epcscf, s.wwsf, s.ca, "sip:rate1@ims.example.com")
            code, answered = None, 0
            try:
                # Burst allowance is 3 × the rate: 80 back-to-back REGISTERs exceed it even
                # on a slow machine (15 + 5 per second of sending).
                for _ in range(80):
                    if flooding.register("Bearer " + tokens[1]).status == 200:
                        answered += 1
            except ConnectionClosed as closed:
                code = closed.rcvd.code if closed.rcvd else None
            self.assertEqual(code, 1008, "answered %d before the close" % answered)
            self.assertGreater(answered, 0)

            # The paced flow was not touched: it keeps registering at a WIC's pace.
            for _ in range(3):
                time.sleep(0.5)
                self.assertEqual(paced.register("Bearer " + tokens[2]).status, 200)
        finally:
            s.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
