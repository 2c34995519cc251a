// The criteria editor: an event picked from the workspace's triggers (and the built-in events),
// its declared properties with only the operators and values that fit their type, profile
// attribute conditions, and all / any / not groups. It edits the criteria object in place and
// calls `changed(key)` after each edit; a structural edit also asks for a new rendering.
import { h } from "./ui.js";

// Events the product records itself; always known, whatever a workspace declares.
export const BUILTIN_EVENTS = ["message_sent", "message_failed", "email_opened", "email_clicked", "profile_updated"];
const BUILTIN_PROPERTIES = ["step_id", "journey_id", "channel", "template_id"];

const OPS = {
  eq: "equals", neq: "is not", gt: ">", gte: "≥", lt: "<", lte: "≤", in: "is one of",
  not_in: "is none of", contains: "contains", exists: "exists", not_exists: "is missing",
};
const OPS_BY_TYPE = {
  string: ["eq", "neq", "in", "not_in", "contains", "exists", "not_exists"],
  enum: ["eq", "neq", "in", "not_in", "exists", "not_exists"],
  number: ["eq", "neq", "gt", "gte", "lt", "lte", "in", "not_in", "exists", "not_exists"],
  integer: ["eq", "neq", "gt", "gte", "lt", "lte", "in", "not_in", "exists", "not_exists"],
  "date-time": ["eq", "neq", "gt", "gte", "lt", "lte", "exists", "not_exists"],
  boolean: ["eq", "neq", "exists", "not_exists"],
  array: ["contains", "exists", "not_exists"],
  object: ["exists", "not_exists"],
  any: Object.keys(OPS),
};
const PRESENCE = new Set(["exists", "not_exists"]);
const LISTS = new Set(["in", "not_in"]);

// The declared properties of a trigger, flattened to dotted paths with a simple kind each.
export function declaredProperties(trigger) {
  const out = new Map();
  const walk = (props, prefix) => {
    for (const [name, schema] of Object.entries(props || {})) {
      const path = prefix ? `${prefix}.${name}` : name;
      out.set(path, kindOf(schema));
      if (schema && schema.type === "object") walk(schema.properties, path);
    }
  };
  walk(trigger?.properties, "");
  return out;
}

function kindOf(schema) {
  if (!schema || typeof schema !== "object") return { type: "any" };
  if (Array.isArray(schema.enum)) return { type: "enum", values: schema.enum, base: schema.type };
  if (schema.type === "string" && schema.format === "date-time") return { type: "date-time" };
  const type = Array.isArray(schema.type) ? schema.type.find((t) => t !== "null") : schema.type;
  return { type: OPS_BY_TYPE[type] ? type : "any" };
}

// The kind of a criteria group: what the first select shows.
function shapeOf(c) {
  if (Array.isArray(c.all)) return "all";
  if (Array.isArray(c.any)) return "any";
  if (c.not) return "not";
  return "match";
}

function emptyOf(shape) {
  if (shape === "all") return { all: [{ event: "" }] };
  if (shape === "any") return { any: [{ event: "" }] };
  if (shape === "not") return { not: { event: "" } };
  return { event: "" };
}

function replaceWith(target, source) {
  for (const key of Object.keys(target)) delete target[key];
  Object.assign(target, source);
}

function parseLoose(text) {
  if (/^-?\d+(\.\d+)?$/.test(text.trim())) return Number(text);
  if (text === "true") return true;
  if (text === "false") return false;
  return text;
}

function shown(value) {
  if (value === undefined) return "";
  return typeof value === "string" ? value : JSON.stringify(value);
}

function typedValue(kind, text) {
  if (kind.type === "number" || kind.type === "integer" || (kind.type === "enum" && kind.base === "number")) {
    return text === "" ? null : Number(text);
  }
  if (kind.type === "boolean") return text === "true";
  if (kind.type === "date-time") return text.length === 16 ? `${text}:00Z` : text;
  if (kind.type === "any") return parseLoose(text);
  return text;
}

/**
 * ctx: {triggers: Map name -> trigger, changed(key, {structure}), key (a stable prefix for
 * focus), path (the JSON path of this criteria object), readOnly}.
 */
