// Journeys: the list by folder with live counts, and one journey's map, counts and controls.
import { ApiError, all, get, may, paths, post } from "./api.js";
import { drawJourney } from "./map.js";
import { watchExperiments } from "./experiments.js";
import { badge, card, clear, describe, fmtDuration, fmtNumber, fmtTime, h, problemBox, table } from "./ui.js";

const LIST_REFRESH_MS = 5000;
const JOURNEY_REFRESH_MS = 3000;

export function readerOnly(root, ctx, what) {
  if (may.readJourneys(ctx.role)) return false;
  root.append(h("div", { class: "problem", role: "alert" },
    h("strong", {}, "Not available to an ingest key"),
    h("p", {}, `An ingest key sends events and profile updates only; to ${what} sign in with a viewer, editor or admin key.`)));
  return true;
}

// The status of the journey itself: a newer draft version hides it in the newest view.
export async function effective(journey) {
  if (journey.status !== "draft" || !journey.live_version) {
    return { status: journey.status, live: journey.status === "draft" ? null : journey };
  }
  const live = await get(paths.version(journey.id, journey.live_version));
  return { status: live.status, live };
}

function folderPaths(folders) {
  const byId = new Map(folders.map((f) => [f.id, f]));
  const name = (f, seen = new Set()) => {
    if (!f.parent_id || !byId.has(f.parent_id) || seen.has(f.id)) return f.name;
    seen.add(f.id);
    return `${name(byId.get(f.parent_id), seen)} / ${f.name}`;
  };
  return new Map(folders.map((f) => [f.id, name(f)]));
}

function versionText(journey, live) {
  if (!live) return `v${journey.version} draft`;
  if (live.version !== journey.version) return `v${live.version} · draft v${journey.version}`;
  return `v${live.version}`;
}

export async function renderJourneys(root, ctx) {
  root.append(h("div", { class: "page-head" },
    h("div", {}, h("h1", {}, "Journeys"), h("p", { class: "muted" }, "Every journey by folder; profile counts refresh every few seconds.")),
    may.changeJourneys(ctx.role) ? h("a", { href: "#/edit", class: "button-link primary", "data-testid": "new-journey" }, "New journey") : null));
  if (readerOnly(root, ctx, "see journeys")) return;
  const [folders, journeys] = await Promise.all([
    all(paths.folders).catch((error) => (error.status === 403 ? [] : Promise.reject(error))),
    all(paths.journeys),
  ]);
  const names = folderPaths(folders);
  const states = await Promise.all(journeys.map(effective));
  const rows = journeys.map((j, i) => ({ journey: j, ...states[i], cells: {} }));
  const groups = new Map();
  for (const row of rows) {
    const folder = row.journey.folder_id ? names.get(row.journey.folder_id) || "Other folders" : "No folder";
    if (!groups.has(folder)) groups.set(folder, []);
    groups.get(folder).push(row);
  }
  for (const f of folders) if (!groups.has(names.get(f.id))) groups.set(names.get(f.id), []);
  if (!journeys.length && !folders.length) {
    root.append(card(null, h("p", { class: "empty" }, "No journeys yet. Start one with New journey (or POST /v1/journeys); it shows here as a draft.")));
    return;
  }
  const columns = [
    { title: "Journey", class: "col-name", cell: (r) => h("a", { href: `#/journeys/${encodeURIComponent(r.journey.id)}`, class: "strong" }, r.journey.name) },
    { title: "Status", class: "col-status", cell: (r) => badge(r.status) },
    { title: "Version", class: "col-version", cell: (r) => versionText(r.journey, r.live) },
    { title: "In journey", class: "num", cell: (r) => (r.cells.active = h("span", { "data-testid": "active-count" }, r.live ? "…" : "–")) },
    { title: "Entered", class: "num", cell: (r) => (r.cells.entered = h("span", {}, r.live ? "…" : "–")) },
    { title: "Goal", class: "num", cell: (r) => (r.cells.goal = h("span", {}, "–")) },
    { title: "Updated", class: "col-time", cell: (r) => fmtTime(r.journey.updated_at) },
  ];
  const sorted = [...groups.entries()].sort(([a], [b]) => (a === "No folder" ? -1 : b === "No folder" ? 1 : a.localeCompare(b)));
  for (const [folder, list] of sorted) {
    list.sort((a, b) => a.journey.name.localeCompare(b.journey.name));
    root.append(h("section", { class: "card folder", "data-folder": folder },
      h("h2", {}, h("span", { class: "folder-icon", "aria-hidden": "true" }), folder, h("span", { class: "count" }, `${list.length}`)),
      table(columns, list, "No journeys in this folder.")));
  }
  const status = h("p", { class: "refresh muted" });
  root.append(status);
  const refresh = async () => {
    await Promise.all(rows.filter((r) => r.live).map(async (r) => {
      try {
        // The journey's totals: a migrate publish moves profiles to the new version, but
        // those who entered before it still count.
        const a = await get(paths.analytics(r.journey.id));
        r.cells.active.textContent = fmtNumber(a.active);
        r.cells.entered.textContent = fmtNumber(a.entered);
        r.cells.goal.textContent = a.goal.target_percent == null ? "–" : `${a.goal.percent}% / ${a.goal.target_percent}%`;
      } catch (error) {
        r.cells.active.textContent = error.status === 403 ? "no access" : "?";
      }
    }));
    status.textContent = `Counts as of ${fmtTime(new Date().toISOString())}`;
  };
  await refresh();
  ctx.every(LIST_REFRESH_MS, refresh);
}

