// Unit tests of wic.js: `node --test wic/test/`.
import { readFileSync } from "node:fs";
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseMessage, header, headerValues, buildMessage, params, parseAuth, addressURI, md5, digestResponse, refreshDelay, backoffDelay, redact, splitCommas, randomToken, secureRandom, WIC } from "../wic.js";

test("md5 matches RFC 1321 test suite", () => {
  assert.equal(md5(""), "d41d8cd98f00b204e9800998ecf8427e");
  assert.equal(md5("abc"), "900150983cd24fb0d6963f7d28e17f72");
  assert.equal(md5("message digest"), "f96b697d7cb7938d525a2f31aaf161d0");
  assert.equal(md5("12345678901234567890123456789012345678901234567890123456789012345678901234567890"), "57edf4a22be3c955ac49da2e2107b67a");
});

test("HTTP Digest, RFC 2617 §3.5 example (spec.md §10.4)", async () => {
  const r = await digestResponse({ username: "Mufasa", realm: "testrealm@host.com", password: "Circle Of Life", method: "GET", uri: "/dir/index.html", nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093", qop: "auth", nc: "00000001", cnonce: "0a4f113b" });
  assert.equal(r, "6629fae49393a05397450978507c4ef1");
});

test("HTTP Digest SHA-256, RFC 7616 §3.9.1 example", async () => {
  const r = await digestResponse({ algorithm: "SHA-256", username: "Mufasa", realm: "http-auth@example.org", password: "Circle of Life", method: "GET", uri: "/dir/index.html", nonce: "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", qop: "auth", nc: "00000001", cnonce: "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ" });
  assert.equal(r, "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1");
});

test("parses a 200 OK with folded and compact headers", () => {
  const text = "SIP/2.0 200 OK\r\nv: SIP/2.0/WSS a.invalid;branch=z9hG4bK1\r\nP-Associated-URI: <sip:alice@ims.example.com>,\r\n <tel:+15551234>\r\nm: <sip:x@a.invalid;transport=ws>;expires=600;pub-gruu=\"sip:alice@ims.example.com;gr=urn:uuid:1\"\r\nl: 0\r\n\r\n";
  const m = parseMessage(text);
  assert.equal(m.status, 200);
  assert.equal(header(m, "Via"), "SIP/2.0/WSS a.invalid;branch=z9hG4bK1");
  assert.deepEqual(headerValues(m, "p-associated-uri").map(addressURI), ["sip:alice@ims.example.com", "tel:+15551234"]);
  const contact = params(header(m, "contact"));
  assert.equal(contact.expires, "600");
  assert.equal(contact["pub-gruu"], "sip:alice@ims.example.com;gr=urn:uuid:1");
  assert.equal(params(header(m, "via")).branch, "z9hG4bK1");
});

test("parses requests and refuses garbage", () => {
  const m = parseMessage("NOTIFY sip:x@a.invalid;transport=ws SIP/2.0\r\nEvent: reg\r\n\r\n<reginfo/>");
  assert.equal(m.method, "NOTIFY");
  assert.equal(m.body, "<reginfo/>");
  assert.throws(() => parseMessage("HTTP/1.1 200 OK\r\n\r\n"));
  assert.throws(() => parseMessage("SIP/2.0 200 OK\r\nno colon here\r\n\r\n"));
  assert.throws(() => parseMessage(42));
});

test("auth headers: quoted commas are not split", () => {
  const a = parseAuth('Digest realm="ims.example.com", nonce="a,b", qop="auth,auth-int", algorithm=SHA-256');
  assert.equal(a.scheme, "digest");
  assert.equal(a.params.nonce, "a,b");
  assert.equal(a.params.qop, "auth,auth-int");
  assert.equal(a.params.algorithm, "SHA-256");
  const b = parseAuth('Bearer realm="ims.example.com", error="invalid_token", authz_server="https://waf"');
  assert.equal(b.params.error, "invalid_token");
  assert.deepEqual(splitCommas('<sip:a;x="1,2">, "Bob, Jr" <sip:b>'), ['<sip:a;x="1,2">', '"Bob, Jr" <sip:b>']);
});

test("builds a message with Content-Length and round-trips", () => {
  const text = buildMessage({ method: "REGISTER", uri: "sip:ims.example.com", headers: [["Via", "SIP/2.0/WSS h.invalid;branch=z9hG4bKx"], ["Content-Length", "99"]], body: "é" });
  assert.match(text, /Content-Length: 2\r\n\r\né$/);
  assert.equal(parseMessage(text).uri, "sip:ims.example.com");
});

test("refresh timing follows 24.229 5.1.1.4.1 and the token", () => {
  assert.equal(refreshDelay(3600, 0, 0), 3000 * 1000); // > 1200 s: 600 s before expiry
  assert.equal(refreshDelay(1200, 0, 0), 600 * 1000); // ≤ 1200 s: half-way
  assert.equal(refreshDelay(20, 0, 0), 10 * 1000);
  // A token with 20 s left, granted 3600: refresh before the token lapses.
  const now = 1_000_000;
  const d = refreshDelay(3600, now + 20_000, now);
  assert.ok(d < 20_000 && d >= 1000, String(d));
  assert.ok(refreshDelay(0, 0, 0) >= 1000); // never a busy loop
});

test("backoff grows, is capped, and is jittered", () => {
  assert.equal(backoffDelay(0, () => 0), 500);
  assert.equal(backoffDelay(10, () => 1), 30000);
  const spread = new Set(Array.from({ length: 20 }, (_, i) => backoffDelay(4, () => i / 20)));
  assert.ok(spread.size > 10);
  for (let a = 0; a < 30; a++) assert.ok(backoffDelay(a, Math.random) <= 30000);
});

test("the trace never shows a token or a digest response", () => {
  const t = redact('REGISTER sip:x SIP/2.0\r\nAuthorization: Bearer eyJ.abc.def\r\n\r\n');
  assert.ok(!t.includes("eyJ"));
  const d = redact('Authorization: Digest username="a", response="0123abcd"\r\n');
  assert.ok(!d.includes("0123abcd"));
});

// A scripted eP-CSCF behind a fake WebSocket, and a fake clock.
class FakeClock {
  constructor() { this.t = 1_000_000; this.timers = []; this.id = 0; }
  now() { return this.t; }
  setTimeout(f, ms) { const id = ++this.id; this.timers.push({ id, at: this.t + ms, f }); return id; }
  clearTimeout(id) { this.timers = this.timers.filter((x) => x.id !== id); }
  async advance(ms) {
    const end = this.t + ms;
    for (;;) {
      this.timers.sort((a, b) => a.at - b.at);
      const next = this.timers[0];
      if (!next || next.at > end) break;
      this.timers.shift();
      this.t = next.at;
      next.f();
      await new Promise((r) => setImmediate(r));
      await new Promise((r) => setImmediate(r));
    }
    this.t = end;
  }
}

function fakeNetwork(answer) {
  const sockets = [];
  class FakeWS {
    constructor(url, protocol) {
      this.url = url; this.protocol = protocol; this.readyState = 0; this.sent = [];
      sockets.push(this);
      setImmediate(() => { this.readyState = 1; this.onopen?.(); });
    }
    send(text) {
      this.sent.push(text);
      const request = parseMessage(text);
      const reply = answer(request, this);
      if (reply) setImmediate(() => this.onmessage?.({ data: reply }));
    }
    close() { this.readyState = 3; }
    drop() { this.readyState = 3; this.onclose?.(); }
  }
  return { FakeWS, sockets };
}

function ok(request, expires) {
  const copy = ["via", "from", "to", "call-id", "cseq"].map((n) => [n, header(request, n)]);
  if (request.method !== "REGISTER") return buildMessage({ status: 200, reason: "OK", headers: copy });
  const contact = header(request, "contact").replace(/;expires=\d+/, "") + `;expires=${expires}`;
  return buildMessage({ status: 200, reason: "OK", headers: [...copy, ["Contact", contact], ["P-Associated-URI", "<sip:alice@ims.example.com>"], ["Service-Route", "<sip:orig@scscf;lr>"], ["Path", "<sip:fl-1@ep;lr;ob>"]] });
}

function until(predicate, clock) {
  return (async () => { for (let i = 0; i < 200 && !predicate(); i++) await new Promise((r) => setImmediate(r)); })();
}

test("token registration, refresh with a fresh token on the same socket, reconnect with backoff", async () => {
  const clock = new FakeClock();
  let issued = 0;
  const registers = [];
  const { FakeWS, sockets } = fakeNetwork((request) => {
    if (request.method === "REGISTER") registers.push(request);
    return ok(request, 20);
  });
  const wic = new WIC({ wwsf: "https://w", epcscf: "wss://e", homeDomain: "ims.example.com", WebSocket: FakeWS, clock, storage: null, random: () => 0.5 });
  wic.useToken(async () => ({ token: `tok${++issued}`, expires_at: clock.now() / 1000 + 20, impus: ["sip:alice@ims.example.com"] }));
  const events = [];
  for (const name of ["registered", "refreshing", "reconnecting"]) wic.addEventListener(name, () => events.push(name));
  const reg = await wic.register();
  assert.equal(reg.impu, "sip:alice@ims.example.com");
  assert.equal(reg.expires, 20);
  assert.match(header(registers[0], "authorization"), /^Bearer tok1$/);
  assert.match(header(registers[0], "contact"), /\+sip\.instance="<urn:uuid:[0-9a-f-]{36}>";reg-id=1/);
  assert.equal(header(registers[0], "supported"), "path, outbound, gruu");
  // Refreshes at half of 20 s, each with a new token, on the same socket, same Call-ID.
  await clock.advance(10_500);
  await until(() => registers.length >= 2);
  assert.equal(registers.length, 2);
  assert.match(header(registers[1], "authorization"), /^Bearer tok2$/);
  assert.equal(header(registers[1], "call-id"), header(registers[0], "call-id"));
  assert.equal(sockets.filter((s) => s.sent.some((t) => t.startsWith("REGISTER"))).length, 1);
  // The socket drops: reconnect after a jittered backoff, then register again.
  sockets[0].drop();
  assert.equal(wic.state, "reconnecting");
  await clock.advance(1_000);
  await until(() => registers.length >= 3 && wic.state === "registered");
  assert.equal(registers.length, 3);
  assert.equal(sockets.length, 2);
  assert.equal(wic.state, "registered");
  assert.deepEqual(events.slice(0, 3), ["registered", "refreshing", "registered"]);
  assert.ok(events.includes("reconnecting"));
  await wic.unregister();
  assert.equal(header(parseMessage(sockets[1].sent.filter((t) => t.startsWith("REGISTER")).at(-1)), "expires"), "0");
});

test("page hide sends the de-registration as SIP text without waiting", async () => {
  const { FakeWS, sockets } = fakeNetwork((request) => ok(request, 600));
  const wic = new WIC({ wwsf: "https://w", epcscf: "wss://e", homeDomain: "ims.example.com", WebSocket: FakeWS, clock: new FakeClock(), storage: null });
  wic.useToken(async () => ({ token: "tok1", expires_at: Date.now() / 1000 + 3600, impus: ["sip:alice@ims.example.com"] }));
  await wic.register();
  const page = new EventTarget();
  wic.unregisterOnPageHide(page);
  page.dispatchEvent(new Event("pagehide"));
  const last = parseMessage(sockets[0].sent.at(-1));
  assert.equal(last.method, "REGISTER");
  assert.equal(header(last, "expires"), "0");
  assert.equal(header(last, "authorization"), "Bearer tok1");
});

test("wic.js stays within its 40 KB budget (40,000 bytes, one module)", () => {
  const size = readFileSync(new URL("../wic.js", import.meta.url)).length;
  assert.ok(size <= 40000, `wic.js is ${size} bytes`);
});

test("digest: answers the 401, and a refused token is replaced once", async () => {
  const clock = new FakeClock();
  const seen = [];
  const { FakeWS } = fakeNetwork((request) => {
    if (request.method !== "REGISTER") return ok(request, 600);
    seen.push(header(request, "authorization"));
    const auth = parseAuth(header(request, "authorization"));
    if (auth.scheme === "digest" && !auth.params.response) {
      const copy = ["via", "from", "to", "call-id", "cseq"].map((n) => [n, header(request, n)]);
      return buildMessage({ status: 401, reason: "Unauthorized", headers: [...copy, ["WWW-Authenticate", 'Digest realm="ims.example.com", nonce="n1", qop="auth", algorithm=MD5']] });
    }
    return ok(request, 600);
  });
  const wic = new WIC({ wwsf: "https://w", epcscf: "wss://e", homeDomain: "ims.example.com", WebSocket: FakeWS, clock, storage: null });
  wic.useDigest({ impi: "alice@ims.example.com", impu: "sip:alice@ims.example.com", password: "pw" });
  await wic.register();
  assert.equal(wic.state, "registered");
  assert.match(seen[0], /response=""/);
  const second = parseAuth(seen[1]).params;
  const expected = await digestResponse({ username: "alice@ims.example.com", realm: "ims.example.com", password: "pw", method: "REGISTER", uri: "sip:ims.example.com", nonce: "n1", qop: "auth", nc: second.nc, cnonce: second.cnonce });
  assert.equal(second.response, expected);

  // Bearer refused once → a new token, then the second refusal stops with a reason.
  const tokens = [];
  const { FakeWS: WS2 } = fakeNetwork((request) => {
    if (request.method !== "REGISTER") return ok(request, 600);
    tokens.push(header(request, "authorization"));
    const copy = ["via", "from", "to", "call-id", "cseq"].map((n) => [n, header(request, n)]);
    return buildMessage({ status: 401, reason: "Unauthorized", headers: [...copy, ["WWW-Authenticate", 'Bearer realm="ims.example.com", error="invalid_token"']] });
  });
  const w2 = new WIC({ wwsf: "https://w", epcscf: "wss://e", homeDomain: "ims.example.com", WebSocket: WS2, clock, storage: null });
  let n = 0;
  w2.useToken(async () => ({ token: `t${++n}`, expires_at: 2e9, impus: ["sip:alice@ims.example.com"] }));
  let failure = null;
  w2.addEventListener("failed", (e) => { failure = e.detail.reason; });
  await w2.register();
  assert.deepEqual(tokens, ["Bearer t1", "Bearer t2"]);
  assert.equal(w2.state, "failed");
  assert.match(failure, /token/);
});

test("423 uses Min-Expires; the instance id is kept in storage", async () => {
  const clock = new FakeClock();
  const expiresSent = [];
  const { FakeWS } = fakeNetwork((request) => {
    if (request.method !== "REGISTER") return ok(request, 600);
    const e = Number(header(request, "expires"));
    expiresSent.push(e);
    if (e < 3600) {
      const copy = ["via", "from", "to", "call-id", "cseq"].map((n) => [n, header(request, n)]);
      return buildMessage({ status: 423, reason: "Interval Too Brief", headers: [...copy, ["Min-Expires", "3600"]] });
    }
    return ok(request, 3600);
  });
  const store = new Map();
  const storage = { getItem: (k) => store.get(k) ?? null, setItem: (k, v) => store.set(k, v) };
  const wic = new WIC({ wwsf: "https://w", epcscf: "wss://e", homeDomain: "ims.example.com", WebSocket: FakeWS, clock, storage, expires: 60 });
  wic.useToken(async () => ({ token: "t", expires_at: 2e9, impus: ["sip:alice@ims.example.com"] }));
  await wic.register();
  assert.deepEqual(expiresSent.slice(0, 2), [60, 3600]);
  const again = new WIC({ wwsf: "https://w", epcscf: "wss://e", homeDomain: "ims.example.com", WebSocket: FakeWS, clock, storage });
  assert.equal(again.instanceId, wic.instanceId);
});

test("a reg-event NOTIFY terminating our contact surfaces as a network de-registration", async () => {
  const clock = new FakeClock();
  let socket = null;
  const { FakeWS } = fakeNetwork((request, ws) => { socket = ws; return ok(request, 600); });
  const wic = new WIC({ wwsf: "https://w", epcscf: "wss://e", homeDomain: "ims.example.com", WebSocket: FakeWS, clock, storage: null });
  wic.useToken(async () => ({ token: "t", expires_at: 2e9, impus: ["sip:alice@ims.example.com"] }));
  await wic.register();
  await until(() => socket && socket.sent.some((t) => t.startsWith("SUBSCRIBE ")));
  const subscribe = parseMessage(socket.sent.find((t) => t.startsWith("SUBSCRIBE ")));
  assert.equal(header(subscribe, "event"), "reg");
  assert.equal(header(subscribe, "route"), "<sip:orig@scscf;lr>"); // the Service-Route
  let reason = null;
  wic.addEventListener("unregistered", (e) => { reason = e.detail.reason; });
  const host = wic._host;
  const xml = `<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="1" state="full"><registration aor="sip:alice@ims.example.com" id="a" state="terminated"><contact id="c" state="terminated" event="deactivated"><uri>sip:x@${host};transport=ws</uri></contact></registration></reginfo>`;
  const notify = buildMessage({ method: "NOTIFY", uri: `sip:x@${host};transport=ws`, headers: [["Via", "SIP/2.0/WSS ep;branch=z9hG4bKn1"], ["From", "<sip:alice@ims.example.com>;tag=s"], ["To", "<sip:alice@ims.example.com>;tag=w"], ["Call-ID", "n1"], ["CSeq", "2 NOTIFY"], ["Event", "reg"], ["Subscription-State", "terminated"]], body: xml });
  socket.onmessage({ data: notify });
  assert.equal(reason, "network (deactivated)");
  assert.equal(wic.state, "idle");
  const answer = parseMessage(socket.sent.at(-1));
  assert.equal(answer.status, 200); // the NOTIFY was answered
});

test("tokens, cnonces and the instance ID come from Web Crypto, not Math.random", () => {
  const original = Math.random;
  Math.random = () => 0;  // a Math.random anyone could predict
  try {
    for (let i = 0; i < 100; i++) {
      const x = secureRandom();
      assert.ok(x >= 0 && x < 1);
    }
    assert.notEqual(randomToken(16), randomToken(16));
    assert.notEqual(randomToken(16), "a".repeat(16));
    const wic = new WIC({ wwsf: "https://w", epcscf: "wss://e", homeDomain: "ims.example.com", WebSocket: class {}, storage: null });
    // Version 4, RFC 4122 variant, from Web Crypto.
    assert.match(wic.instanceId, /^<urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}>$/);
    assert.notEqual(wic._callId, "a".repeat(20));
  } finally {
    Math.random = original;
  }
});

// ----- calls: a fake RTCPeerConnection and microphone; the network scripted per test

class FakePC {
  constructor() { this.localDescription = null; this.remote = []; this.iceGatheringState = "complete"; this.tones = []; this.closed = false; this.signalingState = "stable"; }
  async createOffer() { return { type: "offer", sdp: "v=0\r\no=- offer\r\n" }; }
  async createAnswer() { return { type: "answer", sdp: "v=0\r\no=- answer\r\n" }; }
  async setLocalDescription(d) {
    this.localDescription = d.type === "rollback" ? null : d;
    this.signalingState = d.type === "offer" ? "have-local-offer" : "stable";
  }
  async setRemoteDescription(d) {
    this.remote.push(d);
    this.signalingState = d.type === "offer" ? "have-remote-offer" : "stable";
  }
  addTrack() {}
  addEventListener() {}
  getSenders() { return [{ track: { kind: "audio" }, dtmf: { insertDTMF: (t) => this.tones.push(t) } }]; }
  async getStats() { return new Map(); }
  close() { this.closed = true; }
}

const fakeMedia = async () => ({ getTracks: () => [], getAudioTracks: () => [] });

function respond(request, status, reason, { tag, headers = [], body = "" } = {}) {
  const copy = ["via", "record-route", "from", "to", "call-id", "cseq"].flatMap((n) => request.headers.filter(([h]) => h === n));
  const out = copy.map(([n, v]) => [n, n === "to" && tag && !/tag=/.test(v) ? `${v};tag=${tag}` : v]);
  if (body) out.push(["Content-Type", "application/sdp"]);
  return buildMessage({ status, reason, headers: [...out, ...headers], body });
}

async function callingWIC(onRequest) {
  const clock = new FakeClock();
  const pcs = [];
  const { FakeWS, sockets } = fakeNetwork((request, ws) => {
    if (request.method === "REGISTER" || request.method === "SUBSCRIBE") return ok(request, 600);
    const replies = onRequest(request) || [];
    for (const reply of replies) setImmediate(() => ws.onmessage?.({ data: reply }));
    return null;
  });
  class PC extends FakePC { constructor() { super(); pcs.push(this); } }
  const wic = new WIC({ wwsf: "https://w", epcscf: "wss://e", homeDomain: "ims.example.com", WebSocket: FakeWS, clock, storage: null,
    RTCPeerConnection: PC, getUserMedia: fakeMedia });
  wic.useToken(async () => ({ token: "tok1", expires_at: clock.now() / 1000 + 3600, impus: ["sip:alice@ims.example.com"] }));
  await wic.register();
  const sent = (method) => sockets[0].sent.filter((t) => t.startsWith(method + " ")).map(parseMessage);
  const push = (text) => sockets[0].onmessage({ data: text });
  return { wic, clock, pcs, sent, push, sockets };
}

const RR = [["Record-Route", "<sip:scscf;lr>"], ["Record-Route", "<sip:fl-1@ep;lr>"]];

test("an outgoing call: INVITE with the offer and the token, ringing, 200 → ACK by the route set, BYE", async () => {
  const net = await callingWIC((r) => {
    if (r.method === "INVITE") {
      return [respond(r, 100, "Trying"), respond(r, 180, "Ringing", { tag: "b1", headers: RR }),
        respond(r, 200, "OK", { tag: "b1", headers: [...RR, ["Contact", "<sip:bob@10.0.0.2>"]], body: "v=0\r\no=- phone\r\n" })];
    }
    if (r.method === "BYE") return [respond(r, 200, "OK")];
  });
  const states = [];
  assert.equal(net.wic.targetURI("bob"), "sip:bob@ims.example.com");
  assert.equal(net.wic.targetURI("+1 555 0001"), "tel:+15550001");
  const call = net.wic.call("bob");
  call.addEventListener("state", () => states.push(call.state));
  await until(() => call.state === "established");
  const [invite] = net.sent("INVITE");
  assert.equal(invite.uri, "sip:bob@ims.example.com");
  assert.equal(header(invite, "authorization"), "Bearer tok1");  // TS 24.371 7.2.1
  assert.equal(header(invite, "route"), "<sip:orig@scscf;lr>");
  assert.equal(header(invite, "p-preferred-identity"), "<sip:alice@ims.example.com>");
  assert.equal(header(invite, "content-type"), "application/sdp");
  assert.equal(invite.body, "v=0\r\no=- offer\r\n");
  assert.deepEqual(states, ["ringing", "established"]);
  assert.deepEqual(net.pcs[0].remote, [{ type: "answer", sdp: "v=0\r\no=- phone\r\n" }]);
  // RFC 3261 §12.1.2: ACK to the Contact, by the Record-Route reversed, with the to-tag.
  const [ack] = net.sent("ACK");
  assert.equal(ack.uri, "sip:bob@10.0.0.2");
  assert.deepEqual(headerValues(ack, "route"), ["<sip:fl-1@ep;lr>", "<sip:scscf;lr>"]);
  assert.match(header(ack, "to"), /;tag=b1$/);
  assert.equal(header(ack, "cseq"), "1 ACK");
  call.sendDTMF("12");
  assert.deepEqual(net.pcs[0].tones, ["12"]);
  call.hangup();
  await until(() => net.sent("BYE").length === 1);
  const [bye] = net.sent("BYE");
  assert.equal(header(bye, "cseq"), "2 BYE");
  assert.deepEqual(headerValues(bye, "route"), ["<sip:fl-1@ep;lr>", "<sip:scscf;lr>"]);
  assert.equal(header(bye, "authorization"), "Bearer tok1");
  assert.equal(call.state, "ended");
  assert.ok(net.pcs[0].closed);
});

test("a refused call is ACKed hop by hop; a call hung up while ringing is CANCELled", async () => {
  let invites = 0;
  const net = await callingWIC((r) => {
    if (r.method === "INVITE" && ++invites === 1) return [respond(r, 486, "Busy Here", { tag: "x" })];
    if (r.method === "INVITE") return [respond(r, 180, "Ringing", { tag: "y" })];
    if (r.method === "CANCEL") return [respond(r, 200, "OK")];
  });
  const busy = net.wic.call("sip:bob@ims.example.com");
  const ended = new Promise((r) => busy.addEventListener("ended", (e) => r(e.detail)));
  assert.deepEqual(await ended, { reason: "Busy Here", status: 486 });
  const [invite] = net.sent("INVITE");
  const [ack] = net.sent("ACK");
  assert.equal(params(header(ack, "via")).branch, params(header(invite, "via")).branch);  // §17.1.1.3
  assert.equal(header(ack, "cseq"), "1 ACK");
  const ringing = net.wic.call("bob");
  await until(() => ringing.state === "ringing");
  ringing.hangup();
  const [cancel] = net.sent("CANCEL");
  assert.equal(params(header(cancel, "via")).branch, params(header(net.sent("INVITE")[1], "via")).branch);
  assert.equal(header(cancel, "cseq"), "1 CANCEL");
  assert.equal(ringing.state, "ended");
});

function incomingInvite(callId = "in-1", cseq = 1, extra = [], body = "v=0\r\no=- bob\r\n") {
  return buildMessage({ method: "INVITE", uri: "sip:x@h.invalid;transport=ws", headers: [
    ["Via", "SIP/2.0/WSS ep;branch=z9hG4bKin" + cseq], ...RR, ["From", '"Bob" <sip:bob@ims.example.com>;tag=bt'],
    ["To", "<sip:alice@ims.example.com>"], ["Call-ID", callId], ["CSeq", `${cseq} INVITE`], ["Contact", "<sip:bob@10.0.0.2>"],
    ["P-Asserted-Identity", "<sip:bob@ims.example.com>"], ...(body ? [["Content-Type", "application/sdp"]] : []), ...extra], body });
}

test("an incoming call rings at once; answer sends 200 with the answer until the ACK; the caller's BYE ends it", async () => {
  const net = await callingWIC(() => null);
  const incoming = new Promise((r) => net.wic.addEventListener("incoming", (e) => r(e.detail.call)));
  net.push(incomingInvite());
  const call = await incoming;
  assert.equal(call.remoteIdentity, "sip:bob@ims.example.com");
  assert.equal(call.remoteName, "Bob");
  const responses = () => net.sockets[0].sent.filter((t) => t.startsWith("SIP/2.0")).map(parseMessage).filter((m) => header(m, "call-id") === "in-1");
  assert.deepEqual(responses().map((m) => m.status), [180]);
  assert.deepEqual(headerValues(responses()[0], "record-route"), ["<sip:scscf;lr>", "<sip:fl-1@ep;lr>"]);
  await call.answer();
  const ok200 = responses().at(-1);
  assert.equal(ok200.status, 200);
  assert.equal(ok200.body, "v=0\r\no=- answer\r\n");
  assert.match(header(ok200, "contact"), /;transport=ws;ob>$/);
  assert.equal(params(header(ok200, "to")).tag, params(header(responses()[0], "to")).tag);
  await net.clock.advance(600);
  assert.equal(responses().filter((m) => m.status === 200).length, 2);  // retransmitted: no ACK yet
  net.push(buildMessage({ method: "ACK", uri: "sip:x@h.invalid", headers: [["Via", "SIP/2.0/WSS ep;branch=z9hG4bKack"], ["Call-ID", "in-1"], ["CSeq", "1 ACK"]] }));
  await net.clock.advance(5000);
  assert.equal(responses().filter((m) => m.status === 200).length, 2);
  // Bob hangs up; Alice's in-dialog requests would go by the Record-Route in order.
  net.push(buildMessage({ method: "BYE", uri: "sip:x@h.invalid", headers: [["Via", "SIP/2.0/WSS ep;branch=z9hG4bKbye"], ["From", "<sip:bob@ims.example.com>;tag=bt"],
    ["To", `<sip:alice@ims.example.com>;tag=${call._tag}`], ["Call-ID", "in-1"], ["CSeq", "2 BYE"]] }));
  await until(() => call.state === "ended");
  assert.equal(responses().at(-1).status, 200);
  assert.equal(header(responses().at(-1), "cseq"), "2 BYE");
});

test("an INVITE without SDP (late offer): the 200 carries our offer, the ACK its answer", async () => {
  const net = await callingWIC(() => null);
  const incoming = new Promise((r) => net.wic.addEventListener("incoming", (e) => r(e.detail.call)));
  net.push(incomingInvite("in-3", 1, [], ""));
  const call = await incoming;
  await call.answer();
  const ok200 = net.sockets[0].sent.filter((t) => t.startsWith("SIP/2.0 200")).map(parseMessage).at(-1);
  assert.equal(ok200.body, "v=0\r\no=- offer\r\n");
  assert.equal(header(ok200, "content-type"), "application/sdp");
  assert.deepEqual(net.pcs[0].remote, []);
  net.push(buildMessage({ method: "ACK", uri: "sip:x@h.invalid", headers: [["Via", "SIP/2.0/WSS ep;branch=z9hG4bKack3"], ["Call-ID", "in-3"],
    ["CSeq", "1 ACK"], ["Content-Type", "application/sdp"]], body: "v=0\r\no=- bob answers\r\n" }));
  await until(() => net.pcs[0].remote.length === 1);
  assert.deepEqual(net.pcs[0].remote, [{ type: "answer", sdp: "v=0\r\no=- bob answers\r\n" }]);
  assert.equal(call.state, "established");
  // A re-INVITE without SDP is answered with an offer too.
  net.push(incomingInvite("in-3", 2, [], "").replace("To: <sip:alice@ims.example.com>", `To: <sip:alice@ims.example.com>;tag=${call._tag}`));
  await until(() => net.sockets[0].sent.some((t) => t.startsWith("SIP/2.0 200") && t.includes("CSeq: 2 INVITE")));
  assert.match(net.sockets[0].sent.filter((t) => t.includes("CSeq: 2 INVITE")).at(-1), /o=- offer/);
});

test("a MESSAGE (RFC 3428) is answered 200 and surfaces as an `im` event", async () => {
  const net = await callingWIC(() => null);
  const received = new Promise((r) => net.wic.addEventListener("im", (e) => r(e.detail)));
  net.push(buildMessage({ method: "MESSAGE", uri: "sip:x@h.invalid", headers: [["Via", "SIP/2.0/WSS ep;branch=z9hG4bKim"],
    ["From", "<sip:bob@ims.example.com>;tag=b"], ["To", "<sip:alice@ims.example.com>"], ["Call-ID", "im-1"], ["CSeq", "1 MESSAGE"],
    ["Content-Type", "text/plain"]], body: "hello" }));
  assert.deepEqual(await received, { from: "sip:bob@ims.example.com", text: "hello" });
  const answer = parseMessage(net.sockets[0].sent.filter((t) => t.startsWith("SIP/2.0")).at(-1));
  assert.equal(answer.status, 200);
  assert.equal(header(answer, "cseq"), "1 MESSAGE");
});

test("an incoming call cancelled while it rings gets 200 for the CANCEL and 487", async () => {
  const net = await callingWIC(() => null);
  const incoming = new Promise((r) => net.wic.addEventListener("incoming", (e) => r(e.detail.call)));
  net.push(incomingInvite("in-2"));
  const call = await incoming;
  net.push(buildMessage({ method: "CANCEL", uri: "sip:x@h.invalid", headers: [["Via", "SIP/2.0/WSS ep;branch=z9hG4bKin1"], ["From", '<sip:bob@ims.example.com>;tag=bt'],
    ["To", "<sip:alice@ims.example.com>"], ["Call-ID", "in-2"], ["CSeq", "1 CANCEL"]] }));
  await until(() => call.state === "ended");
  const statuses = net.sockets[0].sent.filter((t) => t.startsWith("SIP/2.0")).map(parseMessage)
    .filter((m) => header(m, "call-id") === "in-2").map((m) => `${m.status} ${header(m, "cseq")}`);
  assert.deepEqual(statuses, ["180 1 INVITE", "200 1 CANCEL", "487 1 INVITE"]);
});

test("re-INVITE glare: theirs is answered 491 while ours is pending; ours is tried again after a 491", async () => {
  let reinvites = 0;
  let net;
  net = await callingWIC((r) => {
    if (r.method !== "INVITE") return null;
    if (!params(header(r, "to")).tag) return [respond(r, 200, "OK", { tag: "b1", headers: [["Contact", "<sip:bob@10.0.0.2>"]], body: "v=0\r\n" })];
    if (++reinvites === 1) {
      // Bob re-INVITEs at the same moment: glare.
      setImmediate(() => net.push(incomingInvite(header(r, "call-id"), 7, [])
        .replace("To: <sip:alice@ims.example.com>", `To: <sip:alice@ims.example.com>;tag=${params(header(r, "from")).tag}`)));
      return [respond(r, 491, "Request Pending")];
    }
    return [respond(r, 200, "OK", { body: "v=0\r\no=- re\r\n" })];
  });
  const call = net.wic.call("bob");
  await until(() => call.state === "established");
  const done = call.renegotiate();
  await until(() => net.sockets[0].sent.some((t) => t.startsWith("SIP/2.0 491")));
  assert.ok(net.sockets[0].sent.some((t) => t.startsWith("SIP/2.0 491")), "their re-INVITE during ours: 491");
  await net.clock.advance(4100);  // RFC 3261 §14.1: 2.1–4 s, then again
  const response = await done;
  assert.equal(response.status, 200);
  assert.equal(reinvites, 2);
  assert.deepEqual(net.pcs[0].remote.at(-1), { type: "answer", sdp: "v=0\r\no=- re\r\n" });
});
