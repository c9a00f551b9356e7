"""Issue 3 (SCS-1): the eP-CSCF reaches the S-CSCF over mutual TLS, and the S-CSCF honours
auth-done only from a trusted address whose verified certificate names a trusted node.
Separate processes, certificates from an operator CA made here with openssl."""
import os
import subprocess
import tempfile
import unittest

import sipws
from harness import Server


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


class NodeTLSTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.ca, cls.certs = make_pki()
        cert, key = cls.certs["scscf.test"]
        cls.scscf = Server("--role", "s-cscf", "--sip-tls-port", "0", "--trusted-node", "127.0.0.1",
                           "--trusted-node-name", "epcscf.test", "--trusted-nodes-require-tls",
                           "--sip-tls-ca", cls.ca, "--tls-certificate", cert, "--tls-key", key)

    @classmethod
    def tearDownClass(cls):
        cls.scscf.stop()

    def edge(self, name, transport="tls"):
        cert, key = self.certs[name]
        host_port = self.scscf.endpoints["scscf_tls" if transport == "tls" else "scscf"]
        node = Server("--role", "wwsf,waf,ep-cscf", "--scscf-uri", "sip:%s;transport=%s" % (host_port, transport),
                      "--sip-tls-ca", self.ca, "--tls-certificate", cert, "--tls-key", key)
        self.addCleanup(node.stop)
        node.ca = self.ca  # its WSS certificate comes from the operator CA too
        return node

    def register(self, node):
        token = node.cli("token", "issue", "--account", node.demo_user).strip()
        wic = sipws.WIC(node.epcscf, node.wwsf, node.ca, node.demo_impu)
        self.addCleanup(wic.close)
        return wic.register("Bearer " + token)

    def test_a_trusted_node_over_mutual_tls_registers_with_its_token(self):
        self.assertIn("TLS", self.scscf.log)
        r = self.register(self.edge("epcscf.test"))
        self.assertEqual(r.status, 200, r.text)
        self.assertIn("sip:alice@ims.example.com", self.scscf.cli("registrations"))

    def test_a_certificate_without_a_trusted_name_gets_no_registration(self):
        before = self.scscf.log.count("auth-done from untrusted")
        r = self.register(self.edge("rogue.test"))
        self.assertNotEqual(r.status, 200, r.text)
        self.assertEqual(self.scscf.log.count("auth-done from untrusted"), before + 1, self.scscf.log)

    def test_plain_tcp_from_the_trusted_address_is_not_enough(self):
        before = self.scscf.log.count("auth-done from untrusted")
        r = self.register(self.edge("epcscf.test", transport="tcp"))
        self.assertNotEqual(r.status, 200, r.text)
        self.assertEqual(self.scscf.log.count("auth-done from untrusted"), before + 1, self.scscf.log)


if __name__ == "__main__":
    unittest.main(verbosity=2)
