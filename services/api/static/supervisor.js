// The supervisor page: districts, one table per enterprise (drilling down to who is not back
// and the daily progress toward 100 %), held workers with their dispositions and days held,
// trips with missing workers, open alerts; each list table downloads as CSV or XLSX.
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
// A drill-down lists this many workers; the download has every one.
const NOT_BACK_SHOWN = 500;
const NO_DISTRICT = "未分区 no district";
const STAGE_LABELS = {
  registered: "已登记 registered",
  departure_cleared: "出发体检通过 departure cleared",
  boarded: "已上车 boarded",
  arrival_cleared: "抵达复检通过 arrival cleared",
  checked_in: "已到岗 checked in",
};
const STATUS_LABELS = {
  open: "进行中 open",
  held: "扣留 held",
  broken: "断链 broken",
  closed: "闭环 closed",
  withdrawn: "已退出 withdrawn",
};
const SVG = "http://www.w3.org/2000/svg";
// The held table lists this many workers, longest held first.
const HELD_SHOWN = 200;
const DISPOSITION_LABELS = {
  isolation: "隔离 isolation",
  medical_observation: "医学观察 medical observation",
  released: "解除 released",
  code_appeal_upheld: "申诉成立 code appeal upheld",
  withdrawn: "放弃返岗 withdrawn",
};

const session = new Session("supervisor");
const state = {
  districts: [],
  enterprises: [],
  trips: [],
  alerts: [],
  moreAlerts: false,
  // Null until the first answer: the held list is read beside the others, not waited for.
  held: null,
  expanded: new Map(),
  // The district the enterprises are filtered to (undefined: all; null: those with none).
  district: undefined,
  // The enterprise drilled into, and its not-back list and daily rows.
  drill: null,
  drillData: null,
};
let timer = null;

const $ = (id) => document.getElementById(id);
const live = $("live");
const filterInput = $("filter");

for (const holder of document.querySelectorAll(".downloads[data-export]")) {
  holder.append(...downloadButtons(holder.dataset.export));
}

const signedOut = wireSignIn(session, { onSignedIn: () => refresh() });
filterInput.addEventListener("input", render);
document.addEventListener("visibilitychange", () => {
  if (!document.hidden) refresh();
});