export function criteriaEditor(criteria, ctx, label = "Criteria") {
  const box = h("fieldset", { class: "criteria", "data-path": ctx.path, disabled: ctx.readOnly || undefined },
    h("legend", {}, label));
  const shape = shapeOf(criteria);
  box.append(h("label", { class: "inline" }, "Match ",
    h("select", { "aria-label": `${label}: kind`, "data-key": `${ctx.path}.kind`, onchange: (e) => {
      replaceWith(criteria, emptyOf(e.target.value));
      ctx.changed(`${ctx.path}.kind`, { structure: true });
    } },
    [["match", "an event or profile"], ["all", "all of"], ["any", "any of"], ["not", "not"]].map(([v, t]) =>
      h("option", { value: v, selected: v === shape }, t)))));
  if (shape === "not") {
    box.append(criteriaEditor(criteria.not, { ...ctx, path: `${ctx.path}.not` }, "Not"));
    return box;
  }
  if (shape === "all" || shape === "any") {
    const list = criteria[shape];
    list.forEach((child, i) => {
      const item = criteriaEditor(child, { ...ctx, path: `${ctx.path}.${shape}[${i}]` }, `${shape === "all" ? "And" : "Or"} ${i + 1}`);
      item.append(h("button", { type: "button", class: "small ghost", onclick: () => {
        list.splice(i, 1);
        ctx.changed(`${ctx.path}.${shape}`, { structure: true });
      } }, "Remove"));
      box.append(item);
    });
    box.append(h("button", { type: "button", class: "small", onclick: () => {
      list.push({ event: "" });
      ctx.changed(`${ctx.path}.${shape}`, { structure: true });
    } }, "Add condition"));
    return box;
  }
  box.append(matchEditor(criteria, ctx, label));
  return box;
}

function eventSelect(criteria, ctx, label) {
  const names = [...ctx.triggers.keys()].sort();
  const current = criteria.event || "";
  const known = current === "" || names.includes(current) || BUILTIN_EVENTS.includes(current);
  return h("label", { class: "field" }, h("span", {}, "Event"),
    h("select", { "aria-label": `${label}: event`, "data-key": `${ctx.path}.event`, "data-path": `${ctx.path}.event`, onchange: (e) => {
      if (e.target.value === "") delete criteria.event;
      else criteria.event = e.target.value;
      ctx.changed(`${ctx.path}.event`, { structure: true });
    } },
    h("option", { value: "", selected: !current }, "(no event: profile only)"),
    names.length ? h("optgroup", { label: "Event triggers" }, names.map((n) => {
      const t = ctx.triggers.get(n);
      return h("option", { value: n, selected: n === current }, t.status === "published" ? n : `${n} (${t.status})`);
    })) : null,
    h("optgroup", { label: "Built-in events" }, BUILTIN_EVENTS.map((n) => h("option", { value: n, selected: n === current }, n))),
    known ? null : h("option", { value: current, selected: true }, `${current} (not declared)`)));
}

function matchEditor(criteria, ctx, label) {
  const box = h("div", { class: "match" });
  box.append(eventSelect(criteria, ctx, label));
  const trigger = ctx.triggers.get(criteria.event);
  const declared = trigger ? declaredProperties(trigger) : null;
  if (criteria.event) {
    const where = criteria.where || [];
    where.forEach((condition, k) => {
      box.append(conditionRow(criteria, "where", k, condition, declared, { ...ctx, path: `${ctx.path}.where[${k}]` }, label));
    });
    box.append(h("button", { type: "button", class: "small", "aria-label": `Add property condition to ${label}`, onclick: () => {
      const first = declared && [...declared.keys()][0];
      (criteria.where ||= []).push({ property: first || "", op: "eq", value: "" });
      ctx.changed(`${ctx.path}.where`, { structure: true });
    } }, "Add property condition"));
  }
  (criteria.profile || []).forEach((condition, k) => {
    box.append(conditionRow(criteria, "profile", k, condition, null, { ...ctx, path: `${ctx.path}.profile[${k}]` }, label));
  });
  box.append(h("button", { type: "button", class: "small", "aria-label": `Add profile condition to ${label}`, onclick: () => {
    (criteria.profile ||= []).push({ attribute: "", op: "eq", value: "" });
    ctx.changed(`${ctx.path}.profile`, { structure: true });
  } }, "Add profile condition"));
  return box;
}

