// Shared by the pages: the bearer token, calls to the JSON API, labels, DOM helpers.
// Plain ES module, no dependencies: the pages must work on a closed network.

export const KIND_LABELS = {
  departure_check: ["出发体检", "Departure check"],
  boarding: ["上车", "Boarding"],
  arrival_check: ["抵达复检", "Arrival recheck"],
  checkin: ["入厂报到", "Factory check-in"],
};

export const ALERT_LABELS = {
  fever_at_departure: "出发时发热",
  code_not_green_at_departure: "出发时非绿码",
  boarded_without_clearance: "未通过体检即上车",
  trip_mismatch: "乘错车次",
  fever_at_arrival: "抵达时发热",
  code_not_green_at_arrival: "抵达时非绿码",
  arrived_without_boarding: "无上车记录即抵达",
  checkin_without_arrival_check: "未复检即报到",
  wrong_enterprise: "到错企业",
  overdue_arrival: "逾期未抵达",
  overdue_checkin: "逾期未报到",
  code_changed_in_transit: "途中健康码转色",
};

export const HEALTH_LABELS = { green: "绿码", yellow: "黄码", red: "红码" };

export const REASON_LABELS = {
  id_number_length: "证件号应为18位",
  id_number_format: "证件号格式错误",
  id_number_birth_date: "证件号出生日期无效",
  id_number_checksum: "证件号校验位错误",
  id_number_type: "证件号格式错误",
  missing_field: "缺少必填项",
  temperature_out_of_range: "体温超出范围",
  invalid_health_code: "健康码颜色无效",
  invalid_timestamp: "时间格式错误",
  invalid_field: "字段无效",
  unknown_kind: "扫码类型无效",
  not_permitted: "当前令牌无权登记此类扫码",
  not_found: "未找到该人员",
  invalid_code: "无法识别的码",
  unknown_code: "该码未关联任何人员",
  code_mismatch: "码与身份证号不是同一人",
  invalid_request: "请求格式错误",
  unauthorized: "令牌无效或已过期",
  forbidden: "无权限",
  unavailable: "服务暂不可用",
};

// Why a checkpoint decision (POST /v1/decisions) said what it said, by reason code.
// The API's English message is shown beside the Chinese phrase.
export const DECISION_LABELS = {
  not_on_manifest: "不在返岗名单上",
  departure_check_missing: "无出发体检记录",
  departure_check_failed: "出发体检未通过",
  code_not_green: "健康码非绿码或颜色未知",
  wrong_trip: "不是本车次名单上的人",
  not_boarded: "无上车记录",
  arrival_check_missing: "无抵达复检记录，请先到健康站复检",
  arrival_check_failed: "抵达复检未通过",
  wrong_enterprise: "应到其他企业报到",
  open_alert: "有未处理告警",
};

export function maskId(idNumber) {
  if (idNumber.length < 10) return "*".repeat(idNumber.length);
  return idNumber.slice(0, 6) + "*".repeat(idNumber.length - 10) + idNumber.slice(-4);
}

// A scan_id unique per scan (crypto.randomUUID needs a secure context; this does not).
export function newScanId() {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return "ui-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// h("td", {class: "n"}, "text", child): elements built with textContent only, never HTML.
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    // Through the CSSOM: the pages' policy refuses style attributes.
    else if (name === "style") element.style.cssText = value;
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

export function formatTime(iso) {
  if (!iso) return "—";
  const moment = new Date(iso);
  const pad = (n) => String(n).padStart(2, "0");
  return (
    `${pad(moment.getMonth() + 1)}-${pad(moment.getDate())} ` +
    `${pad(moment.getHours())}:${pad(moment.getMinutes())}:${pad(moment.getSeconds())}`
  );
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// The bearer token, kept per page so one device can be a scanner and another a supervisor.
export class Session {
  constructor(page) {
    this.key = `returnloop.token.${page}`;
  }

  get token() {
    return localStorage.getItem(this.key);
  }

  set token(value) {
    if (value) localStorage.setItem(this.key, value);
    else localStorage.removeItem(this.key);
  }

  // A JSON call; network failures throw TypeError, API errors throw ApiError.
  async call(method, path, body) {
    const headers = { Accept: "application/json", Authorization: `Bearer ${this.token}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
    const payload = await response.json().catch(() => null);
    if (!response.ok) {
      const error = payload?.error ?? {};
      throw new ApiError(
        response.status,
        error.code ?? "http_error",
        error.message ?? response.statusText,
      );
    }
    return payload;
  }
}

// The sign-in form: shows when there is no token (or it was refused), hides otherwise.
export function wireSignIn(session, { onSignedIn }) {
  const form = document.getElementById("signin");
  const input = document.getElementById("token-input");
  const message = document.getElementById("signin-message");
  const signOut = document.getElementById("signout");
  const show = (text) => {
    form.hidden = false;
    document.body.classList.add("signed-out");
    message.textContent = text ?? "";
    input.focus();
  };
  const hide = () => {
    form.hidden = true;
    document.body.classList.remove("signed-out");
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const token = input.value.trim();
    if (!token) return;
    session.token = token;
    input.value = "";
    hide();
    onSignedIn();
  });
  signOut.addEventListener("click", () => {
    session.token = null;
    show("已退出 Signed out");
  });
  if (session.token) {
    hide();
    onSignedIn();
  } else {
    show();
  }
  // Call with the error when the API refuses the token.
  return (error) => {
    session.token = null;
    show(`令牌无效或已过期 The token was refused: ${error.message}`);
  };
}
