// Profiles: look one up by id or find them by attribute (email=...); its attributes, consent,
// journeys, timeline (each message's outcome, times in the viewer's and the profile's zone)
// and explanations (the failing criterion first).
import { ApiError, all, get, may, paths } from "./api.js";
import { readerOnly } from "./journeys.js";
import { badge, card, clear, fmtTime, h, kv, problemBox, table, truncate } from "./ui.js";

export async function journeyNames(role) {
  if (!may.readJourneys(role)) return new Map();
  try {
    return new Map((await all(paths.journeys)).map((j) => [j.id, j.name]));
  } catch {
    return new Map();
  }
}

export function journeyLink(names, id) {
  return h("a", { href: `#/journeys/${encodeURIComponent(id)}`, title: id }, names.get(id) || id.slice(0, 8));
}

function searchForm(current) {
  const input = h("input", { type: "search", name: "profile_id", placeholder: "profile id, or attribute=value (email=ada@example.com)",
    value: current || "", "aria-label": "Profile id or attribute=value", spellcheck: "false", required: true });
  return h("form", { class: "search", role: "search", onsubmit: (event) => {
    event.preventDefault();
    const id = input.value.trim();
    if (id) location.hash = `#/profiles/${encodeURIComponent(id)}`;
  } }, input, h("button", { type: "submit", class: "primary" }, "Look up"));
}

// "attribute=value" in the search box: the profiles whose attribute has that value.
function attributeQuery(text) {
  const at = text.indexOf("=");
  if (at <= 0) return null;
  return [text.slice(0, at).trim(), text.slice(at + 1).trim()];
}

async function renderSearch(root, attribute, value) {
  const params = new URLSearchParams({ [attribute]: value, limit: "100" });
  let page;
  try {
    page = await get(`/v1/profiles?${params}`);
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    root.append(problemBox(error));
    return;
  }
  root.append(card(`Profiles with ${attribute} = ${value}`, table([
    { title: "Profile", cell: (p) => h("a", { href: `#/profiles/${encodeURIComponent(p.profile_id)}` }, p.profile_id) },
    { title: "Attributes", cell: (p) => truncate(JSON.stringify(p.attributes), 120) },
  ], page.items, "No profile has that value."), page.next_cursor ? h("p", { class: "muted" }, "Showing the first 100.") : null));
}

// The profile's own time zone, when its attributes name a valid one.
function profileZone(attributes) {
  const zone = attributes && attributes.timezone;
  if (typeof zone !== "string" || !zone) return null;
  try {
    new Intl.DateTimeFormat("en", { timeZone: zone });
    return zone;
  } catch {
    return null;
  }
}

