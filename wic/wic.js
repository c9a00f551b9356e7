// wic.js — the webims WebRTC IMS Client (WIC): one dependency-free ES module. It finds the
// WWSF, logs in, registers over WSS to the eP-CSCF (RFC 7118) with a WAF token (TS 24.371)
// or SIP Digest, and makes and takes calls. API: README.md beside this file.

// ==== SIP messages (RFC 3261 §7; one per WebSocket message)

/** Parses one SIP message; throws on anything that is not one. */
export function parseMessage(text) {
  if (typeof text !== "string") throw new Error("not text");
  const split = text.indexOf("\r\n\r\n");
  const body = split < 0 ? "" : text.slice(split + 4);
  // Continuation lines unfolded (RFC 3261 §7.3.1).
  const lines = (split < 0 ? text : text.slice(0, split)).replace(/\r\n[ \t]+/g, " ").split("\r\n");
  const message = { headers: [], body };
  let m;
  if ((m = /^SIP\/2\.0 (\d{3}) ?(.*)$/.exec(lines[0]))) Object.assign(message, { status: Number(m[1]), reason: m[2] });
  else if ((m = /^([A-Z]+) (\S+) SIP\/2\.0$/.exec(lines[0]))) Object.assign(message, { method: m[1], uri: m[2] });
  else throw new Error("not a SIP start line");
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(":");
    if (colon <= 0) throw new Error("bad header line");
    message.headers.push([expandCompact(line.slice(0, colon).trim()), line.slice(colon + 1).trim()]);
  }
  return message;
}

const COMPACT = { v: "via", f: "from", t: "to", i: "call-id", m: "contact", l: "content-length", c: "content-type", k: "supported", o: "event", u: "allow-events" };
const expandCompact = (name) => COMPACT[name.toLowerCase()] || name.toLowerCase();

/** A header's first value (any case, compact forms too). */
export function header(message, name) {
  const key = expandCompact(name);
  return message.headers.find(([n]) => n === key)?.[1];
}

/** Every value of a header, split at commas (not for auth headers). */
export function headerValues(message, name) {
  const key = expandCompact(name);
  return message.headers.filter(([n]) => n === key).flatMap(([, v]) => splitCommas(v));
}

/** Splits on commas outside quotes and angle brackets. */
export function splitCommas(value) {
  return splitOutside(value, ",").map((part) => part.trim()).filter(Boolean);
}

/** Splits on a separator outside quotes and <...>. */
function splitOutside(text, separator) {
  const parts = [];
  let quoted = false, depth = 0, current = "";
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === "\\" && i + 1 < text.length) { current += c + text[++i]; continue; }
      if (c === '"') quoted = false;
    } else if (c === '"') quoted = true;
    else if (c === "<") depth++;
    else if (c === ">") depth--;
    else if (c === separator && depth === 0) { parts.push(current); current = ""; continue; }
    current += c;
  }
  parts.push(current);
  return parts;
}

/** `key=value` parameters after `;` (not those inside <URI>), or auth-params when `separator` is ",". */
export function params(text, separator = ";") {
  const result = {};
  const parts = separator === "," ? splitCommas(text) : splitOutside(text, ";").slice(1);
  for (const part of parts) {
    const eq = part.indexOf("=");
    const key = (eq < 0 ? part : part.slice(0, eq)).trim().toLowerCase();
    let value = eq < 0 ? "" : part.slice(eq + 1).trim();
    if (value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1).replace(/\\(.)/g, "$1");
    if (key) result[key] = value;
  }
  return result;
}

/** A challenge or credentials header: { scheme, params }. */
export function parseAuth(value) {
  const space = value.indexOf(" ");
  return { scheme: (space < 0 ? value : value.slice(0, space)).toLowerCase(), params: space < 0 ? {} : params(value.slice(space + 1), ",") };
}

/** The URI of a name-addr or addr-spec. */
export function addressURI(value) {
  const m = /<([^>]*)>/.exec(value);
  return m ? m[1] : value.split(";")[0].trim();
}

/** A request or response as text, with Content-Length. */
export function buildMessage({ method, uri, status, reason, headers, body = "" }) {
  const lines = [method ? `${method} ${uri} SIP/2.0` : `SIP/2.0 ${status} ${reason}`];
  for (const [name, value] of headers) if (name.toLowerCase() !== "content-length") lines.push(`${name}: ${value}`);
  lines.push(`Content-Length: ${new TextEncoder().encode(body).length}`);
  return lines.join("\r\n") + "\r\n\r\n" + body;
}

/** A uniform [0, 1) from Web Crypto (tags, branches, cnonces must not be guessable). */
export function secureRandom() {
  return globalThis.crypto.getRandomValues(new Uint32Array(1))[0] / 4294967296;
}

/** A random token of lower-case letters and digits. */
export function randomToken(length = 10, random = secureRandom) {
  let out = "";
  while (out.length < length) out += "abcdefghijklmnopqrstuvwxyz0123456789"[Math.floor(random() * 36)];
  return out;
}

// ==== Digest (RFC 2617, RFC 7616); MD5 here as WebCrypto has none

