// The scanner page: a keyboard-wedge scanner (or the camera) in, a big decision out.
// Scans that cannot be sent wait in localStorage and go as one batch when the network returns.
import {
  ALERT_LABELS,
  ApiError,
  HEALTH_LABELS,
  KIND_LABELS,
  REASON_LABELS,
  Session,
  gateReasonLabel,
  h,
  maskId,
  newScanId,
  wireSignIn,
} from "./common.js";

const QUEUE_KEY = "returnloop.scanner.queue";
const SETTINGS_KEY = "returnloop.scanner.settings";
const MAX_BATCH = 1000;
const RETRY_MS = 5000;
const FOLLOW_UP_MS = 20000;
const RECENT_SIZE = 30;
// An 18-character resident ID number; anything else is a health-code id or card number.
const ID_NUMBER = /^[0-9]{17}[0-9Xx]$/;

const $ = (id) => document.getElementById(id);
const session = new Session("scanner");
const result = $("result");
const codeInput = $("code");
const fields = {
  station: $("station"),
  temperature: $("temperature"),
  trip: $("trip"),
  enterprise: $("enterprise"),
};
const recent = [];
let shown = 0; // which scan the banner shows; a late answer for an older one must not replace it
let flushing = false;

const signedOut = wireSignIn(session, {
  onSignedIn: () => {
    codeInput.focus();
    flush();
  },
});

// ---- settings ---------------------------------------------------------------------
function kind() {
  return document.querySelector('input[name="kind"]:checked').value;
}

function healthCode() {
  return document.querySelector('input[name="health_code"]:checked').value;
}

function loadSettings() {
  const saved = JSON.parse(localStorage.getItem(SETTINGS_KEY) ?? "{}");
  const radio = document.querySelector(`input[name="kind"][value="${saved.kind}"]`);
  if (radio) radio.checked = true;
  fields.station.value = saved.station ?? "";
  fields.trip.value = saved.trip_id ?? "";
  fields.enterprise.value = saved.enterprise_id ?? "";
}

function saveSettings() {
  localStorage.setItem(SETTINGS_KEY, JSON.stringify({
    kind: kind(),
    station: fields.station.value.trim(),
    trip_id: fields.trip.value.trim(),
    enterprise_id: fields.enterprise.value.trim(),
  }));
}

function showFieldsForKind() {
  for (const element of document.querySelectorAll("[data-for]")) {
    element.hidden = !element.dataset.for.split(" ").includes(kind());
  }
}

// ---- the banner --------------------------------------------------------------------
function banner(tone, state, headline, english, { who, reasons = [], note, loop } = {}) {
  result.className = tone;
  result.dataset.state = state;
  const parts = [
    h("div", { class: "headline" }, headline, h("span", { class: "en" }, english)),
    who ? h("div", { class: "who" }, who) : null,
    reasons.length
      ? h("ul", { class: "reasons" }, reasons.map(([zh, en]) =>
        h("li", {}, zh || en, zh && en ? h("span", { class: "en" }, en) : null)))
      : null,
    note ? h("div", { class: "loop" }, note) : null,
    loop ? h("div", { class: "loop", "data-loop": "" }, loop) : null,
  ];
  result.replaceChildren(...parts.filter(Boolean));
}

function scanReason(entry) {
  return [REASON_LABELS[entry.reason] ?? "", `${entry.reason}: ${entry.message ?? ""}`];
}

function errorReason(error) {
  return [REASON_LABELS[error.code] ?? "", `${error.code}: ${error.message}`];
}

function describe(scan) {
  const [zh, en] = KIND_LABELS[scan.kind];
  const extra = scan.kind === "boarding" ? ` · ${scan.trip_id}`
    : scan.kind === "checkin" ? ` · ${scan.enterprise_id}`
      : ` · ${scan.temperature_c} °C · ${HEALTH_LABELS[scan.health_code]}`;
  return `${maskId(scan.id_number)} · ${zh} ${en}${extra}`;
}

// ---- recent scans ------------------------------------------------------------------
const STATUS_LABELS = {
  accepted: "通过 accepted",
  rejected: "拒绝 rejected",
  queued: "待上传 queued",
  allow: "放行 allow",
  deny: "禁止 deny",
  held: "未通过 not passed",
};

function remember(entry) {
  const index = recent.findIndex((item) => item.id === entry.id);
  if (index >= 0) recent[index] = { ...recent[index], ...entry };
  else recent.unshift(entry);
  recent.length = Math.min(recent.length, RECENT_SIZE);
  $("recent").replaceChildren(...recent.map((item) =>
    h("li", { class: item.status, "data-scan-id": item.id },
      h("span", { class: "muted" }, item.time),
      h("span", { class: "status" }, STATUS_LABELS[item.status]),
      h("span", {}, item.what, item.reason ? h("div", { class: "muted" }, item.reason) : null))));
}