export async function templateNames() {
  try {
    return new Map((await all(paths.templates)).map((t) => [t.id, t.name]));
  } catch {
    return new Map();  // the cards then say "template"
  }
}

function actionsFor(journey, status, live) {
  const draftPending = journey.status === "draft";
  const out = [];
  if (draftPending) out.push(["edit", `Edit draft v${journey.version}`]);
  if (draftPending) out.push(["publish", live ? `Publish v${journey.version}` : "Publish"]);
  if (status === "live") out.push(["pause", "Pause"]);
  if (status === "paused") out.push(["resume", "Resume"]);
  if (status === "live" || status === "paused") out.push(["stop", "Stop"]);
  if ((status === "live" || status === "paused") && !draftPending) out.push(["versions", "New version"]);
  return out;
}

function controls(ctx, journey, status, live, reload) {
  const box = h("div", { class: "actions" });
  if (!may.changeJourneys(ctx.role)) {
    box.append(h("p", { class: "note", "data-testid": "read-only-note" },
      `Read only: a ${ctx.role} key may watch this journey; publishing, pausing, resuming, stopping and new versions need an editor or admin key.`));
    return box;
  }
  const message = h("div", { class: "action-result" });
  const run = async (action, body) => {
    clear(message);
    try {
      const result = await post(paths.action(journey.id, action), body);
      if (action === "versions") {
        message.append(h("p", { class: "ok" }, `Draft v${result.version} created from the live version. `,
          h("a", { href: `#/edit/${encodeURIComponent(journey.id)}` }, "Edit it")));
      }
      await reload();
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      message.append(problemBox(error, ctx.role, `${action === "versions" ? "create a version of" : action} this journey`));
    }
  };
  let inFlight = null;
  for (const [action, label] of actionsFor(journey, status, live)) {
    if (action === "publish" && live) {
      inFlight = h("select", { "aria-label": "Profiles already inside", id: "in-flight" },
        h("option", { value: "stay" }, "profiles inside stay on their version"),
        h("option", { value: "migrate" }, "migrate profiles inside"));
      box.append(inFlight);
    }
    if (action === "edit") {
      box.append(h("a", { href: `#/edit/${encodeURIComponent(journey.id)}`, class: "button-link", "data-action": "edit" }, label));
      continue;
    }
    const kind = action === "stop" ? "danger" : action === "publish" ? "primary" : "";
    box.append(h("button", { type: "button", class: kind, "data-action": action, onclick: () => {
      if (action === "stop") return confirmStop(box, () => run("stop"));
      return run(action, action === "publish" && inFlight ? { in_flight: inFlight.value } : undefined);
    } }, label));
  }
  box.append(message);
  return box;
}

function confirmStop(box, go) {
  if (box.querySelector(".confirm")) return;
  const confirm = h("div", { class: "confirm" },
    h("span", {}, "Stop this journey? Every profile inside leaves with outcome stopped; it cannot be resumed."));
  confirm.append(
    h("button", { type: "button", class: "danger", "data-action": "confirm-stop", onclick: () => { confirm.remove(); go(); } }, "Stop journey"),
    h("button", { type: "button", class: "ghost", onclick: () => confirm.remove() }, "Cancel"));
  box.append(confirm);
}

