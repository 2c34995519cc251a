// DOM helpers and formatting. Text always goes in as text nodes: nothing is parsed as HTML.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") el.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

export function badge(text, kind = text, attrs = {}) {
  return h("span", { class: `badge badge-${String(kind).replace(/[^a-z_]/gi, "")}`, ...attrs }, text);
}

export function fmtTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function fmtNumber(n) {
  return typeof n === "number" ? n.toLocaleString("en-US") : "–";
}

const UNITS = { Y: "y", M: "mo", W: "w", D: "d", H: "h", m: "min", S: "s" };

// "PT3H" -> "3 h", "P1DT12H" -> "1 d 12 h"; anything unexpected is shown as given.
export function fmtDuration(iso) {
  const m = /^P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:([\d.]+)S)?)?$/.exec(iso || "");
  if (!m) return String(iso ?? "");
  const parts = [];
  ["Y", "M", "W", "D", "H", "m", "S"].forEach((unit, i) => {
    if (m[i + 1] && Number(m[i + 1]) !== 0) parts.push(`${m[i + 1]} ${UNITS[unit]}`);
  });
  return parts.length ? parts.join(" ") : "0 s";
}

const OPS = { eq: "=", neq: "≠", gt: ">", gte: "≥", lt: "<", lte: "≤", in: "in", not_in: "not in",
  contains: "contains", exists: "exists", not_exists: "missing" };

function condition(c, key) {
  const op = OPS[c.op] || c.op;
  if (c.op === "exists" || c.op === "not_exists") return `${c[key]} ${op}`;
  return `${c[key]} ${op} ${JSON.stringify(c.value)}`;
}

// A short human reading of a criteria object.
export function describe(criteria) {
  if (!criteria || typeof criteria !== "object") return "";
  if (Array.isArray(criteria.all)) return criteria.all.map(describe).join(" and ");
  if (Array.isArray(criteria.any)) return `(${criteria.any.map(describe).join(" or ")})`;
  if (criteria.not) return `not (${describe(criteria.not)})`;
  const parts = [];
  if (criteria.event) parts.push(criteria.event);
  const where = (criteria.where || []).map((c) => condition(c, "property"));
  if (where.length) parts.push(`where ${where.join(", ")}`);
  const profile = (criteria.profile || []).map((c) => condition(c, "attribute"));
  if (profile.length) parts.push(`${criteria.event ? "and profile " : "profile "}${profile.join(", ")}`);
  return parts.join(" ");
}

export function truncate(text, max) {
  const t = String(text ?? "");
  return t.length > max ? `${t.slice(0, max - 1)}…` : t;
}

// A problem+json answer, explained; a 403 says what the key's role may not do.
export function problemBox(error, role, what) {
  const p = error.problem || {};
  const box = h("div", { class: `problem problem-${error.status || "network"}`, role: "alert" });
  if (error.status === 403) {
    box.append(
      h("strong", {}, "Not allowed for this key"),
      h("p", {}, what ? `A ${role || "this"} key may not ${what}.` : p.detail || "This key may not do that."),
      h("p", { class: "muted" }, `The gateway answered 403${p.detail ? `: ${p.detail}` : ""}. `,
        "Ask a workspace admin for a key with a role that allows it (README: Using the API)."),
    );
    return box;
  }
  const titles = { 0: "Gateway unreachable", 404: "Not found", 409: "Conflict", 422: "Not valid",
    429: "Too many requests", 503: "A service is unavailable" };
  box.append(h("strong", {}, p.title || titles[error.status] || `Error ${error.status}`));
  if (p.detail) box.append(h("p", {}, p.detail));
  if (Array.isArray(p.errors) && p.errors.length) {
    box.append(h("ul", { class: "field-errors" },
      p.errors.map((e) => h("li", {}, h("code", {}, e.path || "(body)"), " ", e.message))));
  }
  if (error.status === 429 || error.status === 503) box.append(h("p", { class: "muted" }, "It is retried on the next refresh."));
  return box;
}

export function table(columns, rows, empty = "Nothing here yet.") {
  if (!rows.length) return h("p", { class: "empty" }, empty);
  return h("table", { class: "grid" },
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { class: c.class }, c.title)))),
    h("tbody", {}, rows.map((row) => h("tr", {}, columns.map((c) => h("td", { class: c.class }, c.cell(row)))))),
  );
}

export function kv(object) {
  const entries = Object.entries(object || {});
  if (!entries.length) return h("p", { class: "empty" }, "None.");
  return h("dl", { class: "kv" }, entries.map(([k, v]) => [
    h("dt", {}, k),
    h("dd", {}, typeof v === "object" && v !== null ? JSON.stringify(v) : String(v)),
  ]));
}

export function card(title, ...children) {
  return h("section", { class: "card" }, title ? h("h2", {}, title) : null, ...children);
}

export function stat(label, value, note, attrs = {}) {
  return h("div", { class: "stat", ...attrs },
    h("div", { class: "stat-label" }, label),
    h("div", { class: "stat-value" }, value),
    note ? h("div", { class: "stat-note" }, note) : null);
}
