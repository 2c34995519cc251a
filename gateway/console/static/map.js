// The journey map: stages as lanes left to right, each stage's steps top to bottom, branches
// and splits forking into side-by-side paths that join again at the step after them.
import { describe, fmtDuration, fmtNumber, s, truncate } from "./ui.js";

const W = 200;          // step card
const H = 90;
const VGAP = 30;        // between steps
const HGAP = 22;        // between paths of a fork
const FORK = 40;        // from a fork to its paths (room for the path label)
const PAD = 18;         // inside a lane
const HEAD = 124;       // lane header
const LANE_GAP = 64;

function paths(step) {
  if (step.type === "branch") {
    return [{ key: "yes", label: "yes", steps: step.yes || [] },
      { key: "no", label: `no · ${fmtDuration(step.timeout)}`, steps: step.no || [] }];
  }
  if (step.type === "split" && step.mode === "experiment") {
    return (step.paths || []).map((p) => ({ key: p.name, label: `${p.name}${p.control ? " (control)" : ""} · ${p.percent}%`, steps: p.steps || [] }));
  }
  if (step.type === "split" && step.mode === "random") {
    return (step.paths || []).map((p, i) => ({ key: `path ${i}`, label: `${p.percent}%`, steps: p.steps || [] }));
  }
  if (step.type === "split") {
    const cases = (step.cases || []).map((c, i) => ({ key: `case ${i}`,
      label: truncate(describe(c.criteria) || `case ${i + 1}`, 26), steps: c.steps || [] }));
    return [...cases, { key: "default", label: "default", steps: step.default || [] }];
  }
  return [];
}

const terminal = (step) => step.type === "jump" || step.type === "end";
const seqWidth = (steps) => Math.max(W, ...steps.map(stepWidth));

function stepWidth(step) {
  const kids = paths(step);
  if (!kids.length) return W;
  return Math.max(W, kids.reduce((sum, k) => sum + seqWidth(k.steps), 0) + HGAP * (kids.length - 1));
}

function typeLabel(step) {
  if (step.type === "activation") return (step.channel || "message").toUpperCase();
  return step.type.toUpperCase();
}

export function summary(step, names = {}) {
  switch (step.type) {
    case "wait":
      if (step.duration) return `wait ${fmtDuration(step.duration)}`;
      if (step.until) return `until ${step.until.replace("T", " ").slice(0, 16)}`;
      return `next ${step.time_of_day}${step.days ? ` ${step.days.join(",")}` : ""} local`;
    case "activation":
      return `${names.templates?.get(step.template_id) || "template"} → ${step.to_attribute || "profile"}`;
    case "branch":
      return `${describe(step.criteria)} within ${fmtDuration(step.timeout)}`;
    case "split":
      if (step.mode === "experiment") return `experiment: ${(step.paths || []).map((p) => p.name).join(" / ")}`;
      return step.mode === "random" ? `random: ${(step.paths || []).map((p) => `${p.percent}%`).join(" / ")}`
        : `by attribute · ${(step.cases || []).length} case(s)`;
    case "jump":
      return step.journey_id ? `to journey ${truncate(step.journey_id, 8)} · ${step.stage}` : `to stage ${step.stage}`;
    case "end":
      return "stays in the stage";
    default:
      return "";
  }
}

function curve(a, b) {
  const mid = (a.y + b.y) / 2;
  return `M ${a.x} ${a.y} C ${a.x} ${mid}, ${b.x} ${mid}, ${b.x} ${b.y}`;
}

class Drawing {
  constructor(names) {
    this.names = names;
    this.edges = s("g", { class: "edges" });
    this.labels = s("g", { class: "labels" });
    this.nodes = s("g", { class: "nodes" });
    this.byStep = new Map();
    this.byPath = new Map();  // step id -> path key -> its label, for the counts
    this.jumps = [];  // [step, x, y] of every jump card, drawn once the lanes are known
  }

  edge(a, b) {
    this.edges.append(s("path", { class: "edge", d: curve(a, b), "marker-end": "url(#arrow)" }));
  }