function facts(body) {
  const items = [];
  if (body.goal) items.push(["Goal", `${describe(body.goal.criteria)}${body.goal.target_percent != null ? ` · target ${body.goal.target_percent}%` : ""}`]);
  for (const rule of body.exit_criteria || []) items.push(["Exit", describe(rule.criteria)]);
  items.push(["Re-entry", `${body.reentry?.mode || "never"}${body.reentry?.cooldown && body.reentry.cooldown !== "PT0S" ? ` · cooldown ${fmtDuration(body.reentry.cooldown)}` : ""}`]);
  if (body.max_time_in_journey) items.push(["Max time", fmtDuration(body.max_time_in_journey)]);
  if (body.schedule?.start_at || body.schedule?.end_at) items.push(["Schedule", `${fmtTime(body.schedule.start_at) || "now"} → ${fmtTime(body.schedule.end_at) || "open"}`]);
  if (body.purpose) items.push(["Purpose", body.purpose]);
  return h("dl", { class: "facts" }, items.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function goalStat() {
  const value = h("span", { "data-testid": "goal-reached" }, "–");
  const bar = h("div", { class: "bar-fill" });
  const target = h("div", { class: "bar-target" });
  const note = h("div", { class: "stat-note" }, "");
  const el = h("div", { class: "stat stat-goal" },
    h("div", { class: "stat-label" }, "Goal reached"),
    h("div", { class: "stat-value" }, value),
    h("div", { class: "bar" }, bar, target), note);
  return {
    el,
    update(goal) {
      value.textContent = `${fmtNumber(goal.reached)} · ${goal.percent}%`;
      bar.style.width = `${Math.min(100, goal.percent)}%`;
      if (goal.target_percent == null) {
        note.textContent = "no target set";
        target.hidden = true;
      } else {
        target.hidden = false;
        target.style.left = `${Math.min(100, goal.target_percent)}%`;
        note.textContent = `target ${goal.target_percent}% · ${goal.target_met ? "met" : "not met yet"}`;
        el.classList.toggle("met", Boolean(goal.target_met));
      }
    },
  };
}

export async function renderJourney(root, ctx, id) {
  if (readerOnly(root, ctx, "see journeys")) return;
  const newest = await get(paths.journey(id));
  const { status, live } = await effective(newest);
  const wanted = Number(ctx.params.get("version")) || null;
  let shown = live || newest;
  if (wanted && wanted !== shown.version) shown = await get(paths.version(id, wanted));
  const reload = async () => ctx.reload();
  const versions = h("select", { "aria-label": "Version", onchange: (e) => { location.hash = `#/journeys/${encodeURIComponent(id)}?version=${e.target.value}`; } },
    Array.from({ length: newest.latest_version }, (_, i) => i + 1).reverse().map((n) =>
      h("option", { value: n, selected: n === shown.version }, `version ${n}${n === newest.live_version ? " (live)" : ""}${n === newest.version && newest.status === "draft" ? " (draft)" : ""}`)));
  root.append(h("div", { class: "page-head" },
    h("div", {},
      h("a", { href: "#/journeys", class: "back" }, "← Journeys"),
      h("h1", {}, newest.name, " ", badge(status, status, { "data-testid": "status" }),
        live && newest.status === "draft" ? badge(`draft v${newest.version} pending`, "draft") : null),
      h("p", { class: "muted" }, newest.description || "No description.")),
    h("div", { class: "head-side" }, versions,
      h("a", { href: `#/simulate/${encodeURIComponent(id)}`, class: "button-link" }, "Simulate"))));
  root.append(controls(ctx, newest, status, live, reload));
  const stats = {
    entered: h("span", { "data-testid": "entered" }, "–"),
    byVersion: h("div", { class: "stat-note", "data-testid": "entered-by-version" }, `all versions`),
    active: h("span", { "data-testid": "in-journey" }, "–"),
    exits: h("div", { class: "stat-note" }, ""),
    messages: h("span", {}, "–"),
    messagesNote: h("div", { class: "stat-note" }, ""),
  };
  const goal = goalStat();
  root.append(h("div", { class: "stats" },
    h("div", { class: "stat" }, h("div", { class: "stat-label" }, "Entered"), h("div", { class: "stat-value" }, stats.entered), stats.byVersion),
    h("div", { class: "stat" }, h("div", { class: "stat-label" }, "In journey"), h("div", { class: "stat-value" }, stats.active), stats.exits),
    goal.el,
    h("div", { class: "stat" }, h("div", { class: "stat-label" }, "Messages sent"), h("div", { class: "stat-value" }, stats.messages), stats.messagesNote)));
  const map = drawJourney(shown, { templates: await templateNames() });
  const updated = h("span", { class: "muted refresh" }, "");
  const countsNote = h("p", { class: "muted small", hidden: true, "data-testid": "no-step-counts" },
    shown.status === "draft"
      ? "This version is a draft: no one is in it until it is published."
      : status === "stopped" ? "This journey is stopped: the map shows each step's last counts; no one is inside."
        : "Per-step counts are reported while a version is live or paused; the totals above stay.");
  const trouble = h("div", {});
  root.append(h("section", { class: "card" },
    h("div", { class: "card-head" }, h("h2", {}, "Journey map"), updated),
    facts(shown),
    countsNote,
    h("div", { class: "map-scroll" }, map.svg),
    h("div", { class: "legend" }, ["wait", "activation", "branch", "split", "jump", "end"].map((t) =>
      h("span", { class: `legend-item legend-${t}` }, t)), h("span", { class: "legend-item legend-here" }, "profiles here now")),
    trouble));
  const engagement = h("div", { "data-testid": "engagement" });
  root.append(card("Engagement (all versions)", engagement));
  watchExperiments(root, ctx, id, shown, map.svg);
  const members = h("div", {});
  root.append(card("Profiles in this journey", members));
  const refresh = async () => {
    try {
      // The headline is the journey's, across versions; the map is the shown version's.
      const [totals, a] = await Promise.all([get(paths.analytics(id)), get(paths.analytics(id, shown.version))]);
      clear(trouble);
      stats.entered.textContent = fmtNumber(totals.entered);
      stats.byVersion.textContent = versionsText(totals.versions || []);
      stats.active.textContent = fmtNumber(totals.active);
      const exits = Object.entries(totals.exits).filter(([, n]) => n > 0).map(([k, n]) => `${k} ${n}`);
      stats.exits.textContent = `waiting ${fmtNumber(totals.waiting ?? totals.active)} · finished ${fmtNumber(totals.finished ?? 0)} · ${exits.length ? `left: ${exits.join(", ")}` : "no one has left"}`;
      stats.messages.textContent = fmtNumber(totals.activations.sent);
      stats.messagesNote.textContent = `skipped ${totals.activations.skipped} · failed ${totals.activations.failed} · pending ${totals.activations.pending}`;
      // A draft or stopped version is not compiled by the runtime: its target is the body's.
      const target = totals.goal.target_percent ?? shown.goal?.target_percent ?? null;
      goal.update({ ...totals.goal, target_percent: target, target_met: target == null ? null : totals.goal.percent >= target });
      map.update({ ...a, engagement: totals.engagement });
      showEngagement(engagement, totals.engagement);
      countsNote.hidden = a.stages.length > 0 || (status !== "stopped" && Object.keys(a.steps || {}).length > 0);
      updated.textContent = `updated ${fmtTime(new Date().toISOString())}`;
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      clear(trouble).append(problemBox(error, ctx.role, "read this journey's analytics"));
    }
    if (!membersForbidden) membersForbidden = await loadMembers(ctx, id, members);
  };
  let membersForbidden = false;
  await refresh();
  ctx.every(JOURNEY_REFRESH_MS, refresh);
}

// sent -> opened -> clicked -> goal for each message step, then each channel.
function showEngagement(box, engagement) {
  const rate = (n, r) => `${fmtNumber(n)}${r == null ? "" : ` (${r}%)`}`;
  const rows = [
    ...(engagement?.steps || []).map((f) => ({ ...f, what: h("code", {}, f.step_id) })),
    ...Object.entries(engagement?.channels || {}).map(([channel, f]) => ({ ...f, channel, what: `all ${channel}` })),
  ];
  clear(box).append(table([
    { title: "Step", cell: (f) => f.what },
    { title: "Channel", cell: (f) => f.channel || "" },
    { title: "Sent", class: "num", cell: (f) => fmtNumber(f.sent) },
    { title: "Opened", class: "num", cell: (f) => rate(f.opened, f.open_rate) },
    { title: "Clicked", class: "num", cell: (f) => rate(f.clicked, f.click_rate) },
    { title: "Goal", class: "num", cell: (f) => rate(f.goal, f.goal_rate) },
  ], rows, "No message of this journey has been sent yet."));
}

// "v1 5 · v2 2 (3 moved in)": who entered each version, and who a migrate publish moved.
export function versionsText(versions) {
  if (versions.length <= 1) return "all versions";
  return versions.map((v) => `v${v.version} ${fmtNumber(v.entered)}${v.migrated_in ? ` (${fmtNumber(v.migrated_in)} moved in)` : ""}`).join(" · ");
}

async function loadMembers(ctx, id, box) {
  try {
    const page = await get(paths.journeyProfiles(id, "active"));
    clear(box).append(table([
      { title: "Profile", cell: (m) => h("a", { href: `#/profiles/${encodeURIComponent(m.profile_id)}` }, m.profile_id) },
      { title: "Version", cell: (m) => `v${m.version}` },
      { title: "Stage", cell: (m) => m.stage || "" },
      { title: "Step", cell: (m) => h("code", {}, m.step || "") },
      { title: "Entered", cell: (m) => fmtTime(m.entered_at) },
    ], page.items, "No profile is in this journey now."));
    if (page.next_cursor) box.append(h("p", { class: "muted" }, "Showing the first 50."));
    return false;
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    clear(box).append(problemBox(error, ctx.role, "list the profiles in a journey (it shows who they are)"));
    return error.status === 403;
  }
}
