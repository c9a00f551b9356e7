// The demo page: log in, register, watch the registration live, log out.
import { WIC } from "/wic.js";

const $ = (id) => document.getElementById(id);
let wic = null;
let countdownTimer = null;

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

// After a reload: a token registration resumes from the WWSF session by itself.
if (sessionStorage.getItem("webims.mode") === "token") {
  start("token").catch(() => { wic = null; render(); });
}
render();