  // A path's pill; `fork` ({ step, key }) names the path so its counts can be shown on it.
  label(x, y, text, fork) {
    const rect = s("rect", { height: 18, rx: 9 });
    const words = s("text", { y: 12.5, "text-anchor": "middle" }, text);
    const g = s("g", { class: "path-label" }, rect, words);
    const set = (shown) => {
      const width = Math.max(28, shown.length * 6.4 + 14);
      rect.setAttribute("width", width);
      words.setAttribute("x", width / 2);
      words.textContent = shown;
      g.setAttribute("transform", `translate(${x - width / 2},${y - 9})`);
    };
    set(text);
    if (fork) {
      g.setAttribute("data-testid", `path-${fork.step}-${fork.key}`);
      if (!this.byPath.has(fork.step)) this.byPath.set(fork.step, new Map());
      this.byPath.get(fork.step).set(fork.key, { g, show: (n, pct) => set(`${text} · ${fmtNumber(n)} (${pct}%)`) });
    }
    this.labels.append(g);
  }

  node(step, x, y) {
    const counts = s("text", { class: "node-counts", x: 14, y: 55 }, "entered – · done –");
    const ended = s("text", { class: "node-ended", x: 14, y: 70 }, "");
    const engaged = s("text", { class: "node-engaged", x: 14, y: 84 }, "");
    const active = s("text", { class: "node-active-n", x: W - 26, y: 52, "text-anchor": "middle" }, "–");
    const g = s("g", { class: `node node-${step.type}`, transform: `translate(${x},${y})`,
      "data-step": step.id, "data-testid": `step-${step.id}` },
    s("title", {}, `${step.id}: ${summary(step, this.names)}`),
    s("rect", { class: "node-box", width: W, height: H, rx: 8 }),
    s("rect", { class: "node-bar", width: 5, height: H, rx: 2 }),
    s("text", { class: "node-type", x: 14, y: 18 }, typeLabel(step)),
    s("text", { class: "node-id", x: W - 10, y: 18, "text-anchor": "end" }, truncate(step.id, 16)),
    s("text", { class: "node-summary", x: 14, y: 36 }, truncate(summary(step, this.names), 27)),
    counts,
    ended,
    engaged,
    s("rect", { class: "node-active", x: W - 46, y: 39, width: 40, height: 18, rx: 9 }),
    active);
    this.nodes.append(g);
    this.byStep.set(step.id, { g, counts, active, ended, engaged });
    if (step.type === "jump") this.jumps.push([step, x, y]);
  }

  // Lays `steps` out in a column [left, left + width) from `top`; `ins` are the points the
  // first step is reached from. Returns the bottom and the points left open at the end.
  sequence(steps, left, width, top, ins, label, fork) {
    let y = top;
    let outs = ins;
    steps.forEach((step, i) => {
      const cx = left + width / 2;
      for (const p of outs) this.edge(p, { x: cx, y });
      if (i === 0 && label) this.label(cx, y - 14, label, fork);
      this.node(step, cx - W / 2, y);
      let bottom = y + H;
      const kids = paths(step);
      if (kids.length) {
        ({ bottom, outs } = this.fork(step, kids, left, width, { x: cx, y: bottom }));
      } else {
        outs = terminal(step) ? [] : [{ x: cx, y: bottom }];
      }
      y = bottom + VGAP;
    });
    return { bottom: steps.length ? y - VGAP : top, outs };
  }

  fork(step, kids, left, width, from) {
    const total = kids.reduce((sum, k) => sum + seqWidth(k.steps), 0) + HGAP * (kids.length - 1);
    let x = left + (width - total) / 2;
    const top = from.y + FORK;
    let bottom = top;
    const outs = [];
    for (const kid of kids) {
      const kw = seqWidth(kid.steps);
      if (kid.steps.length) {
        const placed = this.sequence(kid.steps, x, kw, top, [from], kid.label, { step: step.id, key: kid.key });
        bottom = Math.max(bottom, placed.bottom);
        outs.push(...placed.outs);
      } else {
        const pass = { x: x + kw / 2, y: top + 6 };
        this.edge(from, pass);
        this.label(pass.x, top - 14, kid.label, { step: step.id, key: kid.key });
        this.edges.append(s("circle", { class: "pass", cx: pass.x, cy: pass.y + 4, r: 4 }));
        bottom = Math.max(bottom, top + 14);
        outs.push({ x: pass.x, y: pass.y + 8 });
      }
      x += kw + HGAP;
    }
    return { bottom, outs };
  }
}