function clock() {
  return new Date().toLocaleTimeString("zh-CN", { hour12: false });
}

// ---- the offline queue -------------------------------------------------------------
function queue() {
  return JSON.parse(localStorage.getItem(QUEUE_KEY) ?? "[]");
}

function saveQueue(scans) {
  localStorage.setItem(QUEUE_KEY, JSON.stringify(scans));
  $("queue-count").textContent = scans.length;
  $("queue").dataset.count = scans.length;
  $("queue").className = scans.length ? "pill warn" : "pill";
}

function enqueue(scan, note) {
  const scans = queue();
  scans.push(scan);
  saveQueue(scans);
  remember({ id: scan.scan_id, time: clock(), status: "queued", what: describe(scan) });
  banner("queued", "queued", "已暂存 QUEUED", "offline", {
    who: describe(scan),
    note: note ?? `网络恢复后自动上传（共 ${scans.length} 条）Sent when the network returns (${scans.length} waiting)`,
  });
}

async function flush() {
  const waiting = queue();
  if (flushing || !waiting.length || !navigator.onLine || !session.token) return;
  flushing = true;
  const batch = waiting.slice(0, MAX_BATCH);
  try {
    const answer = await session.call("POST", "/v1/scans", { scans: batch });
    const sent = new Set(batch.map((scan) => scan.scan_id));
    saveQueue(queue().filter((scan) => !sent.has(scan.scan_id)));
    let accepted = 0;
    const problems = [];
    answer.results.forEach((entry, index) => {
      const scan = batch[index];
      if (entry.status === "accepted") accepted += 1;
      else problems.push([maskId(scan.id_number), scanReason(entry).filter(Boolean).join(" · ")]);
      remember({
        id: scan.scan_id,
        time: clock(),
        status: entry.status,
        what: describe(scan),
        reason: entry.status === "rejected" ? scanReason(entry).filter(Boolean).join(" · ") : null,
      });
    });
    const summary =
      `${clock()} 已上传 ${batch.length} 条：通过 ${accepted}，拒绝 ${batch.length - accepted}` +
      ` · Sent ${batch.length} queued scans: ${accepted} accepted, ${batch.length - accepted} rejected`;
    $("sync").textContent = summary;
    // The banner still says "queued": say what became of the queue instead.
    if (result.dataset.state === "queued") {
      banner(problems.length ? "bad" : "ok", "sent", "已上传 SENT", "queue sent", {
        reasons: problems,
        note: summary.slice(summary.indexOf(" ") + 1),
      });
    }
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) signedOut(error);
    else if (error instanceof ApiError) $("sync").textContent = `上传失败 Sending failed: ${error.message}`;
  } finally {
    flushing = false;
  }
  if (queue().length && navigator.onLine) setTimeout(flush, 0);
}

function updateNetwork() {
  const online = navigator.onLine;
  $("network").className = online ? "pill ok" : "pill bad";
  $("network").textContent = online ? "在线 Online" : "离线 Offline";
}

// ---- scanning ----------------------------------------------------------------------
function buildScan(scanKind, idNumber) {
  const scan = {
    scan_id: newScanId(),
    kind: scanKind,
    id_number: idNumber,
    occurred_at: new Date().toISOString(),
    station: fields.station.value.trim(),
  };
  if (scanKind === "departure_check" || scanKind === "arrival_check") {
    scan.temperature_c = Number(fields.temperature.value);
    scan.health_code = healthCode();
  } else if (scanKind === "boarding") {
    scan.trip_id = fields.trip.value.trim();
  } else {
    scan.enterprise_id = fields.enterprise.value.trim();
  }
  return scan;
}

function missingSetting(scanKind) {
  if (!fields.station.value.trim()) return ["请先填写站点", "Enter the station first"];
  if (scanKind === "boarding" && !fields.trip.value.trim()) return ["请先填写车次", "Enter the trip first"];
  if (scanKind === "checkin" && !fields.enterprise.value.trim()) return ["请先填写企业编号", "Enter the enterprise first"];
  const temperature = Number(fields.temperature.value);
  if ((scanKind === "departure_check" || scanKind === "arrival_check")
      && !(fields.temperature.value && temperature >= 30 && temperature <= 45)) {
    return ["请填写体温（30–45 °C）", "Enter the temperature (30–45 °C)"];
  }
  return null;
}

