"""The eP-CSCF's own TLS layer (Sources/EPCSCF/LeanTLS.swift) against Python's ssl module
driven by hand: TLS 1.2 and 1.3, records cut into single bytes on the wire, one SIP
message over many records, the client's close_notify, and garbage after the handshake.
Each time a WIC must register (200) or the server must close that connection and keep
serving others. Loopback only; bounded in time."""
import base64
import os
import socket
import ssl
import struct
import time
import unittest

import sipws
from harness import Server


class RawTLS:
    """A TLS client over a plain socket through memory BIOs, so the test decides how the
    ciphertext is cut into records and into TCP sends."""

    def __init__(self, port, cafile, maximum_version=None):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ctx = ssl.create_default_context(cafile=cafile)
        ctx.check_hostname = False
        if maximum_version:
            ctx.maximum_version = maximum_version
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.incoming, self.outgoing, server_hostname="localhost")
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.flush()
                self.fill()
        self.flush()

    def fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("server closed the connection")
        self.incoming.write(data)

    def flush(self, step=None):
        data = self.outgoing.read()
        if step:
            for i in range(0, len(data), step):
                self.sock.sendall(data[i:i + step])
        else:
            self.sock.sendall(data)

    def send(self, plaintext, record_size=None, step=None):
        """`record_size`: plaintext per TLS record; `step`: ciphertext bytes per send."""
        size = record_size or len(plaintext)
        for i in range(0, len(plaintext), size):
            self.tls.write(plaintext[i:i + size])
        self.flush(step)

    def recv(self):
        """Some plaintext, or b"" once the server has closed (close_notify or EOF)."""
        while True:
            try:
                return self.tls.read(65536)
            except ssl.SSLWantReadError:
                try:
                    self.fill()
                except EOFError:
                    return b""
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""


class RawWebSocket:
    """RFC 6455 over RawTLS, with the `send`/`recv`/`close` a sipws.WIC needs."""

    def __init__(self, tls, origin, record_size=None, step=None):
        self.tls, self.record_size, self.step = tls, record_size, step
        self.buffer = b""
        key = base64.b64encode(os.urandom(16)).decode()
        tls.send((
            "GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: sip\r\n"
            "Origin: %s\r\n\r\n" % (key, origin)).encode(), record_size, step)
        while b"\r\n\r\n" not in self.buffer:
            more = tls.recv()
            if not more:
                raise EOFError("closed during the upgrade")
            self.buffer += more
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        if not head.startswith(b"HTTP/1.1 101"):
            raise AssertionError("upgrade refused: %r" % head[:80])

    def send(self, text):
        payload = text.encode()
        mask = os.urandom(4)
        n = len(payload)
        header = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else
                                  bytes([0x80 | 126]) + struct.pack("!H", n) if n < 65536 else
                                  bytes([0x80 | 127]) + struct.pack("!Q", n))
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.tls.send(header + mask + masked, self.record_size, self.step)

    def recv(self, timeout=10):
        deadline = time.monotonic() + timeout
        while True:
            frame = self._frame()
            if frame is not None:
                return frame
            if time.monotonic() > deadline:
                raise TimeoutError("no frame")
            more = self.tls.recv()
            if not more:
                raise EOFError("closed")
            self.buffer += more

    def _frame(self):
        b = self.buffer
        if len(b) < 2:
            return None
        n, at = b[1] & 0x7F, 2
        if n == 126:
            if len(b) < 4:
                return None
            n, at = struct.unpack("!H", b[2:4])[0], 4
        elif n == 127:
            if len(b) < 10:
                return None
            n, at = struct.unpack("!Q", b[2:10])[0], 10
        if len(b) < at + n:
            return None
        self.buffer = b[at + n:]
        return b[at:at + n].decode()

    def close(self):
        self.tls.sock.close()


class LeanTLSTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server("--log-level", "warning")
        cls.port = int(cls.server.epcscf.rsplit(":", 1)[1])

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def register(self, ws):
        token = self.server.cli("token", "issue", "--account", self.server.demo_user).strip()
        wic = sipws.WIC(None, None, None, self.server.demo_impu, ws=ws)
        return wic.register("Bearer " + token)

    def assert_still_serving(self):
        ws = RawWebSocket(RawTLS(self.port, self.server.ca), self.server.wwsf)
        try:
            self.assertEqual(self.register(ws).status, 200)
        finally:
            ws.close()

    def test_tls_1_2_and_1_3(self):
        for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            tls = RawTLS(self.port, self.server.ca, maximum_version=version)
            self.assertEqual(tls.tls.version(), {ssl.TLSVersion.TLSv1_2: "TLSv1.2",
                                                 ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version])
            ws = RawWebSocket(tls, self.server.wwsf)
            try:
                self.assertEqual(self.register(ws).status, 200)
            finally:
                ws.close()

    def test_records_arriving_a_byte_at_a_time(self):
        ws = RawWebSocket(RawTLS(self.port, self.server.ca), self.server.wwsf, step=1)
        try:
            self.assertEqual(self.register(ws).status, 200)
        finally:
            ws.close()

    def test_one_message_over_many_records(self):
        # 64-byte records, sent three records' worth of ciphertext at a time, so records
        # end mid-read and a read holds several.
        ws = RawWebSocket(RawTLS(self.port, self.server.ca), self.server.wwsf, record_size=64, step=200)
        try:
            for _ in range(3):
                self.assertEqual(self.register(ws).status, 200)
        finally:
            ws.close()

    def test_close_notify_closes_the_connection(self):
        tls = RawTLS(self.port, self.server.ca)
        ws = RawWebSocket(tls, self.server.wwsf)
        self.assertEqual(self.register(ws).status, 200)
        try:
            tls.tls.unwrap()
        except ssl.SSLWantReadError:
            pass
        tls.flush()
        # The server answers with its own close_notify and closes: nothing else comes.
        self.assertEqual(tls.recv(), b"")
        tls.sock.close()
        self.assert_still_serving()

    def test_garbage_after_the_handshake_is_a_closed_connection(self):
        for garbage in (b"\x00" * 64, b"\x17\x03\x03\x00\x20" + os.urandom(32), os.urandom(3000)):
            tls = RawTLS(self.port, self.server.ca)
            ws = RawWebSocket(tls, self.server.wwsf)
            self.assertEqual(self.register(ws).status, 200)
            tls.sock.sendall(garbage)
            tls.sock.settimeout(5)
            closed = False
            try:
                while tls.sock.recv(65536):
                    pass
                closed = True
            except ConnectionResetError:
                closed = True
            self.assertTrue(closed, "the server kept a connection that sent %r..." % garbage[:8])
            tls.sock.close()
        self.assert_still_serving()

    def test_garbage_instead_of_a_handshake(self):
        for garbage in (b"GET / HTTP/1.1\r\n\r\n", b"\x16\x03\x01\xff\xff" + os.urandom(100), os.urandom(5000)):
            with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
                sock.sendall(garbage)
                try:
                    while sock.recv(65536):
                        pass
                except (ConnectionResetError, socket.timeout):
                    pass
        self.assert_still_serving()



def rsa_identity():
    """An RSA CA and a server certificate for localhost / 127.0.0.1 (openssl)."""
    import subprocess
    import tempfile
    d = tempfile.mkdtemp(prefix="webims-rsa-")
    ca, ca_key, key, csr, cert, ext = (os.path.join(d, n) for n in
                                       ("ca.pem", "ca-key.pem", "key.pem", "csr.pem", "cert.pem", "ext.cnf"))
    run = lambda *a: subprocess.run(["openssl", *a], check=True, capture_output=True)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=rsa test CA",
        "-keyout", ca_key, "-out", ca)
    with open(ext, "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n")
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", key, "-out", csr)
    run("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-days", "2",
        "-extfile", ext, "-out", cert)
    return ca, cert, key


class CipherPolicyTests(unittest.TestCase):
    """Issue 26 item 15: with an RSA certificate, the WSS listener (its own TLS layer) takes
    exactly the suites the HTTPS listeners take: no static-RSA key exchange, no CBC-SHA1."""

    @classmethod
    def setUpClass(cls):
        cls.ca, cert, key = rsa_identity()
        cls.server = Server("--tls-certificate", cert, "--tls-key", key)

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def handshake(self, port, ciphers=None, tls12=True):
        ctx = ssl.create_default_context(cafile=self.ca)
        if tls12:
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        if ciphers:
            ctx.set_ciphers(ciphers + ":@SECLEVEL=0")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                    return s.cipher()[0]
        except (ssl.SSLError, ConnectionError, OSError):
            return None

    def test_item15_the_wss_listener_applies_the_https_cipher_policy(self):
        s = self.server
        ports = {"wss": int(s.epcscf.rsplit(":", 1)[1]), "wwsf": int(s.wwsf.rsplit(":", 1)[1]),
                 "waf": int(s.waf.rsplit(":", 1)[1])}
        for refused in ("AES128-SHA", "AES256-SHA", "AES128-GCM-SHA256", "ECDHE-RSA-AES128-SHA",
                        "ECDHE-RSA-AES256-SHA"):
            for name, port in ports.items():
                self.assertIsNone(self.handshake(port, refused), "%s took %s" % (name, refused))
        for taken in ("ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-RSA-CHACHA20-POLY1305"):
            for name, port in ports.items():
                self.assertEqual(self.handshake(port, taken), taken, name)
        for name, port in ports.items():
            self.assertIsNotNone(self.handshake(port, tls12=False), name)
        # And a WIC still registers over it.
        token = s.cli("token", "issue", "--account", s.demo_user).strip()
        wic = sipws.WIC(s.epcscf, s.wwsf, self.ca, s.demo_impu)
        self.addCleanup(wic.close)
        self.assertEqual(wic.register("Bearer " + token).status, 200)

if __name__ == "__main__":
    unittest.main()