/** MD5 (RFC 1321) of UTF-8, in hex. */
export function md5(text) {
  const bytes = new TextEncoder().encode(text);
  const length = bytes.length;
  const words = new Uint32Array((((length + 8) >>> 6) + 1) * 16);
  for (let i = 0; i < length; i++) words[i >> 2] |= bytes[i] << ((i % 4) * 8);
  words[length >> 2] |= 0x80 << ((length % 4) * 8);
  words[words.length - 2] = (length * 8) >>> 0;
  words[words.length - 1] = Math.floor(length / 0x20000000);
  const S = [7, 12, 17, 22, 5, 9, 14, 20, 4, 11, 16, 23, 6, 10, 15, 21];
  const K = Array.from({ length: 64 }, (_, i) => Math.floor(Math.abs(Math.sin(i + 1)) * 2 ** 32) >>> 0);
  let a0 = 0x67452301, b0 = 0xefcdab89, c0 = 0x98badcfe, d0 = 0x10325476;
  for (let chunk = 0; chunk < words.length; chunk += 16) {
    let a = a0, b = b0, c = c0, d = d0;
    for (let i = 0; i < 64; i++) {
      let f, g;
      if (i < 16) { f = (b & c) | (~b & d); g = i; }
      else if (i < 32) { f = (d & b) | (~d & c); g = (5 * i + 1) % 16; }
      else if (i < 48) { f = b ^ c ^ d; g = (3 * i + 5) % 16; }
      else { f = c ^ (b | ~d); g = (7 * i) % 16; }
      const rotate = S[(i >> 4) * 4 + (i % 4)];
      const sum = (a + f + K[i] + words[chunk + g]) >>> 0;
      a = d; d = c; c = b;
      b = (b + ((sum << rotate) | (sum >>> (32 - rotate)))) >>> 0;
    }
    a0 = (a0 + a) >>> 0; b0 = (b0 + b) >>> 0; c0 = (c0 + c) >>> 0; d0 = (d0 + d) >>> 0;
  }
  return hex([a0, b0, c0, d0].flatMap((w) => [0, 8, 16, 24].map((shift) => (w >>> shift) & 0xff)));
}

const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
const sha256Hex = async (text) => hex(new Uint8Array(await globalThis.crypto.subtle.digest("SHA-256", new TextEncoder().encode(text))));

/** The Digest `response` (RFC 2617 §3.2.2; RFC 7616 for SHA-256). */
export async function digestResponse({ algorithm = "MD5", username, realm, password, method, uri, nonce, qop, nc, cnonce }) {
  const hash = /^SHA-256$/i.test(algorithm) ? sha256Hex : async (t) => md5(t);
  const ha1 = await hash(`${username}:${realm}:${password}`);
  const ha2 = await hash(`${method}:${uri}`);
  return qop ? hash(`${ha1}:${nonce}:${nc}:${cnonce}:${qop}:${ha2}`) : hash(`${ha1}:${nonce}:${ha2}`);
}

/** Milliseconds to the next refresh (TS 24.229 5.1.1.4.1, WIC-9): 600 s before expiry above
 *  1200 s, else at half; earlier when the token runs out first. */
export function refreshDelay(grantedSeconds, tokenExpiresAtMs, nowMs) {
  let seconds = grantedSeconds > 1200 ? grantedSeconds - 600 : grantedSeconds / 2;
  if (tokenExpiresAtMs) {
    const tokenLeft = (tokenExpiresAtMs - nowMs) / 1000;
    seconds = Math.min(seconds, Math.max(1, tokenLeft - Math.max(5, tokenLeft / 10)));
  }
  return Math.max(1000, Math.floor(seconds * 1000));
}

/** Exponential backoff, full jitter: a restarted server is not hit by every browser at once. */
export function backoffDelay(attempt, random = Math.random, baseMs = 1000, capMs = 30000) {
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.min(attempt, 16));
  return Math.floor(baseMs / 2 + random() * (ceiling - baseMs / 2));
}

// ==== The client

const defaultClock = { now: () => Date.now(), setTimeout: (f, ms) => globalThis.setTimeout(f, ms), clearTimeout: (id) => globalThis.clearTimeout(id) };

const LOST = "The connection to the eP-CSCF was lost.", CLOSED = "The connection to the eP-CSCF closed.";

/** Reasons a person can read. */
const REASONS = {
  403: "The network refused this identity (403).",
  404: "The network does not know this identity (404).",
  420: "The network needs a feature this client lacks (420).",
  408: "The network did not answer in time (408).",
  503: "The IMS core is unavailable (503).",
};

class Emitter extends EventTarget {
  _emit(name, detail) { this.dispatchEvent(new CustomEvent(name, { detail })); }
  _set(state) {
    this.state = state;
    this._emit("state", { state });
  }
}

export class WIC extends Emitter {
  /** Reads the WWSF's /.well-known/webims (a given URI, else https://wwsf.<home domain>/, WWSF-1). */
  static async discover({ wwsf, homeDomain, fetch = globalThis.fetch.bind(globalThis), ...options } = {}) {
    const base = (wwsf || (homeDomain ? `https://wwsf.${homeDomain}` : globalThis.location?.origin) || "").replace(/\/$/, "");
    if (!base) throw new Error("Give a WWSF URI or a home domain.");
    const response = await fetch(`${base}/.well-known/webims`, { credentials: "same-origin" });
    if (!response.ok) throw new Error(`WWSF discovery failed (${response.status}).`);
    const doc = await response.json();
    return new WIC({ wwsf: base, epcscf: doc.epcscf, homeDomain: doc.home_domain || homeDomain, fetch, ...options });
  }