// True when the failure means "no network": the scan should wait in the queue.
function unreachable(error) {
  return error instanceof TypeError || (error instanceof ApiError && error.status === 503);
}

async function handleCode(raw) {
  const code = raw.trim();
  if (!code) return;
  const scanKind = kind();
  const serial = ++shown;
  const missing = missingSetting(scanKind);
  if (missing) {
    banner("bad", "rejected", "拒绝 REJECTED", "settings incomplete", { reasons: [missing] });
    return;
  }
  saveSettings();
  const idNumber = ID_NUMBER.test(code) ? code.toUpperCase() : null;
  banner("working", "working", "处理中…", "working", { who: idNumber ? maskId(idNumber) : null });
  if (scanKind === "checkin") await gate(serial, code, idNumber);
  else if (idNumber) await submit(serial, buildScan(scanKind, idNumber));
  else await resolveCode(serial, code);
}

async function submit(serial, scan, { allowed } = {}) {
  if (!navigator.onLine) {
    enqueue(scan);
    return;
  }
  let entry;
  try {
    entry = (await session.call("POST", "/v1/scans", scan)).results[0];
  } catch (error) {
    if (unreachable(error)) enqueue(scan);
    else if (error instanceof ApiError && error.status === 401) signedOut(error);
    else banner("bad", "rejected", "拒绝 REJECTED", "error", { who: describe(scan), reasons: [errorReason(error)] });
    return;
  }
  if (entry.status !== "accepted") {
    const reason = scanReason(entry);
    remember({ id: scan.scan_id, time: clock(), status: "rejected", what: describe(scan), reason: reason.filter(Boolean).join(" · ") });
    if (serial === shown) banner("bad", "rejected", "拒绝 REJECTED", "not recorded", { who: describe(scan), reasons: [reason] });
    return;
  }
  remember({ id: scan.scan_id, time: clock(), status: allowed ? "allow" : "accepted", what: describe(scan) });
  if (serial === shown) {
    if (allowed) banner("ok", "allow", "放行 ALLOW", "check-in recorded", { who: describe(scan), note: "报到已登记 Check-in recorded" });
    else banner("ok", "accepted", "通过 ACCEPTED", "recorded", { who: describe(scan) });
  }
  flush();
  followUp(serial, scan);
}

// Once the tracker has applied the scan, say how the loop stands; a failed check turns red.
async function followUp(serial, scan) {
  const deadline = Date.now() + FOLLOW_UP_MS;
  while (Date.now() < deadline && serial === shown) {
    await new Promise((resolve) => setTimeout(resolve, 600));
    let view;
    try {
      view = await session.call("POST", "/v1/workers/lookup", { id_number: scan.id_number });
    } catch {
      continue;
    }
    const checkpoint = view.checkpoints?.[scan.kind];
    if (checkpoint?.scan_id !== scan.scan_id || serial !== shown) continue;
    const loop = `闭环 Loop: ${view.stage} · ${view.status}`;
    if (checkpoint.passed === false) {
      const reasons = view.alerts.filter((a) => a.open).map((a) => [ALERT_LABELS[a.kind] ?? "", a.kind]);
      const held = view.status === "held";
      remember({ id: scan.scan_id, status: "held", reason: reasons.map(([zh, en]) => `${zh} ${en}`).join("; ") });
      banner("bad", "held", held ? "扣留 HELD" : "未通过 NOT CLEARED", "recorded, check not passed", {
        who: describe(scan), reasons, loop,
      });
    } else {
      result.querySelector("[data-loop]")?.remove();
      result.append(h("div", { class: "loop", "data-loop": "" }, loop));
    }
    return;
  }
}

async function resolveCode(serial, code) {
  if (!navigator.onLine) {
    banner("bad", "rejected", "拒绝 REJECTED", "offline", {
      reasons: [["离线时无法识别健康码或社保卡，请扫描身份证", "Offline: a health code or card cannot be resolved; scan the ID card"]],
    });
    return;
  }
  let found;
  try {
    found = await session.call("POST", "/v1/links/resolve", { code });
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) signedOut(error);
    else if (serial === shown) banner("bad", "rejected", "拒绝 REJECTED", "unknown code", { reasons: [unreachable(error) ? ["网络错误", "network error"] : errorReason(error)] });
    return;
  }
  if (serial !== shown) return;
  const colour = found.health_code ? `${HEALTH_LABELS[found.health_code]} ${found.health_code}` : "颜色未知 colour unknown";
  const loop = `闭环 Loop: ${found.loop.stage} · ${found.loop.status}`;
  const tone = found.health_code === "green" && found.loop.status !== "held" ? "info" : "bad";
  banner(tone, "resolved", "已识别 RESOLVED", "not recorded yet", {
    who: `${found.id_masked} · ${colour}`,
    note: "登记扫码需身份证号：请扫描身份证 · A scan is recorded by ID number: scan the ID card",
    loop,
  });
}

