"""Issue 7: settings from the command line beat WEBIMS_* variables, which beat the config
file; unknown names are refused; roles run subsets."""
import json
import os
import socket
import subprocess
import tempfile
import unittest

from harness import BINARY, Server, free_port


class ConfigTests(unittest.TestCase):
    def port_of(self, server):
        return int(server.epcscf.rsplit(":", 1)[1])

    def test_precedence(self):
        # Each port is picked just before the server that binds it: a port picked earlier
        # may meanwhile be handed to one of the earlier servers' own listeners.
        a = free_port()
        config = tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False)
        config.write("# webims settings\nwss-port = %d\nhome-domain = conf.example.com\nsip-trace = true\n"
                     "allowed-origin = https://one.example\nallowed-origin = https://two.example\n" % a)
        config.close()
        # File alone.
        s = Server("--config", config.name, wss_port=None)
        try:
            self.assertEqual(self.port_of(s), a)
            self.assertEqual(s.endpoints["home_domain"], "conf.example.com")
        finally:
            s.stop()
        # The environment beats the file.
        b = free_port()
        os.environ["WEBIMS_WSS_PORT"] = str(b)
        try:
            s = Server("--config", config.name, wss_port=None)
            try:
                self.assertEqual(self.port_of(s), b)
                self.assertEqual(s.endpoints["home_domain"], "conf.example.com")
            finally:
                s.stop()
            # The command line beats both.
            c = free_port()
            s = Server("--config", config.name, wss_port=c)
            try:
                self.assertEqual(self.port_of(s), c)
            finally:
                s.stop()
        finally:
            del os.environ["WEBIMS_WSS_PORT"]

    def test_metrics_off(self):
        # Issue 30: `-1` cannot be typed as an option's value; `off` can, and `-1` still
        # works where no parser reads it as a flag (the environment).
        s = Server("--metrics-port", "off", metrics_port=None)
        try:
            self.assertNotIn("metrics", s.endpoints)
            self.assertNotIn("webims: metrics", s.log)
        finally:
            s.stop()
        os.environ["WEBIMS_METRICS_PORT"] = "-1"
        try:
            s = Server(metrics_port=None)
        finally:
            del os.environ["WEBIMS_METRICS_PORT"]
        try:
            self.assertNotIn("metrics", s.endpoints)
        finally:
            s.stop()

    def test_unknown_settings_are_refused(self):
        config = tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False)
        config.write("wss-prot = 1\n")
        config.close()
        r = subprocess.run([BINARY, "serve", "--config", config.name, "--data-dir", tempfile.mkdtemp()],
                           capture_output=True, text=True, timeout=60)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("not a serve option", r.stderr)
        r = subprocess.run([BINARY, "serve", "--role", "pcscf", "--data-dir", tempfile.mkdtemp()],
                           capture_output=True, text=True, timeout=60)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("unknown role", r.stderr)

    def test_a_taken_port_is_an_error_not_a_hang(self):
        # Each listener in turn on a port someone else holds: serve says so and exits 1 —
        # no hang waiting for the listener, no crash on the way out (the store is closed).
        with socket.socket() as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            tcp.bind(("127.0.0.1", 0))
            tcp.listen()
            udp.bind(("127.0.0.1", 0))
            taken_tcp, taken_udp = str(tcp.getsockname()[1]), str(udp.getsockname()[1])
            cases = [("--wwsf-port", taken_tcp), ("--waf-port", taken_tcp), ("--metrics-port", taken_tcp),
                     ("--wss-port", taken_tcp), ("--sip-port", taken_tcp), ("--sip-port", taken_udp)]
            for option, taken in cases:
                ports = {"--wwsf-port": "0", "--waf-port": "0", "--metrics-port": "0", "--wss-port": "0",
                         "--sip-port": "0"}
                ports[option] = taken
                args = [BINARY, "serve", "--data-dir", tempfile.mkdtemp()]
                for name, value in ports.items():
                    args += [name, value]
                r = subprocess.run(args, capture_output=True, text=True, timeout=60)
                self.assertEqual(r.returncode, 1, "%s %s: %s" % (option, taken, r.stderr[-2000:]))
                self.assertIn("Address already in use", r.stderr, option)
                self.assertNotIn("webims: ready", r.stdout, option)

    def test_role_subset(self):
        s = Server("--role", "s-cscf")
        try:
            self.assertIn("webims: roles s-cscf, hss", s.log)
            self.assertIsNone(s.endpoints.get("wwsf"))
            self.assertIsNone(s.endpoints.get("epcscf"))
            self.assertTrue(s.endpoints.get("scscf"))
        finally:
            s.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