async function refresh() {
  clearTimeout(timer);
  if (!session.token) return;
  try {
    // The held list may be long (every held worker an admin sees): the other tables render
    // without waiting for it.
    const heldCall = session.call("GET", "/v1/held");
    heldCall.catch(() => {});
    const [districts, enterprises, trips, alerts] = await Promise.all([
      session.call("GET", "/v1/districts"),
      session.call("GET", "/v1/enterprises"),
      session.call("GET", "/v1/trips?with_missing_only=true"),
      session.call("GET", `/v1/alerts?status=open&limit=${ALERT_PAGE}`),
    ]);
    state.districts = districts.districts;
    state.enterprises = enterprises.enterprises;
    state.trips = trips.trips;
    state.alerts = alerts.alerts;
    state.moreAlerts = alerts.next_cursor !== null;
    for (const tripId of state.expanded.keys()) {
      state.expanded.set(tripId, await session.call("GET", `/v1/trips/${encodeURIComponent(tripId)}`));
    }
    if (state.drill) state.drillData = await drillData(state.drill);
    live.className = "pill ok";
    live.textContent = `实时 Live · 更新于 ${formatTime(new Date().toISOString()).slice(6)}`;
    render();
    state.held = (await heldCall).workers;
    renderHeld(heldShown());
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
  const enterprises = state.enterprises.filter(
    (e) => matches(e.enterprise_id, e.name, e.district) && (state.district === undefined || e.district === state.district),
  );
  const trips = state.trips.filter((t) => matches(t.trip_id, t.origin, t.destination));
  const alerts = state.alerts.filter((a) => matches(a.enterprise_id, a.trip_id, a.kind, a.worker_ref));
  renderTiles(enterprises, alerts);
  renderDistricts();
  renderEnterprises(enterprises);
  renderHeld(heldShown());
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

function ratioCell(ratio) {
  const percent = Math.round(ratio * 100);
  return h("td", { class: "n", "data-field": "on_post_ratio" },
    h("div", { class: "ratio" },
      h("div", { class: "bar" }, h("span", { style: `width: ${Math.min(percent, 100)}%` })),
      `${percent}%`));
}

function renderDistricts() {
  $("districts-count").textContent = `${state.districts.length} 个 districts`;
  const rows = state.districts.map((d) =>
    h("tr", {
      class: `clickable ${state.district === d.district ? "selected" : ""}`,
      "data-district": d.district ?? "",
      title: "点击只看本区县企业 Click to list this district's enterprises",
      onclick: () => {
        state.district = state.district === d.district ? undefined : d.district;
        render();
      },
    },
      h("td", {}, d.district ?? NO_DISTRICT),
      numberCell("enterprises", d.enterprises),
      numberCell("expected", d.expected),
      numberCell("checked_in", d.checked_in),
      ratioCell(d.on_post_ratio),
      numberCell("held", d.held, "warn"),
      numberCell("broken", d.broken, "bad")));
  $("districts").tBodies[0].replaceChildren(
    ...(rows.length ? rows : [h("tr", {}, h("td", { colspan: 7, class: "empty" }, "暂无区县 No districts"))]),
  );
  $("district-filter").replaceChildren(
    state.district === undefined
      ? ""
      : h("span", { class: "badge", title: "点击显示全部 Click to show all", onclick: () => { state.district = undefined; render(); } },
        `${state.district ?? NO_DISTRICT} ✕`),
  );
}

function renderEnterprises(enterprises) {
  $("enterprises-count").textContent = `${enterprises.length} 家 enterprises`;
  const rows = [];
  for (const e of enterprises) {
    rows.push(h("tr", {
      class: `clickable ${state.drill === e.enterprise_id ? "selected" : ""}`,
      "data-enterprise-id": e.enterprise_id,
      title: "点击查看应返未返名单 Click for who is not back yet",
      onclick: () => toggleDrill(e.enterprise_id),
    },
      h("td", {}, e.name ?? "—", h("div", { class: "muted mono" }, e.enterprise_id)),
      h("td", { "data-field": "district" }, e.district ?? "—"),
      COUNTS.map((field) => numberCell(field, e[field])),
      ratioCell(e.on_post_ratio),
      numberCell("held", e.held, "warn"),
      numberCell("broken", e.broken, "bad"),
      numberCell("shortage", e.shortage),
      numberCell("open_positions", e.open_positions ?? "—")));
    if (state.drill === e.enterprise_id && state.drillData) rows.push(drillRow(e, state.drillData));
  }
  $("enterprises").tBodies[0].replaceChildren(
    ...(rows.length ? rows : [h("tr", {}, h("td", { colspan: 12, class: "empty" }, "暂无企业 No enterprises"))]),
  );
}

async function drillData(enterpriseId) {
  const id = encodeURIComponent(enterpriseId);
  const [notBack, daily] = await Promise.all([
    session.call("GET", `/v1/enterprises/${id}/not_back`),
    session.call("GET", `/v1/enterprises/${id}/daily`),
  ]);
  return { notBack, daily };
}

async function toggleDrill(enterpriseId) {
  if (state.drill === enterpriseId) {
    state.drill = null;
    state.drillData = null;
  } else {
    try {
      state.drillData = await drillData(enterpriseId);
      state.drill = enterpriseId;
    } catch {
      return;
    }
  }
  render();
}

function drillRow(enterprise, { notBack, daily }) {
  const shown = notBack.workers.slice(0, NOT_BACK_SHOWN);
  const path = `/v1/enterprises/${encodeURIComponent(enterprise.enterprise_id)}/not_back`;
  const workers = shown.map((w) =>
    h("tr", { "data-worker-ref": w.worker_ref },
      h("td", { "data-field": "name" }, w.name ?? "—"),
      h("td", { class: "mono", "data-field": "id_masked" }, w.id_masked),
      h("td", { class: "mono" }, w.travel === "self" ? "自行返岗 self" : (w.trip_id ?? "—")),
      h("td", {}, STAGE_LABELS[w.stage] ?? w.stage),
      h("td", { class: w.status === "held" ? "warn" : w.status === "broken" ? "bad" : "" }, STATUS_LABELS[w.status] ?? w.status),
      h("td", {}, w.open_alerts.map((kind) => h("span", { class: "badge", title: kind }, ALERT_LABELS[kind] ?? kind)))));
  const more = notBack.count > shown.length
    ? h("p", { class: "muted" }, `仅显示前 ${shown.length} 人，共 ${notBack.count} 人；下载可得全部 Showing ${shown.length} of ${notBack.count}; download for all`)
    : null;
  return h("tr", { class: "drill", "data-drill-for": enterprise.enterprise_id },
    h("td", { colspan: 12 },
      h("div", { class: "drill-grid" },
        h("section", { class: "daily" },
          h("h3", {}, "每日到岗进度 Daily progress toward 100 %"),
          daily.days.length ? dailyChart(daily.days) : h("p", { class: "empty" }, "尚无扫码 No scans yet")),
        h("section", { class: "not-back" },
          h("h3", {}, `应返未返 Not back yet: ${notBack.count} 人`,
            h("span", { class: "downloads" }, ...downloadButtons(path))),
          notBack.count
            ? h("table", { class: "not-back" },
              h("thead", {}, h("tr", {},
                ["姓名 Name", "证件号 ID", "车次 Trip", "阶段 Stage", "状态 Status", "告警 Alerts"].map((label) => h("th", {}, label)))),
              h("tbody", {}, workers))
            : h("p", { class: "empty" }, "全部到岗 Everyone is on post"),
          more))));
}

// The daily rows as an inline SVG: on-post ratio per day toward the 100 % line, with
// each day's new arrivals as bars. Built with DOM calls, nothing loaded from outside.
function svg(tag, attributes = {}, ...children) {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, String(value));
  for (const child of children) element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return element;
}

function dailyChart(days) {
  const width = 560, height = 190, left = 40, right = 16, top = 16, bottom = 28;
  const plotWidth = width - left - right, plotHeight = height - top - bottom;
  const x = (i) => left + (days.length === 1 ? plotWidth / 2 : (i * plotWidth) / (days.length - 1));
  const y = (ratio) => top + plotHeight * (1 - Math.min(Math.max(ratio, 0), 1));
  const last = days[days.length - 1];
  const chart = svg("svg", {
    class: "daily-chart", viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": `到岗率 on post ${Math.round(last.on_post_ratio * 100)}% (${last.checked_in}/${last.expected}) on ${last.date}`,
  });
  for (const ratio of [0, 0.5]) {
    chart.append(svg("line", { class: "axis", x1: left, x2: width - right, y1: y(ratio), y2: y(ratio) }),
      svg("text", { x: left - 6, y: y(ratio) + 4, "text-anchor": "end" }, `${ratio * 100}%`));
  }
  chart.append(svg("line", { class: "target", x1: left, x2: width - right, y1: y(1), y2: y(1) }),
    svg("text", { class: "target-label", x: left - 6, y: y(1) + 4, "text-anchor": "end" }, "100%"));
  const barWidth = Math.max(2, Math.min(18, plotWidth / days.length - 2));
  days.forEach((day, i) => {
    const share = day.expected ? day.newly_checked_in / day.expected : 0;
    if (share > 0) {
      chart.append(svg("rect", {
        class: "newly", x: x(i) - barWidth / 2, y: y(share), width: barWidth, height: y(0) - y(share),
      }, svg("title", {}, `${day.date} 新到岗 newly on post: ${day.newly_checked_in}`)));
    }
  });
  const points = days.map((day, i) => `${x(i)},${y(day.on_post_ratio)}`);
  chart.append(
    svg("polygon", { class: "area", points: `${x(0)},${y(0)} ${points.join(" ")} ${x(days.length - 1)},${y(0)}` }),
    svg("polyline", { class: "progress", points: points.join(" ") }));
  days.forEach((day, i) => {
    chart.append(svg("circle", { cx: x(i), cy: y(day.on_post_ratio), r: 3, "data-date": day.date },
      svg("title", {}, `${day.date}: ${day.checked_in}/${day.expected} 到岗 on post (${Math.round(day.on_post_ratio * 100)}%), +${day.newly_checked_in}`)));
  });
  const labelled = days.length > 2 ? [0, Math.floor((days.length - 1) / 2), days.length - 1] : days.map((_, i) => i);
  for (const i of new Set(labelled)) {
    chart.append(svg("text", { x: x(i), y: height - 8, "text-anchor": "middle" }, days[i].date.slice(5)));
  }
  chart.append(svg("text", { x: x(days.length - 1), y: y(last.on_post_ratio) - 8, "text-anchor": "end", class: "target-label" },
    `${Math.round(last.on_post_ratio * 100)}%`));
  return chart;
}

// CSV and XLSX buttons for a list path; the download carries the bearer token, so it is
// fetched and handed to the browser as a file.
function downloadButtons(path) {
  return ["csv", "xlsx"].map((format) =>
    h("button", {
      type: "button", class: "download", "data-format": format,
      title: `下载 Download ${format.toUpperCase()}`,
      onclick: (event) => {
        event.stopPropagation();
        download(path, format);
      },
    }, format.toUpperCase()));
}

function filenameFrom(disposition) {
  const encoded = /filename\*=UTF-8''([^;]+)/i.exec(disposition ?? "");
  if (encoded) return decodeURIComponent(encoded[1]);
  const plain = /filename="([^"]+)"/i.exec(disposition ?? "");
  return plain ? plain[1] : null;
}