async function gate(serial, code, idNumber) {
  const enterpriseId = fields.enterprise.value.trim();
  const offline = () => {
    if (idNumber) {
      enqueue(buildScan("checkin", idNumber), "离线：无法判定，报到已暂存，联网后上传 · Offline: no gate decision; the check-in is queued");
    } else {
      banner("bad", "rejected", "拒绝 REJECTED", "offline", {
        reasons: [["离线时无法核验，请扫描身份证", "Offline: cannot check this code; scan the ID card"]],
      });
    }
  };
  if (!navigator.onLine) return offline();
  let decision;
  try {
    decision = await session.call("POST", "/v1/gate/decision",
      idNumber ? { id_number: idNumber, enterprise_id: enterpriseId } : { code, enterprise_id: enterpriseId });
  } catch (error) {
    if (unreachable(error)) offline();
    else if (error instanceof ApiError && error.status === 401) signedOut(error);
    else if (serial === shown) banner("bad", "deny", "禁止入厂 DENY", "not allowed", { who: idNumber ? maskId(idNumber) : null, reasons: [errorReason(error)] });
    return;
  }
  if (serial !== shown) return;
  const who = `${decision.loop.id_masked} · ${enterpriseId}`;
  if (!decision.allow) {
    remember({ id: newScanId(), time: clock(), status: "deny", what: who, reason: decision.reasons.join("; ") });
    banner("bad", "deny", "禁止入厂 DENY", "not allowed", {
      who,
      reasons: decision.reasons.map((reason) => [gateReasonLabel(reason), reason]),
    });
    return;
  }
  if (idNumber) {
    await submit(serial, buildScan("checkin", idNumber), { allowed: true });
  } else {
    banner("ok", "allow", "放行 ALLOW", "allowed", {
      who,
      note: "请扫描身份证完成报到登记 · Scan the ID card to record the check-in",
    });
  }
}

// ---- camera (only where the browser has a BarcodeDetector) -------------------------
async function wireCamera() {
  if (!("BarcodeDetector" in window) || !navigator.mediaDevices?.getUserMedia) return;
  const formats = await BarcodeDetector.getSupportedFormats().catch(() => []);
  if (!formats.length) return;
  const button = $("camera-toggle");
  const video = $("camera");
  const detector = new BarcodeDetector({ formats });
  let stream = null;
  let last = { code: "", at: 0 };
  button.hidden = false;
  const stop = () => {
    stream?.getTracks().forEach((track) => track.stop());
    stream = null;
    video.hidden = true;
  };
  const look = async () => {
    if (!stream) return;
    try {
      const [found] = await detector.detect(video);
      // A code held in front of the camera is read many times a second: take it once.
      if (found?.rawValue && (found.rawValue !== last.code || Date.now() - last.at > 3000)) {
        last = { code: found.rawValue, at: Date.now() };
        handleCode(found.rawValue);
      }
    } catch {
      // a frame that could not be read; try the next one
    }
    setTimeout(look, 250);
  };
  button.addEventListener("click", async () => {
    if (stream) return stop();
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" } });
    } catch (error) {
      banner("bad", "rejected", "摄像头不可用", "camera unavailable", { reasons: [["", error.message]] });
      return;
    }
    video.srcObject = stream;
    video.hidden = false;
    await video.play();
    look();
  });
}

// ---- wiring ------------------------------------------------------------------------
loadSettings();
showFieldsForKind();
updateNetwork();
saveQueue(queue());
for (const scan of queue()) {
  remember({ id: scan.scan_id, time: "", status: "queued", what: describe(scan) });
}
document.querySelectorAll('input[name="kind"]').forEach((radio) =>
  radio.addEventListener("change", () => {
    showFieldsForKind();
    saveSettings();
    codeInput.focus();
  }));
Object.values(fields).forEach((input) => input.addEventListener("change", saveSettings));
$("scan").addEventListener("submit", (event) => {
  event.preventDefault();
  const code = codeInput.value;
  codeInput.value = "";
  codeInput.focus();
  handleCode(code);
});
window.addEventListener("online", () => {
  updateNetwork();
  flush();
});
window.addEventListener("offline", updateNetwork);
setInterval(flush, RETRY_MS);
wireCamera();