function zoneTime(iso, zone) {
  const d = new Date(iso);
  if (!zone || Number.isNaN(d.getTime())) return "";
  const shown = new Intl.DateTimeFormat("sv-SE", { timeZone: zone, year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit" }).format(d);
  return `${shown} ${zone}`;
}

function deliveryBadge(delivery) {
  if (!delivery) return h("span", { class: "muted small" }, "outcome not known yet");
  const text = delivery.status === "skipped" && delivery.reason ? `skipped: ${delivery.reason.replace(/_/g, " ")}` : delivery.status;
  return h("span", { "data-testid": "delivery-outcome" }, badge(text, delivery.status));
}

function detailText(detail) {
  if (!detail || typeof detail !== "object") return detail == null ? "" : String(detail);
  return Object.entries(detail).map(([k, v]) => {
    const value = typeof v === "string" && /^\d{4}-\d\d-\d\dT/.test(v) ? fmtTime(v) : typeof v === "object" ? JSON.stringify(v) : v;
    return `${k.replace(/_/g, " ")}: ${value}`;
  }).join(" · ");
}

export function causeText(cause) {
  if (!cause || typeof cause !== "object") return "";
  const parts = [];
  if (cause.event_id) parts.push(`event ${cause.event_id}`);
  if (cause.timer) parts.push(`timer ${typeof cause.timer === "object" ? JSON.stringify(cause.timer) : cause.timer}`);
  for (const [k, v] of Object.entries(cause)) if (k !== "event_id" && k !== "timer") parts.push(`${k} ${v}`);
  return parts.join(", ");
}

export function timelineList(items, names, zone) {
  if (!items.length) return h("p", { class: "empty" }, "Nothing has happened to this profile in a journey yet.");
  return h("ol", { class: "timeline", "data-testid": "timeline" }, items.map((e) => h("li", { class: `tl tl-${e.kind}` },
    h("div", { class: "tl-when", title: "your time" }, fmtTime(e.at),
      zone ? h("div", { class: "muted small", title: "the profile's time" }, zoneTime(e.at, zone)) : null),
    h("div", { class: "tl-what" },
      h("div", {}, badge(e.kind.replace(/_/g, " "), e.kind), " ",
        e.journey_id && names ? journeyLink(names, e.journey_id) : null,
        e.version ? h("span", { class: "muted" }, ` v${e.version}`) : null,
        e.stage ? h("span", { class: "muted" }, ` · ${e.stage}`) : null,
        e.step_id ? [" · ", h("code", {}, e.step_id)] : null,
        e.kind === "activation" && "delivery" in e ? [" ", deliveryBadge(e.delivery)] : null),
      detailText(e.detail) ? h("div", { class: "tl-detail" }, detailText(e.detail)) : null,
      causeText(e.cause) ? h("div", { class: "tl-cause" }, "cause: ", causeText(e.cause)) : null))));
}

function consentChips(consent) {
  const entries = Object.entries(consent || {});
  if (!entries.length) return h("p", { class: "empty" }, "No consent recorded: the workspace's consent mode decides.");
  return h("div", { class: "chips" }, entries.map(([channel, allowed]) =>
    h("span", { class: `chip ${allowed ? "chip-yes" : "chip-no"}` }, `${channel}: ${allowed ? "allowed" : "refused"}`)));
}

export async function renderProfile(root, ctx, id) {
  root.append(h("div", { class: "page-head" }, h("div", {}, h("h1", {}, "Profiles"),
    h("p", { class: "muted" }, "Look up a profile to see where it is and why.")), searchForm(id)));
  if (readerOnly(root, ctx, "look up profiles")) return;
  if (!id) return;
  const search = attributeQuery(id);
  if (search) {
    await renderSearch(root, ...search);
    return;
  }
  let profile;
  try {
    profile = await get(paths.profile(id));
  } catch (error) {
    if (error.status === 404) {
      root.append(card(null, h("p", { class: "empty" }, `No profile "${id}" in this workspace (it is created by the first event or upsert that names it).`)));
      return;
    }
    throw error;
  }
  const names = await journeyNames(ctx.role);
  const timeline = h("div", {});
  const explain = h("div", {});
  root.append(h("div", { class: "columns" },
    h("div", { class: "col" },
      card("Profile", h("p", { class: "profile-id" }, h("code", { "data-testid": "profile-id" }, profile.profile_id)), kv(profile.attributes)),
      card("Consent", consentChips(profile.consent)),
      card("Journeys", table([
        { title: "Journey", cell: (m) => journeyLink(names, m.journey_id) },
        { title: "State", cell: (m) => badge(m.state === "left" ? m.outcome || "left" : "active", m.state === "left" ? m.outcome || "left" : "active") },
        { title: "Where", cell: (m) => [`v${m.version} · ${m.stage || "–"} · `, h("code", {}, m.step || "–")] },
        { title: "Entered", cell: (m) => fmtTime(m.entered_at) },
      ], profile.journeys, "Not in any journey."))),
    h("div", { class: "col wide" }, card("Timeline", timeline))), card("Explain", explain));
  await loadTimeline(timeline, id, names, profileZone(profile.attributes));
  explainPanel(explain, ctx, id, profile.journeys, names);
}

async function loadTimeline(box, id, names, zone) {
  const items = [];
  let cursor = null;
  try {
    for (let i = 0; i < 10; i += 1) {
      const page = await get(paths.timeline(id, cursor));
      items.push(...page.items);
      cursor = page.next_cursor;
      if (!cursor) break;
    }
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    clear(box).append(problemBox(error));
    return;
  }
  clear(box).append(timelineList(items, names, zone));
}

function explainPanel(box, ctx, id, memberships, names) {
  const ids = [...new Set([...memberships.map((m) => m.journey_id), ...names.keys()])];
  const output = h("div", {});
  const select = h("select", { "aria-label": "Journey to explain", onchange: () => load() },
    h("option", { value: "" }, "all journeys"),
    ids.map((j) => h("option", { value: j, selected: memberships[0]?.journey_id === j }, names.get(j) || j)));
  const everything = h("input", { type: "checkbox", onchange: () => load() });
  const load = async () => {
    try {
      const url = paths.explain(id, select.value || undefined);
      const answer = await get(everything.checked ? `${url}${url.includes("?") ? "&" : "?"}all=true` : url);
      const hidden = answer.hidden ? h("p", { class: "muted small" }, `${answer.hidden} journey(s) waiting for other events are not shown.`) : null;
      clear(output).append(hidden, table([
        { title: "Failed criterion", cell: (e) => (e.failed ? h("strong", { "data-testid": "failed-criterion" }, e.failed) : h("span", { class: "muted" }, "–")) },
        { title: "Event", cell: (e) => [h("strong", {}, e.name), h("div", { class: "muted small", title: e.event_id }, truncate(e.event_id, 28))] },
        { title: "At", cell: (e) => fmtTime(e.at) },
        { title: "Journey", cell: (e) => (e.journey_id ? journeyLink(names, e.journey_id) : "") },
        { title: "Outcome", cell: (e) => badge(e.outcome.replace(/_/g, " "), e.outcome) },
        { title: "Why", cell: (e) => h("ul", { class: "reasons" }, (e.reasons || []).map((r) => h("li", {}, r))) },
      ], answer.items, "No recent event concerns this journey."));
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      clear(output).append(problemBox(error, ctx.role, "explain this profile"));
    }
  };
  box.append(h("div", { class: "toolbar" }, h("label", {}, "Why each recent event did or did not move the profile in ", select),
    h("label", {}, everything, " also journeys waiting for other events")), output);
  load();
}