async function download(path, format) {
  const url = `${path}${path.includes("?") ? "&" : "?"}format=${format}`;
  try {
    const response = await fetch(url, { headers: { Authorization: `Bearer ${session.token}` }, cache: "no-store" });
    if (!response.ok) throw new ApiError(response.status, "download_failed", response.statusText);
    const file = await response.blob();
    const link = h("a", { href: URL.createObjectURL(file), download: filenameFrom(response.headers.get("Content-Disposition")) ?? `returnloop.${format}` });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
  } catch (error) {
    if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
      signedOut(error);
      return;
    }
    live.className = "pill bad";
    live.textContent = `下载失败 Download failed: ${error.message}`;
  }
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

// Held workers, longest held first (the API's order; kept here too so a tie or a missing
// held_since cannot reorder the rows between refreshes).
function heldOrder(a, b) {
  const days = (b.days_held ?? -1) - (a.days_held ?? -1);
  if (days) return days;
  const since = (a.held_since ?? "\uffff").localeCompare(b.held_since ?? "\uffff");
  return since || a.worker_ref.localeCompare(b.worker_ref);
}

function alertWords(kind) {
  return h("div", { class: "held-alert", "data-kind": kind },
    ALERT_LABELS[kind] ?? kind, h("span", { class: "en" }, kind.replaceAll("_", " ")));
}