  constructor({ wwsf, epcscf, homeDomain, fetch = globalThis.fetch?.bind(globalThis), WebSocket: WS = globalThis.WebSocket,
    storage = globalThis.localStorage, clock = defaultClock, random = secureRandom, expires = 600000,
    RTCPeerConnection: PC = globalThis.RTCPeerConnection, getUserMedia = (c) => globalThis.navigator.mediaDevices.getUserMedia(c),
    iceServers = [] } = {}) {
    super();
    // state: idle, connecting, registering, registered, refreshing, unregistering, reconnecting, failed
    Object.assign(this, { wwsf, epcscf, homeDomain, _fetch: fetch, _WS: WS, _storage: storage, _clock: clock, _random: random, requestedExpires: expires,
      _PC: PC, _getUserMedia: getUserMedia, _iceServers: iceServers, calls: new Map(), state: "idle", registration: null,
      _pending: new Map(), _queue: Promise.resolve(), _host: randomToken(12, random) + ".invalid", _contactUser: randomToken(8, random),
      _callId: randomToken(20, random), _cseq: 0, _tag: randomToken(10, random), _attempt: 0, _wanted: false });
    this.instanceId = this._instance();
  }

  // ----- credentials

  /** Logs in at the WWSF; from now on tokens come from it. */
  async login(username, password) {
    const r = await this._api("login", { "Content-Type": "application/json" }, JSON.stringify({ username, password }));
    const body = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(body.error_description || `Login failed (${r.status}).`);
    return this._session(body);
  }

  /** Picks up the browser's WWSF session (after a reload). */
  async resumeSession() {
    const r = await this._fetch(`${this.wwsf}/api/session`, { credentials: "same-origin" });
    return r.ok ? this._session(await r.json()) : null;
  }

  /** A POST to the WWSF's API with the browser's session. */
  _api(path, headers, body) {
    return this._fetch(`${this.wwsf}/api/${path}`, { method: "POST", credentials: "same-origin", headers, body });
  }

  _session(body) {
    Object.assign(this, { _csrf: body.csrf, username: body.username });
    this.useToken(() => this._wwsfToken());
    return body;
  }

  /** Registers with tokens: `getToken()` → {token, expires_at (s), impus}. */
  useToken(getToken) { this._credentials = { kind: "token", getToken }; }

  /** Registers with SIP Digest. */
  useDigest({ impi, impu, password }) { this._credentials = { kind: "digest", impi, impu, password }; }

  async _wwsfToken() {
    const r = await this._api("token", { "X-CSRF-Token": this._csrf || "" });
    const body = await r.json().catch(() => ({}));
    if (!r.ok) {
      // A WAF at another origin: the user signs in there and comes back.
      if (body.error === "authorization_required" && body.authorize_url && globalThis.location?.assign) {
        globalThis.location.assign(body.authorize_url);
      }
      throw Object.assign(new Error(body.error_description || `No token from the WWSF (${r.status}).`), { fatal: r.status === 401 || r.status === 403 });
    }
    return body;
  }

  // ----- registration

  /** Registers and keeps the registration alive until unregister(). */
  async register() {
    if (!this._credentials) throw new Error("Log in or give credentials first.");
    this._wanted = true;
    return this._serial(() => this._register(false));
  }

  /** De-registers (Expires: 0) and closes the flow. */
  async unregister() {
    this._wanted = false;
    this._clearTimer();
    const result = await this._serial(async () => {
      if (!this._open() || !this.registration) return null;
      this._set("unregistering");
      return this._sendRegister(0).catch(() => null);
    });
    this._closeSocket();
    this._stop("idle", "unregistered", { reason: "requested" });
    return result;
  }

  /** Logs out of the WWSF after de-registering. */
  async logout() {
    await this.unregister();
    if (this._csrf) await this._api("logout", { "X-CSRF-Token": this._csrf }).catch(() => {});
    this._csrf = this._credentials = null;
  }

  /** On page hide, the de-registration sent without waiting. */
  unregisterOnPageHide(target = globalThis) {
    target.addEventListener?.("pagehide", () => {
      if (!this.registration || !this._open()) return;
      this._wanted = false;
      this._clearTimer();
      try { this._ws.send(this._registerRequest(0, this._lastAuthorization).text); } catch { /* closing anyway */ }
    });
  }

  _serial(work) {
    const run = this._queue.then(work, work);
    this._queue = run.catch(() => {});
    return run;
  }

  async _register(refreshing) {
    this._set(refreshing ? "refreshing" : "registering");
    if (refreshing) this._emit("refreshing");
    try {
      await this._connect();
      const response = await this._sendRegister(this.requestedExpires);
      if (response.status === 200) return this._registered(response);
      this._fail(response);
    } catch (error) {
      if (!this._wanted) return null;
      if (error.fatal) return this._failed(error.message);
      this._scheduleReconnect(error.message);
    }
    return null;
  }

