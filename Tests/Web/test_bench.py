"""Issue 7: `webims bench` registers real WICs over WSS, counts every final response by
status (a failure is never a registration), keeps to a target rate, and holds flows."""
import re
import unittest

import requests

from harness import Server


def field(text, pattern):
    m = re.search(pattern, text, re.M)
    if not m:
        raise AssertionError("no %r in bench output:\n%s" % (pattern, text))
    return m


def statuses(text):
    """The `responses:` line as {status: count}."""
    line = field(text, r"^responses:(.*)$").group(1)
    return {int(s): int(n) for s, n in re.findall(r"(\d+)×(\d+)", line)}


def scscf_registrations(server, scheme, status):
    text = requests.get(server.endpoints["metrics"], timeout=5).text
    for line in text.splitlines():
        if line.startswith("webims_scscf_registrations_total") and 'scheme="%s"' % scheme in line \
                and 'status="%s"' % status in line:
            return int(float(line.rsplit(" ", 1)[1]))
    return 0


class BenchTests(unittest.TestCase):
    def bench(self, server, *args):
        return server.cli("bench", "--server-pid", str(server.process.pid), *args)

    def test_token_registrations_at_a_rate_agree_with_the_server(self):
        server = Server()
        self.addCleanup(server.stop)
        out = self.bench(server, "--provision", "--users", "3", "--connections", "3",
                         "--seconds", "2", "--rate", "30")
        registrations = int(field(out, r"^registrations: (\d+),").group(1))
        self.assertEqual(statuses(out), {200: registrations}, out)
        # 30/s for 2 s, each of the 3 WICs at least once: paced, not flat out.
        self.assertGreaterEqual(registrations, 30, out)
        self.assertLessEqual(registrations, 2 * 30 + 3 + 1, out)
        # Every 200 the bench counted is one the S-CSCF answered (TNA from the eP-CSCF).
        self.assertEqual(scscf_registrations(server, "tna", "200"), registrations)
        field(out, r"^server CPU: [\d.]+ s → \d+ registrations per server CPU-second$")
        field(out, r"^latency ms: p50 [\d.]+, p90 [\d.]+, p99 [\d.]+, max [\d.]+$")
        field(out, r"^server RSS: \d+ KiB before, \d+ KiB after$")

    def test_digest_failures_are_counted_not_registered(self):
        server = Server()  # nobody provisioned: bench1… are unknown to the HSS
        self.addCleanup(server.stop)
        out = self.bench(server, "--scheme", "digest", "--users", "2", "--connections", "2",
                         "--seconds", "1", "--rate", "20")
        answered = statuses(out)
        self.assertNotIn(200, answered, out)
        self.assertGreater(sum(answered.values()), 0, out)
        self.assertEqual(int(field(out, r"^registrations: (\d+),").group(1)), 0, out)
        self.assertEqual(scscf_registrations(server, "digest", "200"), 0)

    def test_digest_registrations_and_hold(self):
        server = Server()
        self.addCleanup(server.stop)
        out = self.bench(server, "--provision", "--scheme", "digest", "--users", "2", "--connections", "2",
                         "--seconds", "1", "--rate", "20")
        registrations = int(field(out, r"^registrations: (\d+),").group(1))
        self.assertGreater(registrations, 0, out)
        self.assertEqual(statuses(out), {200: registrations}, out)
        self.assertEqual(scscf_registrations(server, "digest", "200"), registrations)
        out = self.bench(server, "--hold", "--users", "2", "--connections", "4", "--seconds", "1")
        self.assertEqual(statuses(out), {200: 4}, out)
        field(out, r"^held 4 registered connections for \d+ s: [\d.]+ KiB per connection")


if __name__ == "__main__":
    unittest.main(verbosity=2)