function conditionRow(criteria, list, k, condition, declared, ctx, label) {
  const nameKey = list === "where" ? "property" : "attribute";
  const kind = (declared && declared.get(condition.property)) || { type: "any" };
  const ops = OPS_BY_TYPE[kind.type] || OPS_BY_TYPE.any;
  const row = h("div", { class: "condition", "data-path": ctx.path });
  const what = list === "where" ? "property" : "profile attribute";
  if (declared) {
    const names = [...declared.keys()];
    const has = names.includes(condition.property);
    row.append(h("select", { "aria-label": `${label}: ${what} ${k + 1}`, "data-key": `${ctx.path}.${nameKey}`, "data-path": `${ctx.path}.${nameKey}`, onchange: (e) => {
      condition.property = e.target.value;
      ctx.changed(`${ctx.path}.${nameKey}`, { structure: true });
    } },
    names.map((n) => h("option", { value: n, selected: n === condition.property }, `${n} · ${declared.get(n).type}`)),
    has ? null : h("option", { value: condition.property, selected: true }, `${condition.property || "(choose)"} · not declared`)));
  } else {
    const suggestions = list === "where" ? `${ctx.path}-props` : null;
    row.append(h("input", { type: "text", "aria-label": `${label}: ${what} ${k + 1}`, value: condition[nameKey] || "",
      "data-key": `${ctx.path}.${nameKey}`, "data-path": `${ctx.path}.${nameKey}`, list: suggestions, placeholder: list === "where" ? "property" : "attribute",
      oninput: (e) => { condition[nameKey] = e.target.value; ctx.changed(`${ctx.path}.${nameKey}`); } }));
    if (suggestions) row.append(h("datalist", { id: suggestions }, BUILTIN_PROPERTIES.map((p) => h("option", { value: p }))));
  }
  row.append(h("select", { "aria-label": `${label}: operator ${k + 1}`, "data-key": `${ctx.path}.op`, onchange: (e) => {
    condition.op = e.target.value;
    if (PRESENCE.has(condition.op)) delete condition.value;
    else if (LISTS.has(condition.op) && !Array.isArray(condition.value)) condition.value = condition.value === undefined || condition.value === "" ? [] : [condition.value];
    else if (!LISTS.has(condition.op) && Array.isArray(condition.value)) condition.value = condition.value[0] ?? "";
    else if (condition.value === undefined) condition.value = "";
    ctx.changed(`${ctx.path}.op`, { structure: true });
  } }, [...new Set([...ops, condition.op])].map((op) => h("option", { value: op, selected: op === condition.op }, OPS[op] || op))));
  if (!PRESENCE.has(condition.op)) row.append(valueInput(condition, kind, ctx, label, k));
  row.append(h("button", { type: "button", class: "small ghost", "aria-label": `Remove ${what} condition ${k + 1}`, onclick: () => {
    criteria[list].splice(k, 1);
    if (!criteria[list].length) delete criteria[list];
    ctx.changed(`${ctx.path}`, { structure: true });
  } }, "✕"));
  return row;
}

function valueInput(condition, kind, ctx, label, k) {
  const attrs = { "aria-label": `${label}: value ${k + 1}`, "data-key": `${ctx.path}.value`, "data-path": `${ctx.path}.value` };
  const set = (value) => { condition.value = value; ctx.changed(`${ctx.path}.value`); };
  if (LISTS.has(condition.op)) {
    const list = Array.isArray(condition.value) ? condition.value : [];
    return h("input", { ...attrs, type: "text", placeholder: "a, b, c", value: list.map(shown).join(", "),
      oninput: (e) => set(e.target.value.split(",").map((v) => v.trim()).filter(Boolean).map((v) => typedValue(kind.type === "enum" ? { type: kind.base || "string" } : kind, v))) });
  }
  if (kind.type === "enum") {
    return h("select", { ...attrs, onchange: (e) => set(typedValue(kind, e.target.value)) },
      kind.values.includes(condition.value) ? null : h("option", { value: "", selected: true }, "(choose)"),
      kind.values.map((v) => h("option", { value: v, selected: v === condition.value }, String(v))));
  }
  if (kind.type === "boolean") {
    return h("select", { ...attrs, onchange: (e) => set(e.target.value === "true") },
      h("option", { value: "true", selected: condition.value === true }, "true"),
      h("option", { value: "false", selected: condition.value === false }, "false"));
  }
  if (kind.type === "number" || kind.type === "integer") {
    return h("input", { ...attrs, type: "number", step: kind.type === "integer" ? "1" : "any", value: shown(condition.value),
      oninput: (e) => set(typedValue(kind, e.target.value)) });
  }
  if (kind.type === "date-time") {
    const v = typeof condition.value === "string" ? condition.value.slice(0, 16) : "";
    return h("input", { ...attrs, type: "datetime-local", value: v, oninput: (e) => set(typedValue(kind, e.target.value)) });
  }
  return h("input", { ...attrs, type: "text", value: shown(condition.value),
    oninput: (e) => set(kind.type === "string" ? e.target.value : parseLoose(e.target.value)) });
}