  /** One REGISTER exchange with its 401/423/439 (WIC-6, 10, 14). */
  async _sendRegister(expires) {
    const creds = this._credentials, realm = this.homeDomain;
    const fresh = async () => `Bearer ${(this._token = await creds.getToken()).token}`;
    let retried = false, tokenRetried = false, noRegId = false;
    let authorization = creds.kind === "token" ? await fresh()
      : `Digest username="${creds.impi}", realm="${realm}", uri="sip:${realm}", nonce="", response=""`;
    for (let round = 0; round < 4; round++) {
      this._lastAuthorization = authorization;
      const response = await this._transaction(this._registerRequest(expires, authorization, noRegId));
      if (response.status === 401) {
        const offered = challenges(response);
        const digest = offered.find((c) => c.scheme === "digest" && /^(MD5|SHA-256|)$/i.test(c.params.algorithm || ""));
        if (creds.kind === "token" && offered.some((c) => c.scheme === "bearer") && !tokenRetried) {
          // RFC 6750 §3.1: a refused token is not sent again; a fresh one, once.
          tokenRetried = true;
          authorization = await fresh();
          continue;
        }
        if (creds.kind === "digest" && digest && (!retried || digest.params.stale === "true")) {
          retried = true;
          authorization = await this._digestAuthorization(digest.params);
          continue;
        }
        return response;
      }
      if (response.status === 423) {
        const min = Number(header(response, "min-expires"));
        if (!min || min <= expires) return response;
        expires = this.requestedExpires = min;
        continue;
      }
      if (response.status === 439 && !noRegId) { noRegId = true; continue; }
      return response;
    }
    throw new Error("The registration did not settle.");
  }

  async _digestAuthorization(challenge) {
    const { impi, password } = this._credentials, uri = `sip:${this.homeDomain}`, algorithm = challenge.algorithm || "MD5";
    const qop = /(^|,)\s*auth\s*(,|$)/.test(challenge.qop || "") ? "auth" : undefined;
    const cnonce = randomToken(16, this._random), nc = "00000001";
    const response = await digestResponse({ algorithm, username: impi, realm: challenge.realm, password, method: "REGISTER", uri, nonce: challenge.nonce, qop, nc, cnonce });
    let value = `Digest username="${impi}", realm="${challenge.realm}", nonce="${challenge.nonce}", uri="${uri}", response="${response}", algorithm=${algorithm}`;
    if (qop) value += `, qop=${qop}, nc=${nc}, cnonce="${cnonce}"`;
    if (challenge.opaque !== undefined) value += `, opaque="${challenge.opaque}"`;
    return value;
  }

  _impu() {
    if (this._credentials.kind === "digest") return this._credentials.impu;
    return (this._token && this._token.impus && this._token.impus[0]) || this.registration?.impu;
  }

  /** A request's first headers (RFC 3261 §8.1.1) and its new branch. */
  _head(routes, from, to, callId, cseq) {
    const branch = "z9hG4bK" + randomToken(16, this._random);
    return { branch, headers: [["Via", `SIP/2.0/WSS ${this._host};branch=${branch}`], ["Max-Forwards", "70"],
      ...routes.map((r) => ["Route", r]), ["From", from], ["To", to], ["Call-ID", callId], ["CSeq", cseq]] };
  }

  _registerRequest(expires, authorization, noRegId = false) {
    const impu = this._impu();
    const { branch, headers } = this._head([], `<${impu}>;tag=${this._tag}`, `<${impu}>`, this._callId, `${++this._cseq} REGISTER`);
    headers.push(["Contact", `<sip:${this._contactUser}@${this._host};transport=ws>;+sip.instance="${this.instanceId}"${noRegId ? "" : ";reg-id=1"};expires=${expires}`],
      ["Expires", String(expires)], ["Supported", "path, outbound, gruu"], ["User-Agent", "webims-wic/0.1"]);
    if (authorization) headers.push(["Authorization", authorization]);
    return { branch, text: buildMessage({ method: "REGISTER", uri: `sip:${this.homeDomain}`, headers }) };
  }

  _registered(response) {
    const ours = headerValues(response, "contact").find((c) => c.includes(this.instanceId) || c.includes(this._host));
    const contactParams = ours ? params(ours) : {};
    const expires = Number(contactParams.expires ?? header(response, "expires") ?? 0);
    const now = this._clock.now();
    const associated = headerValues(response, "p-associated-uri").map(addressURI);
    this.registration = { impu: associated[0] || this._impu(), associatedURIs: associated, serviceRoute: headerValues(response, "service-route"),
      gruu: contactParams["pub-gruu"], expires, expiresAt: now + expires * 1000, flow: headerValues(response, "path").map(addressURI)[0] || null,
      scheme: this._credentials.kind };
    this._attempt = 0;
    this._set("registered");
    this._emit("registered", this.registration);
    const tokenEnd = this._token && this._credentials.kind === "token" ? this._token.expires_at * 1000 : 0;
    this._schedule(refreshDelay(expires, tokenEnd, now), () => this._serial(() => this._register(true)));
    this._subscribeRegEvent(expires).catch(() => {});
    return this.registration;
  }

