"""A small SIP-over-WebSocket client for tests: what a WIC sends, built by hand."""
import random
import ssl
import string

from websockets.sync.client import connect


def rand(n=10):
    return "".join(random.choice(string.ascii_lowercase + string.digits) for _ in range(n))


class SIPResponse:
    def __init__(self, text):
        head, _, self.body = text.partition("\r\n\r\n")
        lines = head.split("\r\n")
        parts = lines[0].split(" ", 2)
        self.status = int(parts[1])
        self.reason = parts[2] if len(parts) > 2 else ""
        self.headers = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers.append((name.strip().lower(), value.strip()))
        self.text = text

    def header(self, name):
        for n, v in self.headers:
            if n == name.lower():
                return v
        return None

    def all(self, name):
        return [v for n, v in self.headers if n == name.lower()]


class WIC:
    """One WebSocket flow registering one IMPU, the way wic.js does."""

    def __init__(self, url, origin, cafile, impu, instance=None, ws=None):
        """`ws`: an open WebSocket with `send(text)`, `recv(timeout=)` and `close()`; by
        default one from the websockets library."""
        if ws is None:
            ctx = ssl.create_default_context(cafile=cafile)
            ws = connect(url, subprotocols=["sip"], origin=origin, ssl=ctx, open_timeout=10)
        self.ws = ws
        self.impu = impu
        self.host = rand() + ".invalid"
        self.call_id = rand(16)
        self.cseq = 0
        self.tag = rand(8)
        self.instance = instance or "<urn:uuid:%s-%s-4%s-a%s-%s>" % (rand(8), rand(4), rand(3), rand(3), rand(12))

    def register(self, authorization=None, expires=600):
        self.cseq += 1
        domain = self.impu.split("@", 1)[1]
        lines = [
            "REGISTER sip:%s SIP/2.0" % domain,
            "Via: SIP/2.0/WSS %s;branch=z9hG4bK%s" % (self.host, rand(12)),
            "Max-Forwards: 70",
            "From: <%s>;tag=%s" % (self.impu, self.tag),
            "To: <%s>" % self.impu,
            "Call-ID: %s" % self.call_id,
            "CSeq: %d REGISTER" % self.cseq,
            'Contact: <sip:%s@%s;transport=ws>;+sip.instance="%s";reg-id=1;expires=%d'
            % (rand(6), self.host, self.instance, expires),
            "Supported: path, outbound, gruu",
        ]
        if authorization:
            lines.append("Authorization: " + authorization)
        lines.append("Content-Length: 0")
        self.ws.send("\r\n".join(lines) + "\r\n\r\n")
        return self.receive()

    def digest_register(self, impi, password, expires=600, realm="ims.example.com", qop=True, cnonce="c0ffee"):
        """Registers with SIP Digest MD5: the challenge, then the answer. Returns the last
        response (the 200, or whatever refused the answer)."""
        import re

        first = self.register('Digest username="%s", realm="%s", uri="sip:%s", nonce="", response=""'
                              % (impi, realm, realm), expires=expires)
        if first.status != 401:
            return first
        nonce = re.search(r'nonce="([^"]+)"', first.header("www-authenticate")).group(1)
        return self.digest_answer(impi, password, nonce, expires, realm, qop, cnonce)

    def digest_answer(self, impi, password, nonce, expires=600, realm="ims.example.com", qop=True, cnonce="c0ffee"):
        """The REGISTER answering a Digest challenge for `nonce` (which may come from another
        flow, or another node's S-CSCF); returns the response."""
        import hashlib

        def md5(text):
            return hashlib.md5(text.encode()).hexdigest()

        ha1 = md5("%s:%s:%s" % (impi, realm, password))
        ha2 = md5("REGISTER:sip:%s" % realm)
        if qop:
            response = md5("%s:%s:00000001:%s:auth:%s" % (ha1, nonce, cnonce, ha2))
            extra = ', qop=auth, nc=00000001, cnonce="%s"' % cnonce
        else:
            response = md5("%s:%s:%s" % (ha1, nonce, ha2))
            extra = ""
        return self.register('Digest username="%s", realm="%s", uri="sip:%s", nonce="%s", algorithm=MD5%s, '
                             'response="%s"' % (impi, realm, realm, nonce, extra, response), expires=expires)

    def message(self, target, text, extra=()):
        """Sends a MESSAGE from this flow's IMPU; returns the final response."""
        lines = [
            "MESSAGE %s SIP/2.0" % target,
            "Via: SIP/2.0/WSS %s;branch=z9hG4bK%s" % (self.host, rand(12)),
            "Max-Forwards: 70",
            "From: <%s>;tag=%s" % (self.impu, rand(8)),
            "To: <%s>" % target,
            "Call-ID: %s" % rand(16),
            "CSeq: 1 MESSAGE",
            *extra,
            "Content-Type: text/plain",
            "Content-Length: %d" % len(text.encode()),
        ]
        self.ws.send("\r\n".join(lines) + "\r\n\r\n" + text)
        while True:
            r = self.receive()
            if r.status >= 200:
                return r

    def receive(self, timeout=10):
        while True:
            message = self.ws.recv(timeout=timeout)
            if isinstance(message, bytes):
                message = message.decode()
            if message.startswith("SIP/2.0"):
                return SIPResponse(message)

    def answer_requests(self):
        """From now on a thread answers every request that comes down the flow with 200 OK
        and keeps it in `self.received`."""
        import threading

        self.received = []

        def loop():
            while True:
                try:
                    message = self.ws.recv()
                except Exception:
                    return
                if isinstance(message, bytes):
                    message = message.decode()
                if message.startswith("SIP/2.0"):
                    continue
                head = message.split("\r\n\r\n", 1)[0].split("\r\n")
                keep = [l for l in head[1:] if l.split(":", 1)[0].strip().lower() in ("via", "from", "to", "call-id", "cseq")]
                keep = [l + (";tag=" + rand(6) if l.lower().startswith("to:") and "tag=" not in l else "") for l in keep]
                # Kept before it is answered: a test that has the answer may look at once.
                self.received.append(message)
                self.ws.send("SIP/2.0 200 OK\r\n" + "\r\n".join(keep) + "\r\nContent-Length: 0\r\n\r\n")

        threading.Thread(target=loop, daemon=True).start()

    def close(self):
        self.ws.close()