function dispositionItem(d) {
  return h("li", { "data-kind": d.kind, "data-disposition-id": d.disposition_id },
    h("span", { class: `disposition-kind ${d.kind}` }, DISPOSITION_LABELS[d.kind] ?? d.kind),
    h("span", { class: "muted nowrap" }, ` ${formatTime(d.at)}`),
    d.note ? h("div", { class: "disposition-note" }, d.note) : null);
}

function heldShown() {
  return state.held?.filter((w) =>
    matches(w.name, w.id_masked, w.enterprise_id, w.trip_id, w.worker_ref, ...w.open_alerts.map((a) => a.kind)));
}

function renderHeld(workers) {
  if (!workers) {
    $("held").tBodies[0].replaceChildren(h("tr", {}, h("td", { colspan: 6, class: "empty" }, "加载中 Loading…")));
    return;
  }
  const sorted = [...workers].sort(heldOrder);
  const shown = sorted.slice(0, HELD_SHOWN);
  $("held-count").textContent = `${sorted.length} 人 held`;
  const names = new Map(state.enterprises.map((e) => [e.enterprise_id, e.name]));
  const rows = shown.map((w) =>
    h("tr", { "data-worker-ref": w.worker_ref, "data-enterprise-id": w.enterprise_id ?? "" },
      h("td", { "data-field": "name" }, w.name ?? "—"),
      h("td", { class: "mono nowrap", "data-field": "id_masked" }, w.id_masked),
      h("td", { "data-field": "enterprise" },
        names.get(w.enterprise_id) ?? "",
        h("div", { class: "muted mono", "data-field": "enterprise_id" }, w.enterprise_id ?? "—")),
      h("td", { "data-field": "open_alerts" },
        w.open_alerts.length ? w.open_alerts.map((a) => alertWords(a.kind)) : "—"),
      h("td", { "data-field": "dispositions" },
        w.dispositions.length
          ? h("ul", { class: "dispositions" }, w.dispositions.map(dispositionItem))
          : h("span", { class: "muted" }, "尚无处置 none yet")),
      h("td", { class: "n warn", "data-field": "days_held" },
        w.days_held === null || w.days_held === undefined ? "—" : `${w.days_held} 天 days`)));
  $("held").tBodies[0].replaceChildren(
    ...(rows.length ? rows : [h("tr", {}, h("td", { colspan: 6, class: "empty" }, "没有扣留人员 Nobody is held"))]),
  );
  const more = $("held-more");
  more.hidden = sorted.length <= shown.length;
  more.textContent = more.hidden
    ? ""
    : `仅显示扣留最久的 ${shown.length} 人，共 ${sorted.length} 人 Showing the ${shown.length} longest held of ${sorted.length}`;
}
