// The scanner page: one scan, one decision. A keyboard-wedge scanner (or the camera) reads
// the health code or social-security card the worker shows (or the operator types the ID
// number); the page asks POST /v1/decisions and shows 放行 ALLOW or 禁止 DENY with every
// reason; the operator then records the scan (a check with this worker's temperature), with
// an override reason when recording against a denial or without a decision (offline).
// Scans that cannot be sent wait in localStorage and go as one batch when the network returns.
// A second tab (#dispositions) is the health station's: find a worker held after a failed
// check and record what happened next (isolation, release, …) with a required note.
import {
  ALERT_LABELS,
  ApiError,
  DECISION_LABELS,
  HEALTH_LABELS,
  KIND_LABELS,
  REASON_LABELS,
  Session,
  formatTime,
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
const MAX_OVERRIDE = 500;
// An 18-character resident ID number; anything else is a health-code id or card number.
const ID_NUMBER = /^[0-9]{17}[0-9Xx]$/;
const CHECKS = new Set(["departure_check", "arrival_check"]);
const OFFLINE_REASON = "离线，无法判定 offline: no decision";

// The disposition tab.
const DISPOSITION_LABELS = {
  isolation: ["隔离", "Isolation"],
  medical_observation: ["医学观察", "Medical observation"],
  released: ["解除", "Released"],
  code_appeal_upheld: ["申诉成立", "Code appeal upheld"],
  withdrawn: ["放弃返岗", "Withdrawn"],
};
const WORKER_STATUS_LABELS = {
  open: ["进行中", "open"],
  held: ["扣留", "held"],
  broken: ["断链", "broken"],
  closed: ["已闭环", "closed"],
  withdrawn: ["放弃返岗", "withdrawn"],
};
const STAGE_LABELS = {
  registered: "名单登记",
  departure_cleared: "出发体检通过",
  boarded: "已上车",
  arrival_cleared: "抵达复检通过",
  checked_in: "已入厂报到",
};
const MAX_NOTE = 2000;
// How long the page waits for the tracker to apply a disposition before it says "not yet".
const APPLY_WAIT_MS = 120000;
const NO_PERMISSION = [
  "无权限：只有健康站、监管或管理员令牌可登记处置",
  "No permission: only a health-station, supervisor or admin token may record dispositions",
];
// Well formed, never issued: the address of the permission question below.
const NOBODY = "w_000000000000000000000000";

const $ = (id) => document.getElementById(id);
const session = new Session("scanner");
const result = $("result");
const codeInput = $("code");
const fields = {
  station: $("station"),
  trip: $("trip"),
  enterprise: $("enterprise"),
};
const recordForm = $("record");
const temperature = $("temperature");
const override = $("override");
const recent = [];
let shown = 0; // which scan the banner shows; a late answer for an older one must not replace it
let pending = null; // the scan identified and decided, waiting for the operator to record it
let flushing = false;
// The disposition tab's state: whether this token may record (asked once per token), the
// worker on the card, and which lookup the card shows (a late answer must not replace it).
const dsp = { permitted: null, worker: null, kind: null, serial: 0 };

const signedOut = wireSignIn(session, {
  onSignedIn: () => {
    showPermission(null);
    applyMode();
    flush();
  },
});

// ---- the shift: checkpoint, station, trip, enterprise, chosen once -----------------
function kind() {
  return document.querySelector('input[name="kind"]:checked').value;
}

function shift() {
  return {
    kind: kind(),
    station: fields.station.value.trim(),
    trip_id: fields.trip.value.trim(),
    enterprise_id: fields.enterprise.value.trim(),
  };
}

function loadShift() {
  let saved = {};
  try {
    saved = JSON.parse(localStorage.getItem(SETTINGS_KEY) ?? "{}") ?? {};
  } catch {
    saved = {};
  }
  const radio = document.querySelector(`input[name="kind"][value="${saved.kind}"]`);
  if (radio) radio.checked = true;
  fields.station.value = saved.station ?? "";
  fields.trip.value = saved.trip_id ?? "";
  fields.enterprise.value = saved.enterprise_id ?? "";
  return Boolean(saved.started);
}

function saveShift(started) {
  localStorage.setItem(SETTINGS_KEY, JSON.stringify({ ...shift(), started }));
}

// What the shift still lacks for this checkpoint, in both languages; null when complete.
function shiftMissing() {
  const { kind: scanKind, station, trip_id: tripId, enterprise_id: enterpriseId } = shift();
  if (!station) return ["请先填写站点", "Enter the station first"];
  if (scanKind === "boarding" && !tripId) return ["请先填写车次", "Enter the trip first"];
  if (scanKind === "checkin" && !enterpriseId) return ["请先填写企业编号", "Enter the enterprise first"];
  return null;
}

function showFieldsForKind() {
  for (const element of document.querySelectorAll("[data-for]")) {
    element.hidden = !element.dataset.for.split(" ").includes(kind());
  }
}

function editShift(message) {
  $("shift").hidden = false;
  $("shift-summary").hidden = true;
  $("shift-message").textContent = message ? message.join(" · ") : "";
  const empty = [fields.station, fields.trip, fields.enterprise].find(
    (input) => !input.closest("[hidden]") && !input.value.trim());
  (empty ?? fields.station).focus();
}

function closeShift() {
  const { kind: scanKind, station, trip_id: tripId, enterprise_id: enterpriseId } = shift();
  const [zh, en] = KIND_LABELS[scanKind];
  const parts = [`${zh} ${en}`, `站点 Station: ${station}`];
  if (scanKind === "boarding") parts.push(`车次 Trip: ${tripId}`);
  if (scanKind === "checkin") parts.push(`企业 Enterprise: ${enterpriseId}`);
  $("shift-text").textContent = `本班 Shift · ${parts.join(" · ")}`;
  $("shift").hidden = true;
  $("shift-summary").hidden = false;
  $("shift-message").textContent = "";
}

function kindChanged() {
  showFieldsForKind();
  dropPending();
  const missing = shiftMissing();
  saveShift(!missing);
  if (missing) editShift(missing);
  else {
    closeShift();
    focusScan();
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
      ? h("ul", { class: "reasons" }, reasons.map(([zh, en, code]) =>
        h("li", { "data-reason": code ?? null }, zh || en, zh && en ? h("span", { class: "en" }, en) : null)))
      : null,
    note ? h("div", { class: "loop note" }, note) : null,
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

function decisionReason(reason) {
  return [DECISION_LABELS[reason.code] ?? "", `${reason.code}: ${reason.message}`, reason.code];
}

// A code is shown by its ends only: it may be a card number, which is the ID number.
function maskCode(code) {
  if (ID_NUMBER.test(code)) return maskId(code.toUpperCase());
  if (code.length <= 8) return "*".repeat(code.length);
  return `${code.slice(0, 4)}…${code.slice(-4)}`;
}

function whoOf(scan) {
  return scan.id_number ? maskId(scan.id_number) : `码 code ${maskCode(scan.code)}`;
}

function describe(scan, who) {
  const [zh, en] = KIND_LABELS[scan.kind];
  const extra = scan.kind === "boarding" ? ` · ${scan.trip_id}`
    : scan.kind === "checkin" ? ` · ${scan.enterprise_id}`
      : ` · ${scan.temperature_c} °C · ${scan.health_code ? HEALTH_LABELS[scan.health_code] : "平台码色 platform colour"}`;
  return `${who ?? whoOf(scan)} · ${zh} ${en}${extra}`;
}

function overrideNote(scan) {
  return scan.override_reason ? `强制登记理由 Override: ${scan.override_reason}` : null;
}

function loopLine(view) {
  return `闭环 Loop: ${view.stage} · ${view.status}`;
}

// ---- recent scans ------------------------------------------------------------------
const STATUS_LABELS = {
  accepted: "已登记 recorded",
  rejected: "拒绝 rejected",
  queued: "待上传 queued",
  allow: "放行 allow",
  deny: "禁止 deny",
  offline: "未判定 no decision",
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
  try {
    return JSON.parse(localStorage.getItem(QUEUE_KEY) ?? "[]") ?? [];
  } catch {
    return [];
  }
}

function saveQueue(scans) {
  localStorage.setItem(QUEUE_KEY, JSON.stringify(scans));
  $("queue-count").textContent = scans.length;
  $("queue").dataset.count = scans.length;
  $("queue").className = scans.length ? "pill warn" : "pill";
}

function enqueue(scan, who) {
  const scans = queue();
  scans.push(scan);
  saveQueue(scans);
  remember({ id: scan.scan_id, time: clock(), status: "queued", what: describe(scan, who), reason: overrideNote(scan) });
  banner("queued", "queued", "已暂存 QUEUED", "offline", {
    who: describe(scan, who),
    note: `网络恢复后自动上传（共 ${scans.length} 条）Sent when the network returns (${scans.length} waiting)`,
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
      const reason = entry.status === "rejected" ? scanReason(entry).filter(Boolean).join(" · ") : overrideNote(scan);
      if (entry.status === "accepted") accepted += 1;
      else problems.push([whoOf(scan), reason]);
      remember({ id: scan.scan_id, time: clock(), status: entry.status, what: describe(scan), reason });
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

// True when the failure means "no network": the scan should wait in the queue.
function unreachable(error) {
  return error instanceof TypeError || (error instanceof ApiError && error.status === 503);
}

// ---- identifying the worker --------------------------------------------------------
const ID_WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];

// Offline, the API cannot check an ID number: the same checks here, so a mistyped one
// is caught at the door rather than rejected later from the queue.
function idNumberProblem(idNumber) {
  const year = Number(idNumber.slice(6, 10));
  const month = Number(idNumber.slice(10, 12));
  const day = Number(idNumber.slice(12, 14));
  const born = new Date(Date.UTC(year, month - 1, day));
  if (year < 1900 || born.getUTCMonth() !== month - 1 || born.getUTCDate() !== day || born > new Date()) {
    return "id_number_birth_date";
  }
  const sum = ID_WEIGHTS.reduce((total, weight, index) => total + weight * Number(idNumber[index]), 0);
  return "10X98765432"[sum % 11] === idNumber[17] ? null : "id_number_checksum";
}

function identify(raw) {
  const code = raw.trim();
  if (ID_NUMBER.test(code)) return { id_number: code.toUpperCase() };
  return { code };
}

// ---- the record panel --------------------------------------------------------------
function clearRecord() {
  temperature.value = "";
  for (const radio of document.querySelectorAll('input[name="health_code"]')) radio.checked = false;
  $("platform-colour").textContent = "";
  override.value = "";
  $("override-box").hidden = true;
  $("override-offline").hidden = true;
  $("record-message").textContent = "";
  $("record-who").textContent = "";
}

function dropPending() {
  pending = null;
  clearRecord();
  $("record-panel").hidden = true;
}

function focusScan() {
  if (!document.body.classList.contains("signed-out")) codeInput.focus();
}

function askOverride(why) {
  $("override-box").hidden = false;
  $("override-why").textContent = why;
  override.focus();
}

// The decision (or its absence) is on the banner: open the panel that records the scan.
function openRecord(found) {
  pending = found;
  clearRecord();
  const check = CHECKS.has(found.kind);
  $("record-who").textContent = found.who;
  if (check) {
    // A worker identified by a code is linked: the platform's colour is the default.
    const colour = found.view?.health_code;
    $("platform-colour").textContent = colour ? `当前 now: ${HEALTH_LABELS[colour]} ${colour}` : "";
    if (found.identity.code) document.querySelector('input[name="health_code"][value="platform"]').checked = true;
  }
  const button = $("record-button");
  // Recording against a denial is possible, never the obvious button to press.
  button.className = found.decision && !found.decision.allow ? "big against" : "primary big";
  if (found.decision === null) {
    button.textContent = "未判定，登记 Record without a decision";
    $("override-offline").hidden = false;
    askOverride("离线无法判定：登记需填写理由 · Offline, no decision: recording needs a reason");
  } else if (!found.decision.allow) {
    button.textContent = "仍要登记 Record anyway";
  } else {
    button.textContent = "登记 Record";
  }
  $("record-panel").hidden = false;
  if (check) temperature.focus();
  else focusScan();
}

// The scan to record, or [zh, en] saying what the operator must still give.
function scanToRecord() {
  const found = pending;
  const scan = {
    scan_id: found.scanId,
    kind: found.kind,
    ...found.identity,
    occurred_at: new Date().toISOString(),
    station: found.station,
  };
  if (CHECKS.has(found.kind)) {
    const degrees = Number(temperature.value);
    if (!temperature.value.trim() || !(degrees >= 30 && degrees <= 45)) {
      temperature.focus();
      return ["未登记：请填写该工人的体温（30–45 °C）", "Not recorded: enter this worker's temperature (30–45 °C)"];
    }
    const colour = document.querySelector('input[name="health_code"]:checked')?.value;
    if (!colour) {
      return ["未登记：请选择健康码（平台或扫码所见颜色）", "Not recorded: choose the health code (from the platform or as scanned)"];
    }
    scan.temperature_c = Math.round(degrees * 10) / 10;
    if (colour !== "platform") scan.health_code = colour;
  } else if (found.kind === "boarding") {
    scan.trip_id = found.trip_id;
  } else {
    scan.enterprise_id = found.enterprise_id;
  }
  if (found.decision === null || !found.decision.allow) {
    const reason = override.value.trim();
    if (!reason) {
      askOverride(found.decision === null
        ? "离线无法判定：登记需填写理由 · Offline, no decision: recording needs a reason"
        : "判定为禁止：如仍要登记，请填写理由 · The decision was DENY: give a reason to record anyway");
      return ["未登记：请填写放行理由", "Not recorded: an override reason is required"];
    }
    scan.override_reason = reason.slice(0, MAX_OVERRIDE);
  }
  return scan;
}

async function record() {
  if (!pending) return;
  const found = pending;
  const scan = scanToRecord();
  if (Array.isArray(scan)) {
    $("record-message").textContent = scan.join(" · ");
    return;
  }
  // Recorded: nothing of this worker (temperature, colour, reason) stays for the next one.
  dropPending();
  focusScan();
  const serial = ++shown;
  const who = found.who;
  const overridden = overrideNote(scan);
  if (!navigator.onLine) {
    enqueue(scan, who);
    return;
  }
  banner("working", "working", "登记中…", "recording", { who: describe(scan, who) });
  let entry;
  try {
    entry = (await session.call("POST", "/v1/scans", scan)).results[0];
  } catch (error) {
    if (unreachable(error)) enqueue(scan, who);
    else if (error instanceof ApiError && error.status === 401) signedOut(error);
    else if (serial === shown) banner("bad", "rejected", "拒绝 REJECTED", "not recorded", { who: describe(scan, who), reasons: [errorReason(error)] });
    return;
  }
  if (entry.status !== "accepted") {
    const reason = scanReason(entry);
    remember({ id: scan.scan_id, time: clock(), status: "rejected", what: describe(scan, who), reason: reason.filter(Boolean).join(" · ") });
    if (serial === shown) banner("bad", "rejected", "拒绝 REJECTED", "not recorded", { who: describe(scan, who), reasons: [reason] });
    return;
  }
  remember({ id: scan.scan_id, time: clock(), status: "accepted", what: describe(scan, who), reason: overridden });
  if (serial === shown) {
    banner("ok", "accepted", "已登记 RECORDED", overridden ? "recorded with an override" : "recorded", {
      who: describe(scan, who),
      note: overridden,
    });
  }
  flush();
  followUp(serial, scan, found.view?.worker_ref);
}

// Once the tracker has applied the scan, say how the loop stands; a failed check turns red.
async function followUp(serial, scan, workerRef) {
  if (!workerRef && !scan.id_number) return;
  const deadline = Date.now() + FOLLOW_UP_MS;
  while (Date.now() < deadline && serial === shown) {
    await new Promise((resolve) => setTimeout(resolve, 600));
    let view;
    try {
      view = workerRef
        ? await session.call("GET", `/v1/workers/${encodeURIComponent(workerRef)}`)
        : await session.call("POST", "/v1/workers/lookup", { id_number: scan.id_number });
    } catch {
      continue;
    }
    const checkpoint = view.checkpoints?.[scan.kind];
    if (checkpoint?.scan_id !== scan.scan_id || serial !== shown) continue;
    if (checkpoint.passed === false) {
      const reasons = view.alerts.filter((a) => a.open).map((a) => [ALERT_LABELS[a.kind] ?? "", a.kind]);
      const held = view.status === "held";
      remember({ id: scan.scan_id, status: "held", reason: reasons.map(([zh, en]) => `${zh} ${en}`).join("; ") });
      banner("bad", "held", held ? "扣留 HELD" : "未通过 NOT CLEARED", "recorded, check not passed", {
        who: result.querySelector(".who")?.textContent, reasons, loop: loopLine(view),
      });
    } else {
      result.querySelector("[data-loop]")?.remove();
      result.append(h("div", { class: "loop", "data-loop": "" }, loopLine(view)));
    }
    return;
  }
}

// ---- scanning: identify, decide, show ----------------------------------------------
async function handleCode(raw) {
  const text = raw.trim();
  if (!text) return;
  const serial = ++shown;
  dropPending();
  const missing = shiftMissing();
  if (missing) {
    banner("bad", "setup", "请先设置本班", "set up the shift first", { reasons: [missing] });
    editShift(missing);
    return;
  }
  if (!$("shift").hidden) {
    // Scanning with the shift filled in starts it.
    saveShift(true);
    closeShift();
  }
  const identity = identify(text);
  const { kind: scanKind, station, trip_id: tripId, enterprise_id: enterpriseId } = shift();
  const found = {
    scanId: newScanId(),
    kind: scanKind,
    identity,
    station,
    trip_id: tripId,
    enterprise_id: enterpriseId,
    who: identity.id_number ? maskId(identity.id_number) : `码 code ${maskCode(identity.code)}`,
    decision: null,
    view: null,
  };
  if (!navigator.onLine) return offline(serial, found);
  banner("working", "working", "判定中…", "deciding", { who: found.who });
  const question = { kind: scanKind, ...identity };
  if (scanKind === "boarding") question.trip_id = tripId;
  if (scanKind === "checkin") question.enterprise_id = enterpriseId;
  let decision;
  try {
    decision = await session.call("POST", "/v1/decisions", question);
  } catch (error) {
    if (serial !== shown) return;
    if (unreachable(error)) return offline(serial, found);
    if (error instanceof ApiError && error.status === 401) return signedOut(error);
    if (error instanceof ApiError && error.status === 404) return unknown(found);
    banner("bad", "rejected", "拒绝 REJECTED", "cannot decide", { who: found.who, reasons: [errorReason(error)] });
    return;
  }
  if (serial !== shown) return;
  found.decision = decision;
  found.view = decision.loop;
  found.who = `${decision.worker.name ?? "（无姓名 no name）"} · ${decision.worker.id_masked}`;
  const reasons = decision.reasons.map(decisionReason);
  const [zh, en] = KIND_LABELS[scanKind];
  const where = scanKind === "boarding" ? ` · ${tripId}` : scanKind === "checkin" ? ` · ${enterpriseId}` : "";
  remember({
    id: found.scanId,
    time: clock(),
    status: decision.allow ? "allow" : "deny",
    what: `${found.who} · ${zh} ${en}${where}`,
    reason: reasons.map(([reasonZh, , code]) => `${reasonZh} ${code}`).join("; ") || null,
  });
  if (decision.allow) {
    banner("ok", "allow", "放行 ALLOW", `${en}${where}`, {
      who: found.who,
      reasons,
      note: CHECKS.has(scanKind) ? "请测体温后登记 · Take the temperature, then record" : "请登记 · Record the scan",
      loop: loopLine(decision.loop),
    });
  } else {
    banner("bad", "deny", "禁止 DENY", `${en}${where}`, {
      who: found.who,
      reasons,
      loop: loopLine(decision.loop),
    });
  }
  openRecord(found);
}

// No worker is known by what was scanned.
function unknown(found) {
  if (found.identity.code) {
    // A scan by an unlinked code would be rejected (unknown_code): nothing to record.
    banner("bad", "unknown", "未识别 UNKNOWN", "code not linked", {
      who: found.who,
      reasons: [["该码未关联任何人员：请输入身份证号", "unknown_code: no worker is linked to this code; type the ID number"]],
    });
    return;
  }
  found.decision = { allow: false, reasons: [] };
  remember({ id: found.scanId, time: clock(), status: "deny", what: found.who, reason: "not_found" });
  banner("bad", "deny", "禁止 DENY", "not known", {
    who: found.who,
    reasons: [["系统中无此人员，不在任何名单上", "not_found: no worker known by this ID number", "not_found"]],
  });
  openRecord(found);
}

// Decisions need the network: say so, and let the operator record with a reason.
function offline(serial, found) {
  if (found.identity.id_number) {
    const problem = idNumberProblem(found.identity.id_number);
    if (problem) {
      banner("bad", "rejected", "拒绝 REJECTED", "not an ID number", {
        who: found.who,
        reasons: [[REASON_LABELS[problem], problem]],
      });
      return;
    }
  }
  if (serial !== shown) return;
  remember({ id: found.scanId, time: clock(), status: "offline", what: found.who });
  banner("queued", "offline", "离线 · 无法判定", "OFFLINE · no decision", {
    who: found.who,
    reasons: [["判定需要联网；如需登记，请填写理由，联网后上传", "Decisions need the network: record only with an override reason; it is sent when the network returns"]],
  });
  openRecord(found);
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

// ---- the disposition tab (health station) ------------------------------------------
function mode() {
  return location.hash === "#dispositions" ? "disposition" : "scan";
}

function focusMode() {
  if (document.body.classList.contains("signed-out")) return;
  if (mode() === "scan") codeInput.focus();
  else if (!$("dsp-code").disabled) $("dsp-code").focus();
}

function applyMode() {
  const current = mode();
  document.querySelector("main.app").dataset.mode = current;
  for (const tab of document.querySelectorAll('[role="tab"]')) {
    tab.setAttribute("aria-selected", String(tab.dataset.mode === current));
  }
  if (current === "disposition" && session.token) checkPermission();
  focusMode();
}

function showPermission(permitted) {
  dsp.permitted = permitted;
  const tab = $("tab-disposition");
  tab.classList.toggle("locked", permitted === false);
  const notice = $("dsp-permission");
  notice.hidden = permitted !== false;
  notice.textContent = permitted === false ? NO_PERMISSION.join(" · ") : "";
  for (const control of document.querySelectorAll("#dsp-find input, #dsp-find button, #dsp-form button, #dsp-form textarea, #dsp-form input")) {
    control.disabled = permitted === false;
  }
  if (permitted === false) {
    $("dsp-record-panel").hidden = true;
    $("dsp-worker").hidden = true;
  }
}

// There is no "who am I": ask the recording endpoint with an empty body. The role is checked
// before the body, so a role that may not record is refused (403) and one that may is told
// the body is incomplete (422); nothing is recorded either way.
async function checkPermission() {
  if (dsp.permitted !== null) return;
  dsp.permitted = "asking";
  const token = session.token;
  try {
    await session.call("POST", `/v1/workers/${NOBODY}/dispositions`, {});
    if (session.token === token) showPermission(true);
  } catch (error) {
    if (session.token !== token) return;
    if (error instanceof ApiError && error.status === 401) {
      dsp.permitted = null;
      signedOut(error);
    } else if (error instanceof ApiError && error.status === 403) showPermission(false);
    else if (error instanceof ApiError) showPermission(true);
    // Unreachable: ask again when the tab is next opened; recording will say if refused.
    else dsp.permitted = null;
  }
}

function dspBanner(tone, state, headline, english, lines = []) {
  const box = $("dsp-result");
  box.hidden = false;
  box.className = `disposition-mode ${tone}`;
  box.dataset.state = state;
  box.replaceChildren(
    h("div", { class: "headline" }, headline, h("span", { class: "en" }, english)),
    ...lines.map((line) => (line instanceof Node ? line : h("div", { class: "line" }, line))),
  );
}

function hideBanner() {
  const box = $("dsp-result");
  box.hidden = true;
  box.dataset.state = "idle";
  box.replaceChildren();
}

function statusText(status) {
  const [zh, en] = WORKER_STATUS_LABELS[status] ?? ["", status];
  return `${zh} ${en}`.trim();
}

function kindText(kind) {
  const [zh, en] = DISPOSITION_LABELS[kind] ?? ["", kind];
  return `${zh} ${en}`.trim();
}

function showWorker(view) {
  dsp.worker = view;
  $("dsp-name").textContent = view.name ?? "（无姓名 no name）";
  $("dsp-id").textContent = view.id_masked;
  const status = $("dsp-status");
  status.dataset.status = view.status;
  status.textContent = `状态 Status: ${statusText(view.status)}`;
  const where = [
    `阶段 Stage: ${STAGE_LABELS[view.stage] ?? ""} ${view.stage}`,
    view.enterprise_id ? `企业 Enterprise: ${view.enterprise_id}` : null,
    view.trip_id ? `车次 Trip: ${view.trip_id}` : view.travel === "self" ? "自行返岗 Own travel" : null,
    view.health_code ? `健康码 Code: ${HEALTH_LABELS[view.health_code]} ${view.health_code}` : null,
  ];
  $("dsp-where").textContent = where.filter(Boolean).join(" · ");
  const open = view.alerts.filter((alert) => alert.open);
  $("dsp-alerts").replaceChildren(...(open.length
    ? open.map((alert) => h("li", { "data-alert": alert.kind },
      h("b", {}, ALERT_LABELS[alert.kind] ?? alert.kind), h("span", { class: "en" }, alert.kind),
      h("span", { class: "muted" }, ` · ${formatTime(alert.raised_at)}`)))
    : [h("li", { class: "muted" }, "无 None")]));
  const earlier = view.dispositions ?? [];
  $("dsp-history").replaceChildren(...(earlier.length
    ? earlier.map((item) => h("li", { "data-disposition-id": item.disposition_id, "data-kind": item.kind },
      h("b", {}, kindText(item.kind)),
      h("span", { class: "muted" }, ` · ${formatTime(item.at)} · ${item.by}`),
      h("div", {}, item.note)))
    : [h("li", { class: "muted" }, "无 None")]));
  $("dsp-updated").textContent = `更新 Updated ${formatTime(view.updated_at)}`;
  $("dsp-worker").hidden = false;
}

function chooseKind(kind) {
  dsp.kind = kind;
  for (const button of document.querySelectorAll("#dsp-kinds button")) {
    button.setAttribute("aria-pressed", String(button.dataset.kind === kind));
  }
}

function clearDispositionForm() {
  chooseKind(null);
  $("dsp-note").value = "";
  $("dsp-at").value = "";
  $("dsp-message").textContent = "";
}

// A scanned code or a typed ID number → the worker's loop view.
async function findWorker(raw) {
  const text = raw.trim();
  if (!text) return;
  const serial = ++dsp.serial;
  $("dsp-find-message").textContent = "";
  hideBanner();
  clearDispositionForm();
  $("dsp-record-panel").hidden = true;
  $("dsp-worker").hidden = true;
  dsp.worker = null;
  const identity = identify(text);
  let view;
  try {
    view = identity.id_number
      ? await session.call("POST", "/v1/workers/lookup", { id_number: identity.id_number })
      : (await session.call("POST", "/v1/links/resolve", { code: identity.code })).loop;
  } catch (error) {
    if (serial !== dsp.serial) return;
    if (error instanceof ApiError && error.status === 401) return signedOut(error);
    let message;
    if (error instanceof ApiError && error.status === 404) {
      message = identity.code
        ? ["未找到：该码未关联任何人员，请输入身份证号", "not_found: no worker is linked to this code; type the ID number"]
        : ["未找到：系统中无此人员", "not_found: no worker known by this ID number"];
    } else if (error instanceof ApiError && error.status === 403) {
      message = NO_PERMISSION;
    } else if (error instanceof ApiError) {
      message = [REASON_LABELS[error.code] ?? "无法查找", `${error.code}: ${error.message}`];
    } else {
      message = ["网络不可用，无法查找", "The network is unavailable: cannot look the worker up"];
    }
    $("dsp-find-message").textContent = message.join(" · ");
    return;
  }
  if (serial !== dsp.serial) return;
  showWorker(view);
  $("dsp-record-who").textContent = `${view.name ?? ""} ${view.id_masked}`.trim();
  $("dsp-record-panel").hidden = dsp.permitted === false;
  // The focus stays on the scan field (the next worker's code); a kind is chosen by a tap.
  $("dsp-code").focus();
}

// What the nurse gave, or [zh, en] saying what is still missing.
function dispositionToRecord() {
  if (!dsp.kind) {
    return ["未登记：请选择处置类型", "Not recorded: choose the kind of disposition"];
  }
  // Line breaks are control characters the API refuses: a note is one paragraph.
  const note = $("dsp-note").value.replace(/\s*[\r\n\t]+\s*/g, " ").trim();
  if (!note) {
    $("dsp-note").focus();
    return ["未登记：请填写处置说明（必填）", "Not recorded: a note is required"];
  }
  if (note.length > MAX_NOTE) {
    $("dsp-note").focus();
    return [`未登记：说明不超过 ${MAX_NOTE} 字`, `Not recorded: the note is at most ${MAX_NOTE} characters`];
  }
  const body = { kind: dsp.kind, note };
  const at = $("dsp-at").value;
  if (at) {
    const moment = new Date(at);
    if (Number.isNaN(moment.getTime())) return ["未登记：时间无效", "Not recorded: the time is not valid"];
    if (moment.getTime() > Date.now() + 60000) {
      return ["未登记：发生时间不能晚于现在", "Not recorded: the time must not lie in the future"];
    }
    body.at = moment.toISOString();
  }
  return body;
}

async function recordDisposition() {
  const worker = dsp.worker;
  if (!worker) return;
  if (dsp.permitted === false) {
    $("dsp-message").textContent = NO_PERMISSION.join(" · ");
    return;
  }
  const body = dispositionToRecord();
  if (Array.isArray(body)) {
    $("dsp-message").textContent = body.join(" · ");
    return;
  }
  const serial = dsp.serial;
  const button = $("dsp-record");
  button.disabled = true;
  $("dsp-message").textContent = "";
  let recorded;
  try {
    recorded = await session.call("POST", `/v1/workers/${encodeURIComponent(worker.worker_ref)}/dispositions`, body);
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return signedOut(error);
    if (error instanceof ApiError && error.status === 403) {
      showPermission(false);
      dspBanner("bad", "forbidden", "无权限 NO PERMISSION", "not recorded", [NO_PERMISSION.join(" · ")]);
      return;
    }
    const message = error instanceof ApiError
      ? [REASON_LABELS[error.code] ?? "未登记", `${error.code}: ${error.message}`]
      : ["网络不可用，未登记，请重试", "The network is unavailable: not recorded; try again"];
    $("dsp-message").textContent = message.join(" · ");
    return;
  } finally {
    button.disabled = dsp.permitted === false;
  }
  if (serial !== dsp.serial) return;
  clearDispositionForm();
  $("dsp-record-panel").hidden = true;
  const facts = h("dl", { class: "dsp-facts" },
    h("dt", {}, "处置 Kind"), h("dd", { "data-kind": recorded.kind }, kindText(recorded.kind)),
    h("dt", {}, "编号 ID"), h("dd", { class: "mono", "data-disposition-id": recorded.disposition_id }, recorded.disposition_id),
    h("dt", {}, "时间 Time"), h("dd", { "data-at": recorded.at }, formatTime(recorded.at)),
    h("dt", {}, "登记人 By"), h("dd", {}, recorded.by),
    h("dt", {}, "说明 Note"), h("dd", {}, recorded.note));
  const waiting = h("div", { class: "line", "data-applied": "waiting" }, "等待生效… Waiting for the tracker to apply it…");
  dspBanner("ok", "recorded", "已登记 RECORDED", kindText(recorded.kind), [
    h("div", { class: "line" }, `${worker.name ?? ""} · ${worker.id_masked}`), facts, waiting,
  ]);
  awaitApplied(serial, worker.worker_ref, recorded.disposition_id, waiting);
}

// The tracker applies the disposition shortly after: read the loop view until it shows it.
async function awaitApplied(serial, workerRef, dispositionId, line) {
  const deadline = Date.now() + APPLY_WAIT_MS;
  let pause = 500;
  while (Date.now() < deadline && serial === dsp.serial) {
    await new Promise((resolve) => setTimeout(resolve, pause));
    pause = Math.min(pause * 1.5, 4000);
    let view;
    try {
      view = await session.call("GET", `/v1/workers/${encodeURIComponent(workerRef)}`);
    } catch {
      continue;
    }
    if (serial !== dsp.serial) return;
    if (!(view.dispositions ?? []).some((item) => item.disposition_id === dispositionId)) continue;
    showWorker(view);
    const open = view.alerts.filter((alert) => alert.open).length;
    line.dataset.applied = "applied";
    line.replaceChildren(
      "已生效 Applied · ",
      h("b", { "data-status": view.status }, `状态 Status: ${statusText(view.status)}`),
      ` · 未处理告警 Open alerts: ${open}`);
    $("dsp-result").dataset.state = "applied";
    return;
  }
  if (serial === dsp.serial) {
    line.dataset.applied = "late";
    line.textContent = "已登记，尚未生效：稍后再查此人 · Recorded, not applied yet: look the worker up again later";
  }
}

// ---- wiring ------------------------------------------------------------------------
const started = loadShift();
showFieldsForKind();
if (started && !shiftMissing()) closeShift();
else editShift();
updateNetwork();
saveQueue(queue());
for (const scan of queue()) {
  remember({ id: scan.scan_id, time: "", status: "queued", what: describe(scan), reason: overrideNote(scan) });
}
document.querySelectorAll('input[name="kind"]').forEach((radio) =>
  radio.addEventListener("change", kindChanged));
$("shift").addEventListener("submit", (event) => {
  event.preventDefault();
  const missing = shiftMissing();
  saveShift(!missing);
  if (missing) return editShift(missing);
  closeShift();
  focusScan();
});
$("shift-change").addEventListener("click", () => editShift());
$("scan").addEventListener("submit", (event) => {
  event.preventDefault();
  const code = codeInput.value;
  codeInput.value = "";
  codeInput.focus();
  // A scanner always types something before its Enter: an Enter alone is the operator
  // recording the worker on the banner.
  if (!code.trim() && pending) record();
  else handleCode(code);
});
recordForm.addEventListener("submit", (event) => {
  event.preventDefault();
  record();
});
$("record-cancel").addEventListener("click", () => {
  dropPending();
  focusScan();
});
$("override-offline").addEventListener("click", () => {
  override.value = OFFLINE_REASON;
  override.focus();
});
window.addEventListener("online", () => {
  updateNetwork();
  flush();
});
window.addEventListener("offline", updateNetwork);
setInterval(flush, RETRY_MS);
wireCamera();

for (const tab of document.querySelectorAll('[role="tab"]')) {
  tab.addEventListener("click", () => {
    const wanted = tab.dataset.mode === "disposition" ? "#dispositions" : "";
    history.replaceState(null, "", `${location.pathname}${location.search}${wanted}`);
    applyMode();
  });
}
window.addEventListener("hashchange", applyMode);
$("dsp-find").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = $("dsp-code");
  const code = input.value;
  input.value = "";
  if (dsp.permitted === false) {
    $("dsp-find-message").textContent = NO_PERMISSION.join(" · ");
    return;
  }
  findWorker(code);
});
for (const button of document.querySelectorAll("#dsp-kinds button")) {
  button.addEventListener("click", () => {
    chooseKind(button.dataset.kind);
    $("dsp-message").textContent = "";
    $("dsp-note").focus();
  });
}
$("dsp-form").addEventListener("submit", (event) => {
  event.preventDefault();
  recordDisposition();
});
$("dsp-cancel").addEventListener("click", () => {
  dsp.serial += 1;
  dsp.worker = null;
  clearDispositionForm();
  $("dsp-record-panel").hidden = true;
  $("dsp-worker").hidden = true;
  hideBanner();
  focusMode();
});
applyMode();
