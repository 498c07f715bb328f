// The supervisor page: one table per enterprise, trips with missing workers, open alerts.
import {
  ALERT_LABELS,
  ApiError,
  Session,
  formatTime,
  h,
  wireSignIn,
} from "./common.js";

const REFRESH_MS = 5000;
const ALERT_PAGE = 200;
const MODE_LABELS = { bus: "大巴", train: "专列", flight: "包机" };
const COUNTS = ["expected", "departed", "in_transit", "arrived", "checked_in"];

const session = new Session("supervisor");
const state = { enterprises: [], trips: [], alerts: [], moreAlerts: false, expanded: new Map() };
let timer = null;

const $ = (id) => document.getElementById(id);
const live = $("live");
const filterInput = $("filter");

const signedOut = wireSignIn(session, { onSignedIn: () => refresh() });
filterInput.addEventListener("input", render);
document.addEventListener("visibilitychange", () => {
  if (!document.hidden) refresh();
});

async function refresh() {
  clearTimeout(timer);
  if (!session.token) return;
  try {
    const [enterprises, trips, alerts] = await Promise.all([
      session.call("GET", "/v1/enterprises"),
      session.call("GET", "/v1/trips?with_missing_only=true"),
      session.call("GET", `/v1/alerts?status=open&limit=${ALERT_PAGE}`),
    ]);
    state.enterprises = enterprises.enterprises;
    state.trips = trips.trips;
    state.alerts = alerts.alerts;
    state.moreAlerts = alerts.next_cursor !== null;
    for (const tripId of state.expanded.keys()) {
      state.expanded.set(tripId, await session.call("GET", `/v1/trips/${encodeURIComponent(tripId)}`));
    }
    live.className = "pill ok";
    live.textContent = `实时 Live · 更新于 ${formatTime(new Date().toISOString()).slice(6)}`;
    render();
  } catch (error) {
    if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
      signedOut(error);
      return;
    }
    live.className = "pill bad";
    live.textContent = "连接中断，重试中 Connection lost, retrying";
  }
  if (!document.hidden) timer = setTimeout(refresh, REFRESH_MS);
}

function matches(...values) {
  const needle = filterInput.value.trim().toLowerCase();
  return !needle || values.some((value) => value && String(value).toLowerCase().includes(needle));
}

function render() {
  const enterprises = state.enterprises.filter((e) => matches(e.enterprise_id, e.name));
  const trips = state.trips.filter((t) => matches(t.trip_id, t.origin, t.destination));
  const alerts = state.alerts.filter((a) => matches(a.enterprise_id, a.trip_id, a.kind, a.worker_ref));
  renderTiles(enterprises, alerts);
  renderEnterprises(enterprises);
  renderTrips(trips);
  renderAlerts(alerts);
}

function renderTiles(enterprises, alerts) {
  const sum = (field) => enterprises.reduce((total, e) => total + e[field], 0);
  const tile = (label, english, value, tone) =>
    h("div", { class: `tile ${value && tone ? tone : ""}`, "data-tile": english.toLowerCase() },
      h("div", { class: "label" }, label, h("span", { class: "en" }, english)),
      h("div", { class: "value" }, value));
  $("tiles").replaceChildren(
    tile("应到", "Expected", sum("expected")),
    tile("已出发", "Departed", sum("departed")),
    tile("在途", "In transit", sum("in_transit")),
    tile("已抵达", "Arrived", sum("arrived")),
    tile("已到岗", "On post", sum("checked_in")),
    tile("扣留", "Held", sum("held"), "warn"),
    tile("断链", "Broken", sum("broken"), "bad"),
    tile("未处理告警", "Open alerts", `${alerts.length}${state.moreAlerts ? "+" : ""}`, "bad"),
  );
}

function numberCell(field, value, tone) {
  return h("td", { class: `n ${value && tone ? tone : ""}`, "data-field": field }, value);
}

