"""Issue 7: graceful shutdown — SIGTERM under registration load: the WICs get a close frame
(1001), the process exits cleanly, and every registration that was answered 200 is still
there after a restart."""
import signal
import threading
import time
import unittest

from websockets.exceptions import ConnectionClosed

import sipws
from harness import Server


class ShutdownTests(unittest.TestCase):
    def test_sigterm_under_load_loses_nothing(self):
        # The WICs here register back to back, far above a real WIC's pace: lift the
        # per-flow message rate (its 1008 close is tested in test_flow_rate), so what is
        # measured is the shutdown.
        s = Server("--flow-message-rate", "100000")
        try:
            subscribers = 20
            s.cli("subscriber", "add", "--count", str(subscribers), "--impi", "load%d@ims.example.com",
                  "--impu", "sip:load%d@ims.example.com", "--password", "x")
            for n in range(1, subscribers + 1):
                s.cli("account", "add", "--username", "load%d" % n, "--password", "pw",
                      "--impi", "load%d@ims.example.com" % n)
            tokens = {n: s.cli("token", "issue", "--account", "load%d" % n).strip() for n in range(1, subscribers + 1)}
            registered, closes = set(), []
            ready = threading.Barrier(subscribers + 1)

            def wic(n):
                w = sipws.WIC(s.epcscf, s.wwsf, s.ca, "sip:load%d@ims.example.com" % n)
                ready.wait()
                try:
                    while True:
                        if w.register("Bearer " + tokens[n]).status == 200:
                            registered.add(n)
                except ConnectionClosed as closed:
                    closes.append(closed.rcvd.code if closed.rcvd else None)
                except Exception:
                    closes.append(None)

            threads = [threading.Thread(target=wic, args=(n,)) for n in range(1, subscribers + 1)]
            for t in threads:
                t.start()
            ready.wait()
            time.sleep(1.5)
            s.process.send_signal(signal.SIGTERM)
            self.assertEqual(s.process.wait(20), 0)
            for t in threads:
                t.join(10)
            self.assertEqual(len(registered), subscribers)
            self.assertEqual(closes.count(1001), subscribers, closes)
            s.start()
            aors = {line.split("\t")[0] for line in s.cli("registrations").splitlines()}
            for n in registered:
                self.assertIn("sip:load%d@ims.example.com" % n, aors)
        finally:
            s.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