  _fail(response) {
    const bearer = challenges(response).find((c) => c.scheme === "bearer");
    let reason = REASONS[response.status] || `Registration refused: ${response.status} ${response.reason}.`;
    if (response.status === 401) reason = bearer ? "The network refused the login token." : "Wrong IMS credentials.";
    if (response.status >= 500 || response.status === 408) this._scheduleReconnect(reason);
    else this._failed(reason, response.status);
  }

  _failed(reason, status) { this._stop("failed", "failed", { reason, status }); }

  /** No registration and none wanted; `event` says why. */
  _stop(state, event, detail) {
    Object.assign(this, { _wanted: false, registration: null });
    this._clearTimer();
    this._set(state);
    this._emit(event, detail);
  }

  // ----- reg event (WIC-12)

  async _subscribeRegEvent(expires) {
    if (this._subscribed === this._ws) return;
    this._subscribed = this._ws;
    const impu = this.registration.impu;
    const { branch, headers } = this._head(this.registration.serviceRoute, `<${impu}>;tag=${randomToken(10, this._random)}`, `<${impu}>`,
      randomToken(20, this._random), "1 SUBSCRIBE");
    headers.push(["Contact", this._ob()], ["Event", "reg"],
      ["Accept", "application/reginfo+xml"], ["Expires", String(expires)]);
    return this._transaction({ branch, text: buildMessage({ method: "SUBSCRIBE", uri: impu, headers }) });
  }

  _onRequest(request) {
    const answer = (status, reason) => reply(this, request, status, reason);
    if (request.method === "NOTIFY" && /^reg/i.test(header(request, "event") || "")) {
      answer(200, "OK");
      return this._onRegInfo(request.body, header(request, "subscription-state") || "");
    }
    if (request.method === "OPTIONS") return answer(200, "OK");
    if (request.method === "MESSAGE") {  // RFC 3428, pager mode
      answer(200, "OK");
      return this._emit("im", { from: addressURI(header(request, "from") || ""), text: request.body });
    }
    const known = this.calls.get(header(request, "call-id"));
    if (known) return known._onRequest(request);
    if (request.method === "INVITE" && !params(header(request, "to") || "").tag) {
      if (!this.registration) return answer(480, "Temporarily Unavailable");
      const call = new Call(this, { request });
      call._set("incoming");
      call._reply(request, 180, "Ringing");
      return this._emit("incoming", { call });
    }
    if (request.method === "ACK") return;
    if (/^(BYE|CANCEL)$/.test(request.method)) answer(481, "Call/Transaction Does Not Exist");
    else answer(405, "Method Not Allowed");
  }

  // ----- calls

  /** Calls `target` (SIP or tel: URI, user or number); returns the Call at once. */
  call(target, { audio = true, video = false } = {}) {
    if (!this.registration) throw new Error("Register first.");
    const call = new Call(this, { target: this.targetURI(target), audio, video });
    call._dial().catch((error) => call._end(error.message));
    return call;
  }

  /** `+1555…` → tel:, a name or number → sip:…@home domain, a URI as it is. */
  targetURI(target) {
    const t = String(target).trim().replace(/^<|>$/g, "");
    if (/^(sips?|tel):/i.test(t)) return t;
    if (/^\+[0-9()\-. ]+$/.test(t)) return "tel:" + t.replace(/[^0-9+]/g, "");
    return `sip:${t.includes("@") ? t : `${t.replace(/[()\-. ]/g, "")}@${this.homeDomain}`}`;
  }

  /** TS 24.371 7.2.1: the token goes with every request (RFC 8898, Bearer). */
  _authorization() {
    return this._credentials?.kind === "token" && this._token ? [["Authorization", `Bearer ${this._token.token}`]] : [];
  }

  /** reginfo (RFC 3680): our contact terminated = de-registered. */
  _onRegInfo(xml, subscriptionState) {
    this._emit("reginfo", { xml });
    if (!this.registration) return;
    const ours = [...xml.matchAll(/<contact\b([^>]*)>([\s\S]*?)<\/contact>/g)].find(([, , inner]) => inner.includes(this._host));
    const terminated = ours ? /state="terminated"/.test(ours[1]) : /^terminated/i.test(subscriptionState);
    if (terminated && this.state === "registered") {
      this._stop("idle", "unregistered", { reason: `network (${(ours && /event="([^"]*)"/.exec(ours[1]))?.[1] || "terminated"})` });
    }
  }

  // ----- transport

  _connect() {
    if (this._open()) return Promise.resolve();
    this._closeSocket();
    this._set("connecting");
    return new Promise((resolve, reject) => {
      let ws;
      try { ws = this._ws = new this._WS(this.epcscf, "sip"); } catch (error) { return reject(error); }
      ws.onopen = () => {
        // WIC-3: without the `sip` subprotocol it is not our server.
        if (ws.protocol !== "sip") {
          ws.close();
          return reject(Object.assign(new Error("The server did not accept the SIP WebSocket subprotocol."), { fatal: true }));
        }
        resolve();
      };
      ws.onerror = () => reject(new Error("Cannot reach the eP-CSCF."));
      ws.onclose = () => {
        reject(new Error(CLOSED));
        if (this._ws === ws) this._onSocketClosed();
      };
      ws.onmessage = (event) => this._onMessage(event.data);
    });
  }

  _open() { return this._ws?.readyState === 1; }

