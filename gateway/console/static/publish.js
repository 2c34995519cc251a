// The publish dialog: what the draft changes against the live version (steps added, removed,
// changed; stages and settings), and for a live journey what happens to the profiles inside.
import { ApiError, paths, post } from "./api.js";
import { clear, h } from "./ui.js";

const NESTED = ["yes", "no", "default", "cases", "paths"];

// Every step by id, without the steps nested under it (those are compared on their own).
function stepsById(body) {
  const out = new Map();
  const walk = (list) => (list || []).forEach((step) => {
    const own = { ...step };
    for (const key of NESTED) delete own[key];
    if (step.cases) own.cases = step.cases.map((c) => c.criteria);
    if (step.paths) own.paths = step.paths.map((p) => ({ ...p, steps: (p.steps || []).map((s) => s.id) }));
    out.set(step.id, JSON.stringify(own));
    walk(step.yes); walk(step.no); walk(step.default);
    for (const c of step.cases || []) walk(c.steps);
    for (const p of step.paths || []) walk(p.steps);
  });
  for (const stage of body.stages || []) walk(stage.steps);
  return out;
}

export function diff(draft, live) {
  const a = stepsById(live);
  const b = stepsById(draft);
  const added = [...b.keys()].filter((id) => !a.has(id));
  const removed = [...a.keys()].filter((id) => !b.has(id));
  const changed = [...b.keys()].filter((id) => a.has(id) && a.get(id) !== b.get(id));
  const stageText = (body) => new Map((body.stages || []).map((s) => [s.name, JSON.stringify({ ...s, steps: (s.steps || []).map((x) => x.id) })]));
  const sa = stageText(live);
  const sb = stageText(draft);
  const stages = [...new Set([...sa.keys(), ...sb.keys()])].filter((n) => sa.get(n) !== sb.get(n));
  const settings = Object.keys({ ...draft, ...live }).filter((k) => k !== "stages" && JSON.stringify(draft[k]) !== JSON.stringify(live[k]));
  return { added, removed, changed, stages, settings };
}

function list(title, items, kind) {
  if (!items.length) return null;
  return h("div", { class: `diff-${kind}`, "data-testid": `diff-${kind}` }, h("strong", {}, `${title} (${items.length})`), " ",
    items.map((id, i) => [i ? ", " : "", h("code", {}, id)]));
}

export function publishDialog(root, { ctx, journey, draft, live, liveStatus, done, refusal }) {
  root.querySelector(".publish-dialog")?.remove();
  const message = h("div", {});
  const preview = h("div", { class: "preview", "data-testid": "migrate-preview" });
  const dialog = h("div", { class: "publish-dialog", role: "dialog", "aria-modal": "true", "aria-labelledby": "publish-title" });
  const close = () => { dialog.remove(); };
  dialog.addEventListener("keydown", (e) => { if (e.key === "Escape") close(); });
  const box = h("div", { class: "dialog-box" }, h("h2", { id: "publish-title" }, `Publish ${journey.name} v${journey.version}`));
  let mode = "stay";
  if (live) {
    const d = diff(draft, live);
    const none = !d.added.length && !d.removed.length && !d.changed.length && !d.stages.length && !d.settings.length;
    box.append(h("p", {}, `Against the ${liveStatus || "live"} version v${journey.live_version}:`),
      h("div", { class: "diff" }, none ? h("p", { class: "muted" }, "No difference.") : null,
        list("Steps added", d.added, "added"), list("Steps removed", d.removed, "removed"), list("Steps changed", d.changed, "changed"),
        list("Stages changed", d.stages, "stages"), list("Settings changed", d.settings, "settings")));
    const choice = (value, label) => h("label", { class: "check" }, h("input", { type: "radio", name: "in-flight", value, checked: value === mode,
      onchange: () => { mode = value; showPreview(); } }), label);
    box.append(h("fieldset", {}, h("legend", {}, "Profiles already inside"),
      choice("stay", "stay on the version they are in"), choice("migrate", "move to this version (migrate)")), preview);
  } else {
    box.append(h("p", {}, "The first version: once published, the journey admits profiles that match its entry criteria."));
  }
  const showPreview = async () => {
    clear(preview);
    if (mode !== "migrate") return;
    preview.append(h("p", { class: "muted" }, "Asking what a migration would do…"));
    try {
      const plan = await post(paths.migratePreview(journey.id), {});
      clear(preview).append(previewTable(plan));
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      clear(preview).append(refusal(error, "preview a migration"));
    }
  };
  const go = h("button", { type: "button", class: "primary", "data-action": "confirm-publish", onclick: async () => {
    go.disabled = true;
    clear(message);
    try {
      const result = await post(paths.action(journey.id, "publish"), live ? { in_flight: mode } : undefined);
      close();
      done(result);
    } catch (error) {
      go.disabled = false;
      if (!(error instanceof ApiError)) throw error;
      message.append(refusal(error, "publish this journey"));
    }
  } }, "Publish");
  box.append(message, h("div", { class: "dialog-actions" }, go, h("button", { type: "button", class: "ghost", onclick: close }, "Cancel")));
  dialog.append(box);
  root.append(dialog);
  go.focus();
  void ctx;
}

function previewTable(plan) {
  const rows = plan.steps || [];
  return h("div", {},
    h("p", { "data-testid": "migrate-total" }, `${plan.would_move} of ${plan.active} profile(s) inside would move to this version; ${plan.would_stay} would stay.`),
    rows.length ? h("table", { class: "grid" }, h("thead", {}, h("tr", {}, h("th", {}, "At step"), h("th", { class: "num" }, "Move"), h("th", { class: "num" }, "Stay"), h("th", {}, "Why they stay"))),
      h("tbody", {}, rows.map((r) => h("tr", { "data-step": r.step || "" }, h("td", {}, h("code", {}, `${r.stage || ""} · ${r.step || "(stage)"}`)),
        h("td", { class: "num" }, String(r.move)), h("td", { class: "num" }, String(r.stay)), h("td", {}, r.reason || ""))))) : null);
}