function laneHeader(stage, index, journey) {
  const entry = stage.entry ? describe(stage.entry)
    : index === 0 ? "—" : `milestone of ${journey.stages[index - 1].name}`;
  const rules = (stage.exit_criteria || []).map((rule) =>
    `${describe(rule.criteria)} → ${rule.to_stage ? `stage ${rule.to_stage}` : "leave"}`);
  if (stage.max_time_in_stage) rules.push(`stale after ${fmtDuration(stage.max_time_in_stage)}`);
  return { entry, rules: rules.length ? `exits: ${rules.join("; ")}` : "no stage exit rules" };
}

// Where a stage's profiles ended: finished (steps ran out, still in the stage) and each way
// of leaving the journey from it.
export function endsText(stage) {
  const parts = Object.entries({ finished: stage.finished || 0, ...(stage.ends || {}) })
    .filter(([, n]) => n > 0).map(([k, n]) => `${k} ${fmtNumber(n)}`);
  return parts.length ? `ended: ${parts.join(" · ")}` : "ended: none yet";
}

// A message step's funnel on its card: "sent 2 · opened 50% · clicked 50% · goal 50%".
export function funnelText(f) {
  const pct = (r) => (r == null ? "–" : `${r}%`);
  return `sent ${fmtNumber(f.sent)} · open ${pct(f.open_rate)} · click ${pct(f.click_rate)} · goal ${pct(f.goal_rate)}`;
}

