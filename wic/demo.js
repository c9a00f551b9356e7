// The demo page: log in, register, watch the registration live, call and be called, log out.
import { WIC } from "/wic.js";

const $ = (id) => document.getElementById(id);
let wic = null;
let countdownTimer = null;
let call = null; // the call on screen (one at a time here; a second incoming one is refused busy)
let callTimer = null;

const STATES = {
  idle: "not registered", connecting: "connecting…", registering: "registering…", refreshing: "refreshing…",
  registered: "registered", unregistering: "de-registering…", reconnecting: "reconnecting…", failed: "failed",
};

function showError(text) {
  $("error").textContent = text || "";
  $("error").hidden = !text;
}

function render() {
  const state = wic ? wic.state : "idle";
  $("state").textContent = STATES[state] || state;
  $("state").dataset.state = state;
  const r = wic && wic.registration;
  $("impu-value").textContent = r ? r.impu : "—";
  $("associated").textContent = r ? r.associatedURIs.join(", ") || "—" : "—";
  $("flow").textContent = r ? `${wic.epcscf} ${r.flow ? "via " + r.flow : ""}` : "—";
  $("logout-button").disabled = !wic;
  $("call-button").disabled = state !== "registered" || !!call;
  $("login-button").disabled = !!wic && state !== "failed";
  clearInterval(countdownTimer);
  const tick = () => {
    const left = r ? Math.max(0, Math.round((r.expiresAt - Date.now()) / 1000)) : null;
    $("countdown").textContent = left === null ? "—" : `${left} s`;
  };
  tick();
  if (r) countdownTimer = setInterval(tick, 1000);
}

function trace(event) {
  const { direction, text } = event.detail;
  const item = document.createElement("li");
  item.className = direction;
  item.textContent = `${direction === "out" ? "→" : "←"} ${text.trim()}`;
  $("trace").append(item);
  while ($("trace").children.length > 200) $("trace").firstElementChild.remove();
}

async function start(mode, username, password, digest) {
  showError("");
  wic = await WIC.discover({ wwsf: location.origin });
  for (const name of ["state", "registered", "unregistered"]) wic.addEventListener(name, render);
  wic.addEventListener("failed", (e) => { showError(e.detail.reason); render(); });
  wic.addEventListener("reconnecting", (e) => showError(`${e.detail.reason} Retrying in ${Math.round(e.detail.delay / 1000)} s…`));
  wic.addEventListener("registered", () => showError(""));
  wic.addEventListener("message", trace);
  wic.addEventListener("incoming", (e) => incoming(e.detail.call));
  // A MESSAGE (RFC 3428) for this identity: shown as text, never as markup.
  wic.addEventListener("im", (e) => { $("last-im").textContent = `${e.detail.from}: ${e.detail.text}`; });
  wic.unregisterOnPageHide();
  if (mode === "token") {
    if (username) await wic.login(username, password);
    else if (!(await wic.resumeSession())) throw new Error("Log in first.");
  } else {
    if (username) await wic.login(username, password);
    wic.useDigest(digest);
  }
  sessionStorage.setItem("webims.mode", mode);
  if (mode === "digest") sessionStorage.setItem("webims.digest", JSON.stringify({ impi: digest.impi, impu: digest.impu }));
  await wic.register();
  render();
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const mode = new FormData($("login-form")).get("mode");
  const digest = { impi: $("impi").value, impu: $("impu").value, password: $("sip-password").value };
  try {
    if (wic && wic.state === "failed") wic = null;
    await start(mode, $("username").value, $("password").value, digest);
  } catch (error) {
    wic = null;
    showError(error.message);
    render();
  }
});

$("logout-button").addEventListener("click", async () => {
  if (!wic) return;
  const current = wic;
  wic = null;
  await current.logout();
  sessionStorage.removeItem("webims.mode");
  showError("");
  render();
});

for (const radio of document.querySelectorAll("input[name=mode]")) {
  radio.addEventListener("change", () => { $("digest-fields").hidden = radio.value !== "digest" || !radio.checked; });
}

