"""Issue 3 (SCS-1): the eP-CSCF reaches the S-CSCF over mutual TLS, and the S-CSCF honours
auth-done only from a trusted address whose verified certificate names a trusted node.
Separate processes, certificates from an operator CA made here with openssl."""
import os
import random
import re
import socket
import ssl
import subprocess
import tempfile
import time
import unittest

import requests

import sipws
from harness import Server, final_status, udp_request, wait_for


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_pki():
    d = tempfile.mkdtemp(prefix="webims-node-pki-")
    ca, ca_key = os.path.join(d, "ca.pem"), os.path.join(d, "ca-key.pem")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
            "-subj", "/CN=operator test CA", "-keyout", ca_key, "-out", ca)
    certs = {}
    for name in ("scscf.test", "epcscf.test", "rogue.test"):
        key, csr, cert, ext = (os.path.join(d, name + s) for s in (".key", ".csr", ".pem", ".ext"))
        with open(ext, "w") as f:
            f.write("subjectAltName=DNS:%s,DNS:localhost,IP:127.0.0.1\n"
                    "extendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n" % name)
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", "/CN=" + name,
                "-keyout", key, "-out", csr)
        openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-days", "2",
                "-extfile", ext, "-out", cert)
        certs[name] = (cert, key)
    return ca, certs


def tls_request(host_port, text, ca, cert, key, timeout=10):
    """Sends one request over TLS with a client certificate; returns the final status."""
    host, port = host_port.rsplit(":", 1)
    context = ssl.create_default_context(cafile=ca)
    context.load_cert_chain(cert, key)
    with socket.create_connection((host, int(port)), timeout=timeout) as raw:
        with context.wrap_socket(raw, server_hostname=host) as s:
            s.sendall(text.replace("LOCALPORT", str(s.getsockname()[1])).encode())
            data, deadline = b"", time.time() + timeout
            while time.time() < deadline and final_status(data) is None:
                data += s.recv(65535)
            return final_status(data)


def notify(transport):
    n = random.randint(0, 10**9)
    return ("NOTIFY sip:alice@ims.example.com SIP/2.0\r\n"
            "Via: SIP/2.0/%s 127.0.0.1:LOCALPORT;branch=z9hG4bK%d;rport\r\n"
            "Max-Forwards: 70\r\nFrom: <sip:as@ims.example.com>;tag=as1\r\nTo: <sip:alice@ims.example.com>\r\n"
            "Call-ID: node-tls-%d\r\nCSeq: 1 NOTIFY\r\nEvent: message-summary\r\n"
            "Subscription-State: active\r\nContent-Length: 0\r\n\r\n" % (transport, n, n))


class NodeTLSTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.ca, cls.certs = make_pki()
        cert, key = cls.certs["scscf.test"]
        cls.scscf = Server("--role", "s-cscf", "--sip-tls-port", "0", "--trusted-node", "127.0.0.1",
                           "--trusted-node-name", "epcscf.test",
                           "--trusted-network-id", "ims.example.com",
                           "--sip-tls-ca", cls.ca, "--tls-certificate", cert, "--tls-key", key)

    @classmethod
    def tearDownClass(cls):
        cls.scscf.stop()

    def edge(self, name, transport="tls", *extra):
        cert, key = self.certs[name]
        host_port = self.scscf.endpoints["scscf_tls" if transport == "tls" else "scscf"]
        node = Server("--role", "wwsf,waf,ep-cscf", "--scscf-uri", "sip:%s;transport=%s" % (host_port, transport),
                      "--scscf-name", "scscf.test", "--sip-tls-ca", self.ca, "--tls-certificate", cert, "--tls-key", key,
                      *extra)
        self.addCleanup(node.stop)
        node.ca = self.ca  # its WSS certificate comes from the operator CA too
        return node

    def untrusted(self):
        """REGISTERs the S-CSCF challenged although they claimed auth-done (its metric)."""
        text = requests.get(self.scscf.endpoints["metrics"], timeout=5).text
        for line in text.splitlines():
            if line.startswith("webims_scscf_untrusted_auth_done_total"):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def register(self, node, keep=False):
        token = node.cli("token", "issue", "--account", node.demo_user).strip()
        wic = sipws.WIC(node.epcscf, node.wwsf, node.ca, node.demo_impu)
        self.addCleanup(wic.close)
        r = wic.register("Bearer " + token)
        return (wic, r) if keep else r

    def test_a_trusted_node_over_mutual_tls_registers_with_its_token(self):
        self.assertIn("TLS", self.scscf.log)
        r = self.register(self.edge("epcscf.test"))
        self.assertEqual(r.status, 200, r.text)
        self.assertIn("sip:alice@ims.example.com", self.scscf.cli("registrations"))

    def test_a_certificate_without_a_trusted_name_gets_no_registration(self):
        before = self.untrusted()
        r = self.register(self.edge("rogue.test"))
        self.assertNotEqual(r.status, 200, r.text)
        self.assertEqual(self.untrusted(), before + 1, self.scscf.log)

    def test_plain_tcp_from_the_trusted_address_is_not_enough(self):
        before = self.untrusted()
        r = self.register(self.edge("epcscf.test", "tcp", "--lab-plain-sip-trust"))
        self.assertNotEqual(r.status, 200, r.text)
        self.assertEqual(self.untrusted(), before + 1, self.scscf.log)


    def test_requests_for_the_wic_come_back_over_tls_by_the_path(self):
        wic, r = self.register(self.edge("epcscf.test"), keep=True)
        self.assertEqual(r.status, 200, r.text)
        self.assertIn("transport=tls", r.header("path"))
        wic.answer_requests()
        # An AS with a trusted certificate sends the S-CSCF a NOTIFY for the identity; the
        # S-CSCF routes it by the stored Path, over TLS with its own certificate, to the
        # eP-CSCF, which hands it down the WIC's WebSocket.
        cert, key = self.certs["epcscf.test"]
        self.assertEqual(tls_request(self.scscf.endpoints["scscf_tls"], notify("TLS"), self.ca, cert, key), 200)
        self.assertTrue(wait_for(lambda: any(m.startswith("NOTIFY ") for m in wic.received), timeout=5))
        # The same from the trusted address over UDP: not a trusted node without TLS.
        self.assertEqual(udp_request(self.scscf.scscf, notify("UDP")), 403)

    def test_item08_only_the_named_scscf_reaches_the_flows(self):
        # Issue 26 item 8: the edge's SIP port takes requests for its flows only over TLS
        # from a certificate naming its S-CSCF (--scscf-name scscf.test). rogue.test has a
        # certificate from the same CA, for the same address: refused, nothing reaches the WIC.
        node = self.edge("epcscf.test")
        wic, r = self.register(node, keep=True)
        self.assertEqual(r.status, 200, r.text)
        wic.answer_requests()
        flow = re.search(r"<sip:(fl-[^@]+)@", r.header("path")).group(1)
        edge_sip = node.endpoints["epcscf_sip"]
        forged = notify("TLS").replace("Max-Forwards: 70\r\n",
                                       "Route: <sip:%s@%s;lr;transport=tls>\r\nMax-Forwards: 70\r\n" % (flow, edge_sip))
        cert, key = self.certs["rogue.test"]
        self.assertEqual(tls_request(edge_sip, forged, self.ca, cert, key), 403)
        cert, key = self.certs["scscf.test"]
        self.assertEqual(tls_request(edge_sip, forged, self.ca, cert, key), 200)
        self.assertEqual(sum(m.startswith("NOTIFY ") for m in wic.received), 1, wic.received)

    def test_item01_plain_links_are_a_start_up_error_without_the_lab_flag(self):
        # Issue 26 item 1: --trusted-node over plain transport, or an eP-CSCF whose S-CSCF
        # link is plain TCP, refuse to start unless the operator says lab.
        for args in (["--role", "s-cscf", "--trusted-node", "127.0.0.1"],
                     ["--role", "wwsf,waf,ep-cscf", "--scscf-uri", "sip:%s;transport=tcp" % self.scscf.scscf]):
            with self.assertRaises(RuntimeError) as failed:
                Server(*args)
            self.assertIn("--lab-plain-sip-trust", str(failed.exception))


if __name__ == "__main__":
    unittest.main(verbosity=2)
