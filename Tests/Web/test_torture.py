"""Issue 27: one message, one answer, whatever the transport. Each RFC 4475 torture message
(Tests/Interop/rfc4475) goes to a running `webims serve` over UDP (the S-CSCF's port) and
over WSS (the eP-CSCF); a message the RFC calls malformed gets the same refusal on both,
before any decision about who may send what, and a well-formed one is refused by neither."""
import glob
import os
import socket
import ssl
import unittest

from websockets.sync.client import connect

from harness import ROOT, ServerTestCase

CORPUS = os.path.join(ROOT, "Tests", "Interop", "rfc4475")

# RFC 4475 §3.1.2 and the §3.3 messages a parser refuses; the responses get no answer.
REFUSED = {"badinv01", "clerr", "ncl", "scalar02", "quotbal", "ltgtruri", "lwsruri", "lwsstart",
           "trws", "escruri", "baddate", "regbadct", "badaspec", "baddn", "badvers", "mismatch01", "mismatch02",
           "insuf", "multi01", "mcl01"}
RESPONSES = {"bigcode", "scalarlg", "unreason", "noreason"}


def first_line(data):
    return data.split(b"\r\n", 1)[0].decode("utf-8", "replace")


def call_id(data):
    for line in data.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() in (b"call-id", b"i"):
            return value.strip()
    return None


class TortureParityTests(ServerTestCase):
    def via_port(self, data):
        """Where a UDP answer goes without rport (RFC 3261 §18.2.2): received=, and the
        sent-by port or 5060."""
        for line in data.split(b"\r\n"):
            name = line.split(b":", 1)[0].strip().lower()
            if name in (b"via", b"v"):
                sent_by = line.split(b":", 1)[1].split(b";")[0].split()[-1]
                if b":" in sent_by and sent_by.rsplit(b":", 1)[1].isdigit():
                    return int(sent_by.rsplit(b":", 1)[1])
                return 5060
        return 5060

    def over_udp(self, data):
        host, port = self.server.scscf.rsplit(":", 1)
        answer_port = self.via_port(data)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as out, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as back:
            back.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            back.bind(("127.0.0.1", answer_port))
            out.bind(("127.0.0.1", 0))
            out.sendto(data, (host, int(port)))
            # rport or a bad Via: to the source; else to the Via's port. Answers to earlier
            # messages (Timer G resends a final answer to an INVITE until its ACK) are not ours.
            for sock in (out, back):
                sock.settimeout(0.7)
                try:
                    while True:
                        answer = sock.recv(65535)
                        if call_id(answer) == call_id(data):
                            return first_line(answer)
                except socket.timeout:
                    pass
        return None

    def over_wss(self, data):
        s = self.server
        ctx = ssl.create_default_context(cafile=s.ca)
        with connect(s.epcscf, subprotocols=["sip"], origin=s.wwsf, ssl=ctx, open_timeout=5) as ws:
            ws.send(data)
            try:
                answer = ws.recv(timeout=1.0)
            except TimeoutError:
                return None
            return first_line(answer.encode() if isinstance(answer, str) else answer)

    def test_every_message_gets_the_same_verdict_over_udp_and_wss(self):
        files = sorted(glob.glob(os.path.join(CORPUS, "*.dat")))
        self.assertEqual(len(files), 49)
        table = []
        for path in files:
            name = os.path.basename(path)[:-4]
            with open(path, "rb") as f:
                data = f.read()
            udp, wss = self.over_udp(data), self.over_wss(data)
            table.append("%-11s UDP %-45s WSS %s" % (name, udp, wss))
            with self.subTest(message=name, udp=udp, wss=wss):
                if name in RESPONSES:
                    self.assertIsNone(udp)
                    self.assertIsNone(wss)
                elif name == "insuf":
                    # No From, To or Call-ID: nothing to address an answer with, so none (§3.3.1).
                    self.assertEqual(udp, wss)
                elif name in REFUSED:
                    expected = "SIP/2.0 505" if name == "badvers" else "SIP/2.0 400"
                    self.assertTrue(udp and udp.startswith(expected), udp)
                    self.assertEqual(udp, wss)  # the same status and reason phrase
                else:
                    for answer in (udp, wss):
                        self.assertFalse(answer and answer.split(" ")[1] in ("400", "505"), answer)
        print("\n" + "\n".join(table))


if __name__ == "__main__":
    unittest.main(verbosity=2)
