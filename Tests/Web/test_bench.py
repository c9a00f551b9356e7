"""Issue 7: `webims bench` registers real WICs over WSS, counts every final response by
status (a failure is never a registration), keeps to a target rate, and holds flows."""
import re
import subprocess
import unittest

import requests

from harness import BINARY, Server


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
    def bench(self, server, *args, **kw):
        return server.cli("bench", "--server-pid", str(server.process.pid), *args, **kw)

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

    def test_the_readme_bench_against_a_default_serve_has_no_errors(self):
        """Issue 30: the README's `bench --provision --connections 10 --seconds 3` against a
        default serve stays within its flow message rate (every connection used to be
        closed with 1008 after 0.2 s); Digest is two requests per registration."""
        server = Server()
        self.addCleanup(server.stop)
        for scheme in ("token", "digest"):
            out = server.cli("bench", "--provision", "--scheme", scheme, "--connections", "10", "--seconds", "3")
            self.assertNotIn("errors:", out)
            registrations = int(field(out, r"^registrations: (\d+),").group(1))
            self.assertEqual(statuses(out), {200: registrations}, out)
            # Paced at serve's default 20 messages per second per flow (at most), and not
            # stopped after the first burst (a debug build may not reach the pace).
            per_flow = 20 if scheme == "token" else 10
            self.assertGreaterEqual(registrations, 10 * per_flow // 2, out)
            self.assertLessEqual(registrations, 10 * (per_flow * 3 + 2), out)

    def test_a_flow_closed_for_its_rate_is_an_error_that_names_the_flag(self):
        server = Server("--flow-message-rate", "5")
        self.addCleanup(server.stop)
        result = subprocess.run([BINARY, "bench", "--data-dir", server.data_dir, "--provision", "--connections", "2",
                                 "--seconds", "3", "--flow-message-rate", "0"], capture_output=True, text=True,
                                timeout=120)
        self.assertNotEqual(result.returncode, 0, result.stdout)
        self.assertIn("closed by the server with 1008", result.stdout)
        self.assertIn("--flow-message-rate", result.stdout)

    def test_digest_failures_are_counted_not_registered(self):
        server = Server()  # nobody provisioned: bench1… are unknown to the HSS
        self.addCleanup(server.stop)
        # No registration at all: bench exits non-zero, and still reports what it saw.
        out = self.bench(server, "--scheme", "digest", "--users", "2", "--connections", "2",
                         "--seconds", "1", "--rate", "20", check=False)
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

    def test_tokens_written_for_another_generator_register_their_own_identity(self):
        """Issue 31: `--write-tokens` gives an outside load generator (scripts/
        bench-vs-kamailio) one WAF token per bench subscriber, and registers nothing itself.
        Each registers its own identity; none another's."""
        import os
        import tempfile

        import sipws

        server = Server()
        self.addCleanup(server.stop)
        path = os.path.join(tempfile.mkdtemp(), "tokens")
        self.bench(server, "--provision", "--users", "3", "--write-tokens", path)
        with open(path) as f:
            tokens = f.read().split()
        self.assertEqual(len(tokens), 3)
        self.assertEqual(len(set(tokens)), 3)
        self.assertEqual(scscf_registrations(server, "tna", "200"), 0)
        for n, token in enumerate(tokens, 1):
            wic = sipws.WIC(server.epcscf, server.wwsf, server.ca, "sip:bench%d@ims.example.com" % n)
            self.assertEqual(wic.register("Bearer " + token).status, 200)
            wic.close()
        other = sipws.WIC(server.epcscf, server.wwsf, server.ca, "sip:bench2@ims.example.com")
        self.assertEqual(other.register("Bearer " + tokens[0]).status, 403)
        other.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
