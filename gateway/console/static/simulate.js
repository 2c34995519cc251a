// Simulate: run a journey definition on a few events in simulated time and show each path.
import { ApiError, all, may, paths, post } from "./api.js";
import { effective, readerOnly, templateNames } from "./journeys.js";
import { drawJourney } from "./map.js";
import { timelineList } from "./profiles.js";
import { badge, card, clear, fmtTime, h, problemBox, table } from "./ui.js";

const BODY_FIELDS = ["name", "description", "purpose", "folder_id", "reentry", "schedule", "goal",
  "exit_criteria", "max_time_in_journey", "stages"];

function bodyOf(journey) {
  return Object.fromEntries(BODY_FIELDS.filter((k) => journey[k] !== undefined).map((k) => [k, journey[k]]));
}

export function sampleEvents(body) {
  const entry = body.stages?.[0]?.entry?.event || body.stages?.[0]?.entry?.all?.[0]?.event || "signed_up";
  const now = new Date();
  return [
    { profile_id: "sim-1", name: entry, timestamp: now.toISOString() },
    { profile_id: "sim-2", name: entry, timestamp: new Date(now.getTime() + 60_000).toISOString() },
  ];
}

export const SAMPLE_PROFILES = [
  { profile_id: "sim-1", attributes: { email: "sim-1@example.com", phone: "+15550001", push_token: "t-1" } },
  { profile_id: "sim-2", attributes: { email: "sim-2@example.com" }, consent: { email: false } },
];

const pretty = (value) => JSON.stringify(value, null, 2);

function parse(label, text) {
  try {
    return { value: JSON.parse(text) };
  } catch (error) {
    return { error: `${label}: not valid JSON (${error.message})` };
  }
}

export async function renderSimulate(root, ctx, journeyId) {
  root.append(h("div", { class: "page-head" }, h("div", {}, h("h1", {}, "Simulate"),
    h("p", { class: "muted" }, "Run a journey on a few events in simulated time: waits pass at once, nothing is stored or sent."))));
  if (readerOnly(root, ctx, "simulate journeys")) return;
  const allowed = may.simulate(ctx.role);
  if (!allowed) {
    root.append(h("p", { class: "note", "data-testid": "simulate-note" },
      `A ${ctx.role} key may not run simulations (POST /v1/journeys/simulate needs an editor or admin key); you can still prepare one here.`));
  }
  const journeys = await all(paths.journeys);
  const pick = h("select", { "aria-label": "Journey", id: "sim-journey" }, h("option", { value: "" }, "choose a journey…"),
    journeys.map((j) => h("option", { value: j.id, selected: j.id === journeyId }, `${j.name} (v${j.version} ${j.status})`)));
  const journeyText = h("textarea", { id: "sim-body", rows: 13, spellcheck: "false", "aria-label": "Journey definition" }, "");
  const eventsText = h("textarea", { id: "sim-events", rows: 7, spellcheck: "false", "aria-label": "Events" }, "");
  const profilesText = h("textarea", { id: "sim-profiles", rows: 5, spellcheck: "false", "aria-label": "Profiles" }, pretty(SAMPLE_PROFILES));
  const output = h("div", { class: "sim-output" });
  const fill = async () => {
    if (!pick.value) return;
    const newest = journeys.find((j) => j.id === pick.value);
    const { live } = await effective(newest);
    const body = bodyOf(live || newest);
    journeyText.value = pretty(body);
    eventsText.value = pretty(sampleEvents(body));
  };
  pick.addEventListener("change", () => fill().catch((e) => clear(output).append(problemBox(e, ctx.role))));
  const run = h("button", { type: "button", class: "primary", id: "sim-run", disabled: !allowed }, "Run simulation");
  run.addEventListener("click", () => simulate(ctx, { journeyText, eventsText, profilesText, pick }, output));
  root.append(h("div", { class: "columns" },
    h("div", { class: "col" }, card("Journey", h("div", { class: "toolbar" }, pick), journeyText)),
    h("div", { class: "col" }, card("Events", h("p", { class: "muted small" }, "profile_id, name, timestamp (RFC 3339 with offset), properties, traits"), eventsText),
      card("Profiles", h("p", { class: "muted small" }, "profile_id, attributes, consent"), profilesText),
      h("div", { class: "actions" }, run))));
  root.append(output);
  if (journeyId) await fill();
}

async function simulate(ctx, inputs, output) {
  clear(output);
  const parsed = [parse("Journey", inputs.journeyText.value), parse("Events", inputs.eventsText.value),
    parse("Profiles", inputs.profilesText.value || "[]")];
  const bad = parsed.find((p) => p.error);
  if (bad) {
    output.append(h("div", { class: "problem", role: "alert" }, h("strong", {}, "Cannot run"), h("p", {}, bad.error)));
    return;
  }
  const [journey, events, profiles] = parsed.map((p) => p.value);
  let report;
  try {
    // As the picked journey: its experiments assign the paths they would assign there.
    const as = inputs.pick.value ? { journey_id: inputs.pick.value } : {};
    report = await post(paths.simulate, { journey, events, profiles, ...as });
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    output.append(problemBox(error, ctx.role, "run simulations"));
    return;
  }
  const map = drawJourney(journey, { templates: await templateNames() });
  map.svg.classList.add("plain");
  const pathCards = h("div", { class: "sim-paths" });
  const show = (profile) => {
    map.highlight(new Set(profile.path.map((e) => e.step_id).filter(Boolean)));
    for (const el of pathCards.querySelectorAll(".sim-profile")) el.classList.toggle("selected", el.dataset.profile === profile.profile_id);
  };
  for (const profile of report.profiles) {
    pathCards.append(h("section", { class: "card sim-profile", "data-profile": profile.profile_id },
      h("div", { class: "card-head" }, h("h2", {}, profile.profile_id), badge(profile.outcome),
        h("button", { type: "button", class: "ghost small", onclick: () => show(profile) }, "Show on map")),
      timelineList(profile.path, null)));
  }
  output.append(
    card("Path on the map", h("p", { class: "muted small" }, "The steps the selected profile went through are outlined."), h("div", { class: "map-scroll" }, map.svg)),
    h("div", { class: "sim-grid" }, pathCards,
      card("Messages, as the live rules decide them", table([
        { title: "Profile", cell: (a) => a.profile_id },
        { title: "Step", cell: (a) => h("code", {}, a.step_id) },
        { title: "Channel", cell: (a) => a.channel },
        { title: "At", cell: (a) => fmtTime(a.at) },
        { title: "Outcome", cell: (a) => h("span", { "data-testid": "sim-outcome" }, outcome(a)) },
        { title: "Message", cell: (a) => rendered(a) },
      ], report.activations, "No message was requested."))));
  if (!report.profiles.length) pathCards.append(card(null, h("p", { class: "empty" }, "No profile entered the journey.")));
  else show(report.profiles[0]);
}

/** What the activator's live rules would do with a simulated message, in words. */
function outcome(a) {
  if (a.status === "skipped") return `skipped: ${a.reason}`;
  if (a.status === "held") return `held until ${fmtTime(a.held_until)}`;
  if (a.status === "failed") return `failed: ${a.error}`;
  return a.status || "requested";
}

/** The message as it would be rendered for the profile and event. */
function rendered(a) {
  if (!a.rendered) return "";
  const { subject, title, body } = a.rendered;
  const head = subject || title;
  return h("div", { class: "small" }, head ? h("strong", {}, head) : "", h("div", {}, body));
}