  _ob() { return `<sip:${this._contactUser}@${this._host};transport=ws;ob>`; }

  _onMessage(data) {
    const text = typeof data === "string" ? data : new TextDecoder().decode(data);
    if (text === "\r\n" || text === "\r\n\r\n") return; // RFC 5626 keep-alive
    this._emit("message", { direction: "in", text });
    let message;
    try { message = parseMessage(text); } catch { return; } // not SIP: nothing to answer
    if (message.method) return this._onRequest(message);
    const branch = params(header(message, "via") || "").branch;
    const pending = this._pending.get(branch);
    if (pending?.onResponse) pending.onResponse(message);
    if (!pending) return this.calls.get(header(message, "call-id"))?._onStrayResponse(message);
    if (message.status < 200) return;
    this._pending.delete(branch);
    this._clock.clearTimeout(pending.timer);
    pending.resolve(message);
  }

  _transaction({ branch, text }, onResponse, timeoutMs = 32000) {
    return new Promise((resolve, reject) => {
      const timer = this._clock.setTimeout(() => {
        this._pending.delete(branch);
        reject(new Error("The eP-CSCF did not answer in time."));
      }, timeoutMs);
      this._pending.set(branch, { resolve, reject, timer, onResponse });
      try { this._send(text); } catch (error) {
        this._pending.delete(branch);
        this._clock.clearTimeout(timer);
        reject(error);
      }
    });
  }

  _send(text) {
    if (!this._open()) throw new Error(CLOSED);
    this._ws.send(text);
    this._emit("message", { direction: "out", text: redact(text) });
  }

  _onSocketClosed() {
    this._ws = this._subscribed = null;
    for (const call of [...this.calls.values()]) call._end(LOST);
    for (const [, pending] of this._pending) {
      this._clock.clearTimeout(pending.timer);
      pending.reject(new Error(CLOSED));
    }
    this._pending.clear();
    if (this._wanted) this._scheduleReconnect(LOST);
  }

  _scheduleReconnect(reason) {
    if (!this._wanted) return;
    const delay = backoffDelay(this._attempt++, this._random);
    this._set("reconnecting");
    this._emit("reconnecting", { reason, delay, attempt: this._attempt });
    this._schedule(delay, () => this._serial(() => this._register(false)));
  }

  _schedule(ms, work) {
    this._clearTimer();
    this._timer = this._clock.setTimeout(() => { this._timer = null; work(); }, ms);
  }

  _clearTimer() {
    this._clock.clearTimeout(this._timer);
    this._timer = null;
  }

  _closeSocket() {
    const ws = this._ws;
    this._ws = null;
    if (ws) ws.onclose = null;
    try { ws?.close(); } catch { /* already closed */ }
  }

  /** A stable +sip.instance per browser (RFC 5626 §4.1), kept in localStorage. */
  _instance() {
    let id = null;
    try { id = this._storage?.getItem("webims.instance"); } catch { /* storage blocked */ }
    if (/^<urn:uuid:[0-9a-f-]{36}>$/.test(id || "")) return id;
    const h = Array.from({ length: 32 }, () => Math.floor(this._random() * 16).toString(16)).join("");
    id = `<urn:uuid:${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20)}>`;  // RFC 4122 v4
    try { this._storage?.setItem("webims.instance", id); } catch { /* a new instance next time */ }
    return id;
  }
}

// ==== Calls: one RTCPeerConnection each, bridged to IMS by the eIMS-AGW (TS 23.228 U.2.2)

const T1 = 500, T2 = 4000;
const REPLY = { via: "Via", "record-route": "Record-Route", from: "From", to: "To", "call-id": "Call-ID", cseq: "CSeq" };

/** Answers a request (RFC 3261 §8.2.6, §12.1.1). */
function reply(wic, request, status, reason, { tag, contact, body = "" } = {}) {
  const headers = request.headers.filter(([n]) => REPLY[n]).map(([n, v]) =>
    [REPLY[n], n === "to" && status > 100 && !params(v).tag ? `${v};tag=${tag || randomToken(8, wic._random)}` : v]);
  if (contact) headers.push(["Contact", contact]);
  if (body) headers.push(["Content-Type", "application/sdp"]);
  wic._send(buildMessage({ status, reason, headers, body }));
}

/** A call from `wic.call()` or an `incoming` event. Events: `state`, `remotestream`, `ended` {reason, status}. */
export class Call extends Emitter {
  constructor(wic, { target, request, audio = true, video = false }) {
    super();
    Object.assign(this, { _wic: wic, audio, video, outgoing: !request, state: "new", muted: false, remoteStream: null,
      _tag: randomToken(10, wic._random), _cseq: 0 });
    if (request) {
      const from = header(request, "from"), pai = header(request, "p-asserted-identity");
      Object.assign(this, { _invite: request, callId: header(request, "call-id"), _remoteTag: params(from).tag,
        remoteURI: addressURI(from), remoteIdentity: addressURI(pai || from), remoteName: (/^\s*"([^"]*)"/.exec(pai || "") || /^\s*"([^"]*)"/.exec(from))?.[1] || null,
        _routes: headerValues(request, "record-route"), _target: addressURI(header(request, "contact") || from),
        _local: addressURI(header(request, "to")) });
    } else {
      Object.assign(this, { callId: randomToken(20, wic._random), remoteURI: target, remoteIdentity: target, _target: target,
        _routes: wic.registration.serviceRoute, _local: wic.registration.impu });
    }
    wic.calls.set(this.callId, this);
  }

