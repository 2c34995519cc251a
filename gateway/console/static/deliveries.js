// Deliveries: every activation's outcome, filtered by journey, profile and status.
import { ApiError, get, paths } from "./api.js";
import { readerOnly } from "./journeys.js";
import { journeyLink, journeyNames } from "./profiles.js";
import { badge, clear, fmtTime, h, problemBox, table } from "./ui.js";

const STATUSES = ["pending", "held", "sent", "skipped", "failed"];
const REASONS = {
  no_consent: "the profile has not consented to this channel",
  no_recipient: "the profile has no address for this channel",
  frequency_cap: "a frequency cap of the workspace was reached",
  profile_erased: "the profile was erased before it went out",
  journey_stopped: "the journey was stopped before it went out",
};

function reasonCell(d) {
  if (d.status !== "skipped" && d.status !== "failed") {
    if (d.status === "held" || d.status === "pending") return d.next_attempt_at ? h("span", { class: "muted" }, `next try ${fmtTime(d.next_attempt_at)}`) : "";
    return "";
  }
  const reason = d.reason || d.last_error || "no reason recorded";
  return h("div", { class: "reason", "data-testid": "reason" }, h("code", {}, reason),
    REASONS[reason] ? h("div", { class: "muted small" }, REASONS[reason]) : null);
}

export async function renderDeliveries(root, ctx) {
  root.append(h("div", { class: "page-head" }, h("div", {}, h("h1", {}, "Deliveries"),
    h("p", { class: "muted" }, "Every message a journey asked for, with its outcome and why."))));
  if (readerOnly(root, ctx, "see deliveries")) return;
  const names = await journeyNames(ctx.role);
  const filters = {
    journey_id: ctx.params.get("journey_id") || "",
    profile_id: ctx.params.get("profile_id") || "",
    status: ctx.params.get("status") || "",
  };
  const journey = h("select", { name: "journey_id", "aria-label": "Journey" }, h("option", { value: "" }, "all journeys"),
    [...names].sort((a, b) => a[1].localeCompare(b[1])).map(([id, name]) => h("option", { value: id, selected: id === filters.journey_id }, name)));
  const profile = h("input", { name: "profile_id", type: "search", placeholder: "any profile", value: filters.profile_id, "aria-label": "Profile id" });
  const status = h("select", { name: "status", "aria-label": "Status" }, h("option", { value: "" }, "any status"),
    STATUSES.map((st) => h("option", { value: st, selected: st === filters.status }, st)));
  root.append(h("form", { class: "card filters", onsubmit: (event) => {
    event.preventDefault();
    const q = new URLSearchParams();
    if (journey.value) q.set("journey_id", journey.value);
    if (profile.value.trim()) q.set("profile_id", profile.value.trim());
    if (status.value) q.set("status", status.value);
    const next = `#/deliveries${q.toString() ? `?${q}` : ""}`;
    if (location.hash === next) ctx.reload();
    else location.hash = next;
  } }, h("label", {}, "Journey", journey), h("label", {}, "Profile", profile), h("label", {}, "Status", status),
  h("button", { type: "submit", class: "primary" }, "Show")));
  const list = h("div", { class: "card" });
  root.append(list);
  const rows = [];
  const more = h("button", { type: "button", class: "ghost", hidden: true }, "Load more");
  let cursor = null;
  const load = async () => {
    try {
      const page = await get(paths.deliveries({ ...filters, limit: 100, cursor }));
      rows.push(...page.items);
      cursor = page.next_cursor;
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      clear(list).append(problemBox(error, ctx.role, "read deliveries"));
      return;
    }
    clear(list).append(table([
      { title: "Requested", cell: (d) => fmtTime(d.created_at) },
      { title: "Journey", cell: (d) => [journeyLink(names, d.journey_id), h("span", { class: "muted" }, ` v${d.version}`)] },
      { title: "Step", cell: (d) => h("code", {}, d.step_id) },
      { title: "Profile", cell: (d) => h("a", { href: `#/profiles/${encodeURIComponent(d.profile_id)}` }, d.profile_id) },
      { title: "Channel", cell: (d) => d.channel },
      { title: "Status", cell: (d) => badge(d.status) },
      { title: "Tries", class: "num", cell: (d) => d.attempts },
      { title: "Sent", cell: (d) => fmtTime(d.sent_at) },
      { title: "Reason", cell: reasonCell },
    ], rows, "No delivery matches these filters."), more);
    more.hidden = !cursor;
  };
  more.addEventListener("click", load);
  await load();
}