// `names.templates`: template id -> name, for the activation cards.
export function drawJourney(journey, names = {}) {
  const drawing = new Drawing(names);
  const lanes = s("g", { class: "lanes" });
  const stageCounts = new Map();
  let x = 0;
  let height = 0;
  const laneBoxes = [];
  journey.stages.forEach((stage, index) => {
    const inner = seqWidth(stage.steps || []);
    const width = inner + PAD * 2;
    const top = HEAD + 24;
    const placed = drawing.sequence(stage.steps || [], x + PAD, inner, top, [], null);
    let bottom = placed.bottom;
    if (placed.outs.length) {
      const end = { x: x + PAD + inner / 2, y: bottom + VGAP };
      for (const p of placed.outs) drawing.edge(p, end);
      drawing.edges.append(s("circle", { class: "path-end", cx: end.x, cy: end.y + 5, r: 5 }));
      bottom = end.y + 10;
    }
    const milestone = stage.milestone ? `milestone: ${describe(stage.milestone)}` : null;
    laneBoxes.push({ stage, index, x, width, bottom: bottom + (milestone ? 44 : 20), milestone });
    height = Math.max(height, bottom + (milestone ? 44 : 20));
    x += width + LANE_GAP;
  });
  for (const lane of laneBoxes) {
    const { entry, rules } = laneHeader(lane.stage, lane.index, journey);
    const counts = s("text", { class: "lane-counts", x: 14, y: 97 }, "entered – · in stage –");
    const ends = s("text", { class: "lane-ends", x: 14, y: 114, "data-testid": `ends-${lane.index}` }, "");
    stageCounts.set(lane.stage.name, { counts, ends });
    lanes.append(s("g", { class: "lane", transform: `translate(${lane.x},0)`, "data-stage": lane.stage.name },
      s("rect", { class: "lane-box", width: lane.width, height, rx: 12 }),
      s("rect", { class: "lane-head", width: lane.width, height: HEAD, rx: 12 }),
      s("text", { class: "lane-index", x: 14, y: 22 }, `STAGE ${lane.index + 1}`),
      s("text", { class: "lane-name", x: 14, y: 42 }, truncate(lane.stage.name, Math.floor(lane.width / 8.5))),
      s("text", { class: "lane-detail", x: 14, y: 61 }, truncate(`entry: ${entry}`, Math.floor(lane.width / 6.6))),
      s("text", { class: "lane-detail", x: 14, y: 78, "data-testid": `exits-${lane.index}` }, truncate(rules, Math.floor(lane.width / 6.6))),
      s("title", {}, `entry: ${entry}\n${rules}`),
      counts,
      ends,
      lane.milestone ? s("text", { class: "lane-milestone", x: 14, y: height - 16 },
        truncate(lane.milestone, Math.floor(lane.width / 6.6))) : null));
  }
  laneBoxes.slice(0, -1).forEach((lane) => {
    const a = { x: lane.x + lane.width + 6, y: HEAD / 2 };
    lanes.append(s("path", { class: "lane-link", d: `M ${a.x} ${a.y} H ${a.x + LANE_GAP - 14}`, "marker-end": "url(#arrow)" }));
  });
  // Jumps: a dashed arrow to the head of the target stage, or out to the right edge with
  // the other journey named.
  const jumps = s("g", { class: "jumps" });
  let reach = x - LANE_GAP;
  for (const [step, jx, jy] of drawing.jumps) {
    const from = { x: jx + W, y: jy + H / 2 };
    const lane = step.journey_id ? null : laneBoxes.find((l) => l.stage.name === step.stage);
    if (lane) {
      const to = { x: lane.x + Math.min(lane.width / 2, 120), y: HEAD + 2 };
      const lift = Math.max(40, (from.y - to.y) / 2);
      jumps.append(s("path", { class: "jump-link", "data-jump": step.id, "marker-end": "url(#arrow)",
        d: `M ${from.x} ${from.y} C ${from.x + 80} ${from.y}, ${to.x} ${to.y + lift}, ${to.x} ${to.y}` }));
    } else {
      const label = step.journey_id ? `journey ${truncate(step.journey_id, 8)} · ${step.stage}` : `stage ${step.stage} (missing)`;
      const end = from.x + 46;
      jumps.append(s("path", { class: "jump-link", "data-jump": step.id, "marker-end": "url(#arrow)", d: `M ${from.x} ${from.y} H ${end}` }),
        s("text", { class: "jump-label", x: end + 4, y: from.y + 4 }, label));
      reach = Math.max(reach, end + 12 + label.length * 6.4);
    }
  }
  const width = Math.max(reach, W);
  const svg = s("svg", { class: "journey-map", width, height, viewBox: `0 0 ${width} ${height}`,
    role: "img", "aria-label": `Map of ${journey.name}` },
  s("defs", {}, s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7,
    markerHeight: 7, orient: "auto-start-reverse" }, s("path", { d: "M 0 0 L 10 5 L 0 10 z", class: "arrow" }))),
  lanes, drawing.edges, jumps, drawing.nodes, drawing.labels);

  const show = (id, step) => {
    const node = drawing.byStep.get(id);
    if (!node) return;
    node.counts.textContent = `entered ${fmtNumber(step.entered)} · done ${fmtNumber(step.completed)}`;
    node.active.textContent = fmtNumber(step.active);
    node.g.classList.toggle("has-active", step.active > 0);
    // Profiles whose steps ran out here are still in the stage, but no longer on the step.
    node.ended.textContent = step.finished ? `finished here ${fmtNumber(step.finished)}` : "";
  };
  const showPaths = (taken) => {
    for (const [id, labels] of drawing.byPath) {
      const counts = new Map((taken[id] || []).map((p) => [p.path, p]));
      for (const [key, label] of labels) {
        const p = counts.get(key);
        label.show(p ? p.count : 0, p ? p.percent : 0);
      }
    }
  };
  return {
    svg,
    update(analytics) {
      for (const stage of analytics.stages || []) {
        const lane = stageCounts.get(stage.name);
        if (lane) {
          lane.counts.textContent = `entered ${fmtNumber(stage.entered)} · in stage ${fmtNumber(stage.active)}`;
          lane.ends.textContent = endsText(stage);
        }
        for (const step of stage.steps || []) show(step.id, step);
      }
      showPaths(analytics.paths || {});
      for (const funnel of analytics.engagement?.steps || []) {
        const node = drawing.byStep.get(funnel.step_id);
        if (node) node.engaged.textContent = funnelText(funnel);
      }
      // A stopped version is no longer loaded: its steps' last counts come by id alone.
      if (!(analytics.stages || []).length) {
        for (const [id, step] of Object.entries(analytics.steps || {})) show(id, step);
      }
    },
    highlight(stepIds) {
      for (const [id, node] of drawing.byStep) node.g.classList.toggle("visited", stepIds.has(id));
    },
  };
}
