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


if __name__ == "__main__":
    unittest.main()
