// Experiment splits on a journey's page: each one's state written above its node of the map,
// and a results panel with every path's counts, rate, interval, lift and p-value.
import { ApiError, get } from "./api.js";
import { card, clear, fmtNumber, fmtTime, h, problemBox, s, table } from "./ui.js";

const REFRESH_MS = 5000;
const enc = encodeURIComponent;

function experimentSteps(steps, out = []) {
  for (const step of steps || []) {
    if (step.type === "split" && step.mode === "experiment") out.push(step);
    for (const list of [step.yes, step.no, step.default, ...(step.cases || []).map((c) => c.steps),
      ...(step.paths || []).map((p) => p.steps)]) experimentSteps(list, out);
  }
  return out;
}

const pct = (v) => (v == null ? "–" : `${(100 * v).toFixed(1)}%`);
const lift = (v) => (v == null ? "–" : `${v >= 0 ? "+" : ""}${(100 * v).toFixed(1)}%`);
const pval = (v) => (v == null ? "–" : v < 0.0001 ? "<0.0001" : v.toFixed(4));

function headline(result) {
  if (result.status === "decided") return `decided: ${result.winner}`;
  if (result.status === "inconclusive") return "inconclusive";
  const assigned = result.paths.reduce((n, p) => n + p.assigned, 0);
  return `collecting · ${fmtNumber(assigned)} assigned`;
}

function mark(svg, stepId, text, status) {
  const node = svg.querySelector(`[data-step="${CSS.escape(stepId)}"]`);
  if (!node) return;
  let label = node.querySelector(".node-experiment");
  if (!label) {
    label = s("text", { class: "node-experiment", x: 0, y: -8, "data-testid": `experiment-${stepId}` });
    node.append(label);
  }
  label.textContent = text;
  label.setAttribute("data-status", status);
}

function results(step, result) {
  const winner = result.winner;
  const about = result.status === "collecting"
    ? `Collecting: a winner needs ${fmtNumber(result.min_per_path)} finished profiles per path and confidence ${result.confidence}.`
    : result.status === "decided"
      ? `Decided ${fmtTime(result.decided_at)}: ${winner} wins${result.on_winner === "send_all" ? "; everyone who reaches the split now takes it" : "; the split goes on (report)"}.`
      : `Inconclusive (${result.reason || "no decision"}), ${fmtTime(result.decided_at)}.`;
  return h("div", { class: "experiment", "data-testid": `experiment-panel-${step.id}` },
    h("h3", {}, h("code", {}, step.id), ` · ${headline(result)}`),
    h("p", { class: "muted small" }, about, ` Method: ${result.method}.`),
    table([
      { title: "Path", cell: (p) => h("span", { class: p.name === winner ? "winner" : "" }, p.name, p.control ? " (control)" : "") },
      { title: "Assigned", cell: (p) => fmtNumber(p.assigned) },
      { title: "Converted", cell: (p) => fmtNumber(p.converted) },
      { title: "Rate", cell: (p) => pct(p.rate) },
      { title: "Interval", cell: (p) => (p.ci_low == null ? "–" : `${pct(p.ci_low)} – ${pct(p.ci_high)}`) },
      { title: "Lift vs control", cell: (p) => lift(p.lift_vs_control) },
      { title: "p-value", cell: (p) => pval(p.p_value) },
    ], result.paths));
}

// Appends the panel to `root` and keeps it and the map's nodes current; nothing for a
// journey without experiments.
export function watchExperiments(root, ctx, journeyId, journey, svg) {
  const steps = (journey.stages || []).flatMap((stage) => experimentSteps(stage.steps));
  if (!steps.length) return;
  const box = h("div", {});
  root.append(card("Experiments", box));
  const refresh = async () => {
    const parts = [];
    for (const step of steps) {
      try {
        const result = await get(`/v1/journeys/${enc(journeyId)}/experiments/${enc(step.id)}`);
        mark(svg, step.id, headline(result), result.status);
        parts.push(results(step, result));
      } catch (error) {
        if (!(error instanceof ApiError)) throw error;
        parts.push(error.status === 404
          ? h("p", { class: "muted" }, h("code", {}, step.id), ": no results until this version is live.")
          : problemBox(error, ctx.role, "read this journey's experiments"));
      }
    }
    clear(box).append(...parts);
  };
  refresh().catch(() => {});
  ctx.every(REFRESH_MS, refresh);
}