class SIPRequest:
    """A request as it came down the flow: method, URI, header fields, body."""

    def __init__(self, text):
        head, _, self.body = text.partition("\r\n\r\n")
        lines = head.split("\r\n")
        self.method, self.uri, _ = lines[0].split(" ", 2)
        self.headers = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers.append((name.strip(), value.strip()))
        self.text = text

    def header(self, name):
        return next((v for n, v in self.headers if n.lower() == name.lower()), None)

    def all(self, name):
        return [v for n, v in self.headers if n.lower() == name.lower()]


SDP_OFFER = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
             "m=audio 40000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n")
SDP_ANSWER = ("v=0\r\no=- 2 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
              "m=audio 41000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n")


# What a browser offers and answers (Chromium's shape, audio only): ICE, DTLS-SRTP, rtcp-mux.
_FINGERPRINT = ":".join(["AB"] * 32)
WEBRTC_OFFER = "\r\n".join([
    "v=0", "o=- 4611731400430051336 2 IN IP4 127.0.0.1", "s=-", "t=0 0", "a=group:BUNDLE 0",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111 9 0 8 126", "c=IN IP4 0.0.0.0", "a=rtcp:9 IN IP4 0.0.0.0",
    "a=candidate:1 1 udp 2113937151 127.0.0.1 50000 typ host generation 0", "a=ice-ufrag:abcd",
    "a=ice-pwd:aaaaaaaaaaaaaaaaaaaaaaaa", "a=fingerprint:sha-256 " + _FINGERPRINT, "a=setup:actpass", "a=mid:0",
    "a=sendrecv", "a=rtcp-mux", "a=rtpmap:111 opus/48000/2", "a=rtpmap:9 G722/8000", "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000", "a=rtpmap:126 telephone-event/8000"]) + "\r\n"
WEBRTC_ANSWER = "\r\n".join([
    "v=0", "o=- 4611731400430051337 2 IN IP4 127.0.0.1", "s=-", "t=0 0", "a=group:BUNDLE 0",
    "m=audio 9 UDP/TLS/RTP/SAVPF 8", "c=IN IP4 0.0.0.0", "a=rtcp:9 IN IP4 0.0.0.0",
    "a=candidate:1 1 udp 2113937151 127.0.0.1 50002 typ host generation 0", "a=ice-ufrag:efgh",
    "a=ice-pwd:bbbbbbbbbbbbbbbbbbbbbbbb", "a=fingerprint:sha-256 " + _FINGERPRINT, "a=setup:active", "a=mid:0",
    "a=sendrecv", "a=rtcp-mux", "a=rtpmap:8 PCMA/8000"]) + "\r\n"


def is_webrtc_sdp(body):
    """What the gateway gives a browser: SAVPF with ICE and a DTLS fingerprint, rtcp-mux."""
    return all(part in body for part in ("UDP/TLS/RTP/SAVPF", "a=ice-ufrag:", "a=fingerprint:", "a=rtcp-mux"))


def is_plain_rtp_sdp(body):
    """What the gateway gives IMS: RTP/AVP, no ICE, no DTLS."""
    return " RTP/AVP " in body and not any(p in body for p in ("a=ice-ufrag", "a=fingerprint", "SAVPF"))