function renderEnterprises(enterprises) {
  $("enterprises-count").textContent = `${enterprises.length} 家 enterprises`;
  const rows = enterprises.map((e) => {
    const percent = Math.round(e.on_post_ratio * 100);
    return h("tr", { "data-enterprise-id": e.enterprise_id },
      h("td", {}, e.name ?? "—", h("div", { class: "muted mono" }, e.enterprise_id)),
      COUNTS.map((field) => numberCell(field, e[field])),
      h("td", { class: "n", "data-field": "on_post_ratio" },
        h("div", { class: "ratio" },
          h("div", { class: "bar" }, h("span", { style: `width: ${Math.min(percent, 100)}%` })),
          `${percent}%`)),
      numberCell("held", e.held, "warn"),
      numberCell("broken", e.broken, "bad"),
      numberCell("shortage", e.shortage));
  });
  $("enterprises").tBodies[0].replaceChildren(
    ...(rows.length ? rows : [h("tr", {}, h("td", { colspan: 10, class: "empty" }, "暂无企业 No enterprises"))]),
  );
}

function renderTrips(trips) {
  $("trips-count").textContent = `${trips.length} 趟 trips`;
  const now = Date.now();
  const rows = [];
  for (const t of trips) {
    const overdue = t.eta && new Date(t.eta).getTime() < now;
    rows.push(h("tr", {
      class: "clickable", "data-trip-id": t.trip_id, title: "点击查看未到人员 Click for who is missing",
      onclick: () => toggleTrip(t.trip_id),
    },
      h("td", {}, h("span", { class: "mono" }, t.trip_id),
        h("div", { class: "muted" }, t.mode ? `${MODE_LABELS[t.mode] ?? ""} ${t.mode}` : "未登记 unregistered")),
      h("td", { class: "nowrap" }, t.origin ? `${t.origin} → ${t.destination}` : "—"),
      h("td", { class: "nowrap" }, formatTime(t.eta), overdue ? h("span", { class: "badge" }, "逾期 overdue") : null),
      numberCell("manifest", t.manifest),
      numberCell("boarded", t.boarded),
      numberCell("arrived", t.arrived),
      h("td", { class: "n bad", "data-field": "missing_count" }, t.missing_count,
        t.not_on_manifest_count
          ? h("span", { class: "badge amber", title: "不在名单 not on manifest" }, `+${t.not_on_manifest_count} 名单外`)
          : null)));
    const detail = state.expanded.get(t.trip_id);
    if (detail) {
      rows.push(h("tr", { class: "detail" }, h("td", { colspan: 7 },
        "未到人员 Missing: ", h("span", { class: "mono" }, detail.missing.join("  ") || "—"),
        detail.not_on_manifest.length
          ? h("div", {}, "名单外 Not on manifest: ", h("span", { class: "mono" }, detail.not_on_manifest.join("  ")))
          : null)));
    }
  }
  $("trips").tBodies[0].replaceChildren(
    ...(rows.length ? rows : [h("tr", {}, h("td", { colspan: 7, class: "empty" }, "所有车次人员均已抵达 Every boarded worker has arrived"))]),
  );
}

async function toggleTrip(tripId) {
  if (state.expanded.has(tripId)) {
    state.expanded.delete(tripId);
  } else {
    try {
      state.expanded.set(tripId, await session.call("GET", `/v1/trips/${encodeURIComponent(tripId)}`));
    } catch {
      return;
    }
  }
  render();
}

function renderAlerts(alerts) {
  $("alerts-count").textContent = `${alerts.length}${state.moreAlerts ? "+" : ""} 条 open`;
  const rows = alerts.map((a) =>
    h("tr", { "data-alert-id": a.alert_id, "data-kind": a.kind, "data-enterprise-id": a.enterprise_id ?? "" },
      h("td", { class: "nowrap" }, formatTime(a.raised_at)),
      h("td", {}, ALERT_LABELS[a.kind] ?? a.kind, h("div", { class: "muted mono" }, a.kind),
        a.acknowledged_at ? h("span", { class: "badge amber", title: a.resolution_note ?? "" }, "已确认 acknowledged") : null),
      h("td", { class: "mono" }, a.enterprise_id ?? "—"),
      h("td", { class: "mono" }, a.trip_id ?? "—"),
      h("td", { class: "mono" }, a.worker_ref)));
  $("alerts").tBodies[0].replaceChildren(
    ...(rows.length ? rows : [h("tr", {}, h("td", { colspan: 5, class: "empty" }, "没有未处理告警 No open alerts"))]),
  );
}
