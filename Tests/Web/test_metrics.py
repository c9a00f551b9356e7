"""Issue 7: the Prometheus /metrics endpoint reflects what happened."""
import re
import unittest

import requests

import sipws
from harness import Server, ServerTestCase


class MetricsTests(ServerTestCase):
    def metrics(self):
        r = requests.get(self.server.endpoints["metrics"], timeout=5)
        self.assertEqual(r.status_code, 200)
        self.assertTrue(r.headers["Content-Type"].startswith("text/plain"))
        return r.text

    def value(self, text, name, **labels):
        for line in text.splitlines():
            if line.startswith(name) and all('%s="%s"' % kv in line for kv in labels.items()):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def test_counters_gauges_and_histograms(self):
        s = self.server
        http = requests.Session()
        http.verify = s.ca
        r = http.post(s.wwsf + "/api/login", json={"username": s.demo_user, "password": "wrong"})
        self.assertEqual(r.status_code, 401)
        r = http.post(s.wwsf + "/api/login", json={"username": s.demo_user, "password": s.demo_password})
        csrf = r.json()["csrf"]
        token = http.post(s.wwsf + "/api/token", headers={"X-CSRF-Token": csrf}).json()["token"]
        wic = sipws.WIC(s.epcscf, s.wwsf, s.ca, s.demo_impu)
        self.assertEqual(wic.register("Bearer garbage").status, 401)
        self.assertEqual(wic.register("Bearer " + token).status, 200)
        text = self.metrics()
        self.assertEqual(self.value(text, "webims_wwsf_logins_total", result="ok"), 1)
        self.assertEqual(self.value(text, "webims_wwsf_logins_total", result="invalid_credentials"), 1)
        self.assertEqual(self.value(text, "webims_waf_tokens_issued_total"), 1)
        self.assertEqual(self.value(text, "webims_epcscf_token_failures_total", reason="malformed"), 1)
        self.assertEqual(self.value(text, "webims_scscf_registrations_total", scheme="tna", status="200"), 1)
        self.assertEqual(self.value(text, "webims_epcscf_flows"), 1)
        self.assertGreaterEqual(self.value(text, "webims_scscf_register_duration_seconds_count"), 1)
        self.assertIn("webims_epcscf_register_duration_seconds_bucket", text)
        # No identity, token or password in the metrics.
        self.assertNotIn("alice", text)
        self.assertNotIn(token[:20], text)
        wic.close()


class MetricsAtZeroTests(unittest.TestCase):
    """Issue 30: the counters are there at zero before any traffic, as Prometheus expects
    (an empty body until the first request broke rate() and alerting on absent series)."""

    def test_fresh_server_exports_every_fixed_series_at_zero(self):
        server = Server()
        self.addCleanup(server.stop)
        text = requests.get(server.endpoints["metrics"], timeout=5).text
        series = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                series[name] = float(value)
        for name in ['webims_waf_tokens_issued_total', 'webims_wwsf_logins_total{result="ok"}',
                     'webims_wwsf_logins_total{result="invalid_credentials"}',
                     'webims_epcscf_flows', 'webims_epcscf_connections_refused_total',
                     'webims_epcscf_registers_total{status="200"}',
                     'webims_epcscf_foreign_flow_requests_total',
                     'webims_scscf_digest_failures_total',
                     'webims_scscf_registrations_total{scheme="tna",status="200"}',
                     'webims_scscf_register_duration_seconds_count']:
            self.assertIn(name, series, text)
            self.assertEqual(series[name], 0, name)


if __name__ == "__main__":
    unittest.main(verbosity=2)