  /** Answers with the microphone (and camera when `video`). */
  async answer({ audio = true, video = false } = {}) {
    if (this.state !== "incoming") throw new Error("Nothing to answer.");
    this._set("answering");
    try {
      await this._media({ audio, video });
      const sdp = await this._localSDP(this._invite.body);
      if (this.state !== "answering") return;
      this._reply(this._invite, 200, "OK", sdp);
      this._set("established");
      this._retransmit(sdp, T1, this._wic._clock.now());
    } catch (error) {
      this._reply(this._invite, 488, "Not Acceptable Here");
      this._end(error.message, 488);
    }
  }

  reject(status = 486, reason = "Busy Here") {
    if (!/^(incoming|answering)$/.test(this.state)) return;
    this._reply(this._invite, status, reason);
    this._end("rejected", status);
  }

  /** Ends the call: 603 while it rings here, CANCEL while it rings there, else BYE. */
  hangup(reason = "hung up") {
    if (this.state === "ended") return;
    if (!this.outgoing && this.state !== "established") return this.reject(603, "Decline");
    if (this.state === "established") this._request("BYE").catch(() => {});
    else if (this._provisional) this._hop("CANCEL", `<${this.remoteURI}>`);
    else this._cancelWanted = true;
    this._end(reason);
  }

  /** RFC 4733 tones (RTCDTMFSender). */
  sendDTMF(tones, duration = 100, gap = 70) {
    const dtmf = this._pc?.getSenders().find((s) => s.track?.kind === "audio")?.dtmf;
    if (!dtmf) throw new Error("No audio to send DTMF on.");
    dtmf.insertDTMF(tones, duration, gap);
  }

  mute(on = true) {
    this.muted = on;
    for (const track of this._stream?.getAudioTracks() || []) track.enabled = !on;
  }

  /** A re-INVITE; after glare (491) again in 2.1–4 s (RFC 3261 §14.1). */
  async renegotiate() {
    for (let tries = 0; tries < 3 && this.state === "established"; tries++) {
      this._reinviting = true;
      const response = await this._request("INVITE", await this._localSDP()).finally(() => { this._reinviting = false; });
      if (response.status === 200) {
        this._ack(response);
        await this._pc.setRemoteDescription({ type: "answer", sdp: response.body });
        return response;
      }
      await this._pc.setLocalDescription({ type: "rollback" }).catch(() => {});
      if (response.status !== 491) return response;
      await new Promise((r) => this._wic._clock.setTimeout(r, 2100 + this._wic._random() * 1900));
    }
    return null;
  }

  stats() { return this._pc ? this._pc.getStats() : Promise.resolve(new Map()); }

  async _dial() {
    this._set("calling");
    await this._media({ audio: this.audio, video: this.video });
    const sdp = await this._localSDP();
    if (this.state === "ended") return;
    this._first = this._build("INVITE", ++this._cseq, sdp);
    const response = await this._wic._transaction(this._first, (r) => this._onInviteResponse(r), 190000);
    if (response.status < 300) return;
    this._hop("ACK", header(response, "to"));  // RFC 3261 §17.1.1.3
    this._end(response.reason || "failed", response.status);
  }

  _onInviteResponse(response) {
    if (response.status === 100 || response.status >= 300) return;
    if (response.status < 200) {
      this._provisional = true;
      if (this._cancelWanted) return this._hop("CANCEL", `<${this.remoteURI}>`);
      if (response.body && !this._early) {
        this._early = true;  // early media: the answer in a 183
        this._pc.setRemoteDescription({ type: "answer", sdp: response.body }).catch(() => {});
      }
      return this._set(this._early ? "early" : "ringing");
    }
    // 2xx: the dialog; its route set the Record-Route reversed (RFC 3261 §12.1.2).
    Object.assign(this, { _remoteTag: params(header(response, "to") || "").tag, _target: addressURI(header(response, "contact") || "") || this._target,
      _routes: headerValues(response, "record-route").reverse() });
    this._ack(response);
    if (this.state === "ended") return this._request("BYE").catch(() => {});  // answered as we hung up
    this._set("established");
    if (!this._early) this._answered(response.body);
  }

  /** A 2xx again gets its ACK again (RFC 3261 §13.2.2.4). */
  _onStrayResponse(response) {
    if (response.status >= 200 && response.status < 300 && /INVITE/.test(header(response, "cseq"))) this._ack(response);
  }

  _ack(response) { this._wic._send(this._build("ACK", parseInt(header(response, "cseq"), 10)).text); }

  /** ACK of a failure, or CANCEL: hop by hop, the INVITE's branch (§9.1, §17.1.1.3). */
  _hop(method, to) {
    this._cancelWanted = false;
    const headers = this._first.headers.filter(([n]) => /^(Via|Max-Forwards|Route|From|Call-ID)$/.test(n));
    this._wic._send(buildMessage({ method, uri: this.remoteURI, headers: [...headers, ["To", to], ["CSeq", `1 ${method}`]] }));
  }