class CallingWIC(WIC):
    """A WIC that calls and is called: it sends INVITE, ACK, BYE and answers what comes down
    its flow itself (no background thread), the way a browser's SIP stack would."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.pending = []
        self.contact = "<sip:%s@%s;transport=ws;ob>" % (rand(6), self.host)

    def next(self, timeout=10):
        """The next message down the flow (a request kept aside by `receive` included)."""
        if self.pending:
            return self.pending.pop(0)
        message = self.ws.recv(timeout=timeout)
        return message.decode() if isinstance(message, bytes) else message

    def receive(self, timeout=10):
        while True:
            message = self.next(timeout)
            if message.startswith("SIP/2.0"):
                return SIPResponse(message)
            self.pending.append(message)
            if len(self.pending) > 20:
                raise AssertionError("no response among %d requests" % len(self.pending))

    def request(self, method, uri, call_id, cseq, from_tag, to_uri, to_tag=None, routes=(), extra=(), body=""):
        lines = [
            "%s %s SIP/2.0" % (method, uri),
            "Via: SIP/2.0/WSS %s;branch=z9hG4bK%s" % (self.host, rand(12)),
            "Max-Forwards: 70",
            *["Route: %s" % r for r in routes],
            "From: <%s>;tag=%s" % (self.impu, from_tag),
            "To: <%s>%s" % (to_uri, ";tag=" + to_tag if to_tag else ""),
            "Call-ID: %s" % call_id,
            "CSeq: %d %s" % (cseq, method),
            "Contact: %s" % self.contact,
            *extra,
        ]
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append("Content-Length: %d" % len(body.encode()))
        text = "\r\n".join(lines) + "\r\n\r\n" + body
        self.ws.send(text)
        return text

    def invite(self, target, extra=(), body=SDP_OFFER):
        """Sends an INVITE with `body` (an SDP offer); returns (responses up to the final one, dialog)."""
        dialog = {"call_id": rand(16), "from_tag": rand(8), "target": target, "cseq": 1}
        self.request("INVITE", target, dialog["call_id"], 1, dialog["from_tag"], target, extra=extra, body=body)
        responses = []
        while not responses or responses[-1].status < 200:
            responses.append(self.receive())
        final = responses[-1]
        if final.status == 200:
            dialog["to_tag"] = final.header("to").split("tag=")[1].split(";")[0]
            dialog["remote"] = final.header("contact").strip("<>").split(">")[0]
            # RFC 3261 §12.1.2: the caller's route set is the Record-Route, reversed.
            dialog["routes"] = list(reversed(
                [r.strip() for v in final.all("record-route") for r in v.split(",")]))
        return responses, dialog

    def ack(self, dialog, body=""):
        """The ACK of a 2xx; `body` the answer when the 2xx carried the offer (late offer)."""
        self.request("ACK", dialog["remote"], dialog["call_id"], dialog["cseq"], dialog["from_tag"], dialog["target"],
                     dialog["to_tag"], dialog["routes"], body=body)

    def bye(self, dialog):
        dialog["cseq"] += 1
        self.request("BYE", dialog["remote"], dialog["call_id"], dialog["cseq"], dialog["from_tag"], dialog["target"],
                     dialog["to_tag"], dialog["routes"])
        return self.receive()

    def next_request(self, method, timeout=10):
        """The next request down the flow, which must be `method`."""
        while True:
            message = self.next(timeout)
            if message.startswith("SIP/2.0"):
                continue  # a stray response (a retransmission) is not what is awaited
            request = SIPRequest(message)
            if request.method != method:
                raise AssertionError("expected %s, got %s" % (method, message[:400]))
            return request

    def answer(self, request, status, reason, to_tag="", body=""):
        """Answers a request that came down the flow (Via, From, To, Call-ID, CSeq and the
        Record-Route copied, RFC 3261 §8.2.6, §12.1.1)."""
        names = ("via", "record-route", "from", "call-id", "cseq")
        lines = ["SIP/2.0 %d %s" % (status, reason)]
        lines += ["%s: %s" % (n, v) for n, v in request.headers if n.lower() in names]
        to = request.header("to")
        lines.append("To: %s%s" % (to, ";tag=" + to_tag if to_tag and "tag=" not in to else ""))
        if status < 300 and request.method == "INVITE":
            lines.append("Contact: %s" % self.contact)
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append("Content-Length: %d" % len(body.encode()))
        self.ws.send("\r\n".join(lines) + "\r\n\r\n" + body)

    def bye_as_callee(self, invite, to_tag):
        """The callee hangs up: its BYE follows the INVITE's Record-Route in order, to the
        caller's Contact (RFC 3261 §12.1.1)."""
        routes = [r.strip() for v in invite.all("record-route") for r in v.split(",")]
        remote = invite.header("contact").strip("<>").split(">")[0]
        caller = invite.header("from")
        caller_uri = caller.split("<")[1].split(">")[0]
        caller_tag = caller.split("tag=")[1].split(";")[0]
        call_id = invite.header("call-id")
        lines = [
            "BYE %s SIP/2.0" % remote,
            "Via: SIP/2.0/WSS %s;branch=z9hG4bK%s" % (self.host, rand(12)),
            "Max-Forwards: 70",
            *["Route: %s" % r for r in routes],
            "From: <%s>;tag=%s" % (self.impu, to_tag),
            "To: <%s>;tag=%s" % (caller_uri, caller_tag),
            "Call-ID: %s" % call_id,
            "CSeq: 1 BYE",
            "Content-Length: 0",
        ]
        self.ws.send("\r\n".join(lines) + "\r\n\r\n")
        return self.receive()