$("trace-toggle").addEventListener("change", () => { $("trace").hidden = !$("trace-toggle").checked; });

// ----- calls

const CALL_STATES = {
  calling: "calling…", ringing: "ringing…", early: "ringing (early media)", incoming: "incoming call",
  answering: "answering…", established: "in call", ended: "ended",
};

function showCall(reason) {
  const state = call ? call.state : "none";
  $("call-state").dataset.state = state;
  $("call-state").textContent = call ? CALL_STATES[state] || state : reason ? `ended: ${reason}` : "no call";
  $("call-peer").textContent = call ? call.remoteIdentity : "—";
  $("incoming").hidden = !call || state !== "incoming";
  $("caller").textContent = call ? call.remoteName || call.remoteIdentity : "";
  $("hangup-button").disabled = !call;
  $("mute-button").disabled = !call || state !== "established";
  for (const key of $("keypad").children) key.disabled = !call || state !== "established";
  render();
}

function follow(c) {
  call = c;
  c.addEventListener("state", () => {
    if (c.state === "established" && !callTimer) startTimer();
    showCall();
  });
  c.addEventListener("remotestream", (e) => {
    $("remote-audio").srcObject = e.detail.stream;
    const video = e.detail.stream.getVideoTracks().length > 0;
    $("remote-video").hidden = !video;
    if (video) $("remote-video").srcObject = e.detail.stream;
  });
  c.addEventListener("ended", (e) => {
    if (call !== c) return;
    call = null;
    clearInterval(callTimer);
    callTimer = null;
    $("mute-button").setAttribute("aria-pressed", "false");
    $("mute-button").textContent = "Mute";
    showCall(e.detail.status ? `${e.detail.reason} (${e.detail.status})` : e.detail.reason);
  });
  showCall();
}

/** The call timer, and what getStats says of the audio coming in (level, packets). */
function startTimer() {
  const started = Date.now();
  callTimer = setInterval(async () => {
    if (!call) return;
    const s = Math.round((Date.now() - started) / 1000);
    $("call-timer").textContent = `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
    const report = await call.stats();
    for (const stat of report.values()) {
      if (stat.type === "inbound-rtp" && stat.kind === "audio") {
        $("call-stats").textContent = `${stat.packetsReceived} packets in, ${stat.packetsLost ?? 0} lost`;
        $("call-stats").dataset.packets = String(stat.packetsReceived);
        const codec = report.get(stat.codecId);
        if (codec) $("call-stats").dataset.codec = codec.mimeType.toLowerCase();
        $("audio-level").value = stat.audioLevel ?? 0;
      }
    }
  }, 500);
}

function incoming(c) {
  if (call) return c.reject(486, "Busy Here");
  $("call-timer").textContent = "—";
  follow(c);
}

$("dial-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const target = $("dial-target").value.trim();
  if (!target || !wic || call) return;
  showError("");
  $("call-timer").textContent = "—";
  try {
    follow(wic.call(target, { audio: true, video: $("dial-video").checked }));
  } catch (error) {
    showError(error.message);
  }
});
$("answer-button").addEventListener("click", () => call?.answer({ audio: true, video: $("dial-video").checked }));
$("reject-button").addEventListener("click", () => call?.reject());
$("hangup-button").addEventListener("click", () => call?.hangup());
$("mute-button").addEventListener("click", () => {
  if (!call) return;
  call.mute(!call.muted);
  $("mute-button").setAttribute("aria-pressed", String(call.muted));
  $("mute-button").textContent = call.muted ? "Unmute" : "Mute";
});
for (const key of $("keypad").children) {
  key.disabled = true;
  key.addEventListener("click", () => call?.sendDTMF(key.textContent));
}

// After a reload: a token registration resumes from the WWSF session by itself.
if (sessionStorage.getItem("webims.mode") === "token") {
  start("token").catch(() => { wic = null; render(); });
}
render();