  /** The 2xx again until the ACK, for 64·T1 at most (RFC 3261 §13.3.1.4). */
  _retransmit(sdp, interval, started) {
    const clock = this._wic._clock;
    this._timer = clock.setTimeout(() => {
      if (this._acked || this.state !== "established") return;
      if (clock.now() - started > 64 * T1) return this.hangup("no ACK");
      try { this._reply(this._invite, 200, "OK", sdp); } catch { return; }
      this._retransmit(sdp, Math.min(interval * 2, T2), started);
    }, interval);
  }

  async _onRequest(request) {
    const method = request.method;
    if (method === "ACK") {
      this._acked = true;
      // Late offer: the ACK answers our 2xx.
      if (request.body && this._pc?.signalingState === "have-local-offer") this._answered(request.body);
      return;
    }
    if (method === "BYE" || method === "CANCEL") {
      this._reply(request, 200, "OK");
      if (method === "BYE") return this._end("the other side hung up");
      if (!/^(incoming|answering)$/.test(this.state)) return;
      this._reply(this._invite, 487, "Request Terminated");
      return this._end("cancelled", 487);
    }
    if (method === "INVITE" || method === "UPDATE") {
      if (this._reinviting) return this._reply(request, 491, "Request Pending");  // glare
      try {
        return this._reply(request, 200, "OK", await this._localSDP(request.body));
      } catch {
        return this._reply(request, 488, "Not Acceptable Here");
      }
    }
    const ok = /^(INFO|OPTIONS|NOTIFY)$/.test(method);
    this._reply(request, ok ? 200 : 405, ok ? "OK" : "Method Not Allowed");
  }

  /** Our answer to `offer`, else our offer (to an INVITE without one: late offer, RFC 3264 §4, answered in the ACK). */
  async _localSDP(offer) {
    if (offer) await this._pc.setRemoteDescription({ type: "offer", sdp: offer });
    await this._pc.setLocalDescription(await (offer ? this._pc.createAnswer() : this._pc.createOffer()));
    return this._gathered();
  }

  _answered(sdp) { this._pc.setRemoteDescription({ type: "answer", sdp }).catch((e) => this.hangup(`unusable answer: ${e.message}`)); }

  _request(method, body = "") { return this._wic._transaction(this._build(method, ++this._cseq, body)); }

  /** A request of the dialog or the INVITE making it. */
  _build(method, seq, body = "") {
    const first = !this._remoteTag;
    const { branch, headers } = this._wic._head(this._routes, `<${this._local}>;tag=${this._tag}`,
      `<${this.remoteURI}>${first ? "" : `;tag=${this._remoteTag}`}`, this.callId, `${seq} ${method}`);
    headers.push(["Contact", this._contact()], ...this._wic._authorization());
    if (first) headers.push(["P-Preferred-Identity", `<${this._local}>`]);
    if (body) headers.push(["Content-Type", "application/sdp"]);
    return { branch, headers, text: buildMessage({ method, uri: this._target, headers, body }) };
  }

  _reply(request, status, reason, body = "") {
    reply(this._wic, request, status, reason, { tag: this._tag, body, contact: status < 300 && request.method === "INVITE" ? this._contact() : null });
  }

  _contact() {
    const gruu = this._wic.registration?.gruu;
    return gruu ? `<${gruu}>` : this._wic._ob();
  }

  async _media({ audio, video }) {
    this._stream = await this._wic._getUserMedia({ audio, video });
    // "balanced" (not max-bundle): the gateway's answer has no BUNDLE group.
    this._pc = new this._wic._PC({ iceServers: this._wic._iceServers, rtcpMuxPolicy: "require" });
    for (const track of this._stream.getTracks()) this._pc.addTrack(track, this._stream);
    this._pc.ontrack = (e) => this._emit("remotestream", { stream: (this.remoteStream = e.streams[0] || new MediaStream([e.track])) });
  }

  /** The SDP with every ICE candidate (no trickle), or after 3 s. */
  _gathered() {
    const pc = this._pc, clock = this._wic._clock;
    return new Promise((resolve) => {
      const done = () => { clock.clearTimeout(timer); resolve(pc.localDescription.sdp); };
      const timer = clock.setTimeout(done, 3000);
      if (pc.iceGatheringState === "complete") return done();
      pc.addEventListener("icegatheringstatechange", () => pc.iceGatheringState === "complete" && done());
    });
  }

  _end(reason, status) {
    if (this.state === "ended") return;
    this._wic._clock.clearTimeout(this._timer);
    this._set("ended");
    this._wic.calls.delete(this.callId);
    for (const track of this._stream?.getTracks() || []) track.stop();
    try { this._pc?.close(); } catch { /* closed */ }
    this._emit("ended", { reason, status });
  }
}

/** A 401's challenges (auth header values are not split on commas). */
const challenges = (response) => response.headers.filter(([n]) => n === "www-authenticate").map(([, v]) => parseAuth(v));

/** The trace never shows tokens or digest responses. */
export function redact(text) {
  return text
    .replace(/^(Authorization:\s*Bearer\s+)\S+/gim, "$1[token]")
    .replace(/(response=")[0-9a-f]+"/gi, '$1[redacted]"');
}
