// The journey builder: a draft edited in place (settings, stages, steps on every path), checked
// by POST /v1/journeys/validate as it changes, saved with PUT, published through a dialog that
// shows the difference from the live version. Everything goes through the public /v1 API.
import { ApiError, all, get, may, paths, post, api } from "./api.js";
import { BUILTIN_EVENTS, criteriaEditor } from "./criteria.js";
import { publishDialog } from "./publish.js";
import { summary } from "./map.js";
import { SAMPLE_PROFILES, sampleEvents } from "./simulate.js";
import { badge, clear, fmtDuration, h, problemBox } from "./ui.js";

const VALIDATE_DELAY_MS = 400;   // debounce: one check after a burst of typing
const MAX_STAGES = 8;
// What the server adds to a journey body; the editor edits (and saves) only the body.
const SERVER_FIELDS = ["id", "version", "status", "live_version", "latest_version", "created_at", "updated_at"];
const CHANNELS = ["email", "sms", "push", "webhook"];
const CONNECTOR_CHANNEL = { smtp: "email", sms_http: "sms", push_http: "push", webhook: "webhook" };
const RECIPIENT = { email: "email", sms: "phone", push: "push_token" };
const PURPOSES = ["welcome", "purchase", "anniversary", "win-back", "custom"];
const DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const STEP_KINDS = [
  ["wait", "Wait"], ["email", "Email"], ["sms", "SMS"], ["push", "Push"], ["webhook", "Webhook"],
  ["branch", "Branch"], ["split-attribute", "Split by attribute"], ["split-random", "Random split"],
  ["jump", "Jump"], ["end", "End"],
];

export function bodyOf(journey) {
  const body = { ...journey };
  for (const key of SERVER_FIELDS) delete body[key];
  return body;
}

function emptyJourney() {
  return {
    name: "Untitled journey",
    description: "",
    reentry: { mode: "never", cooldown: "PT0S" },
    stages: [{ name: "Stage 1", entry: { event: "" }, steps: [] }],
  };
}

// ["stages", 0, "steps", 1] <-> "stages[0].steps[1]", the server's JSON path notation.
export function pathText(parts) {
  return parts.reduce((out, p) => (typeof p === "number" ? `${out}[${p}]` : out ? `${out}.${p}` : p), "");
}

export function parsePath(text) {
  const parts = [];
  for (const m of String(text).matchAll(/([^.[\]]+)|\[(\d+)\]/g)) parts.push(m[2] !== undefined ? Number(m[2]) : m[1]);
  return parts;
}

function at(root, parts) {
  let node = root;
  for (const p of parts) {
    if (node === null || node === undefined) return undefined;
    node = node[p];
  }
  return node;
}

// The paths a step forks into: a label, the key under the step, and the list (maybe absent).
export function forks(step) {
  if (step.type === "branch") return [{ label: "yes", key: ["yes"] }, { label: `no · after ${fmtDuration(step.timeout)}`, key: ["no"] }];
  if (step.type === "split" && step.mode === "attribute") {
    return [...(step.cases || []).map((c, i) => ({ label: `case ${i + 1}`, key: ["cases", i, "steps"] })),
      { label: "default", key: ["default"] }];
  }
  if (step.type === "split") {
    return (step.paths || []).map((p, i) => ({ label: `${p.name ? `${p.name} · ` : ""}${p.percent}%${(p.steps || []).length ? "" : " · holdout"}`, key: ["paths", i, "steps"] }));
  }
  return [];
}

// Every step of a list and of the paths under it.
export function countSteps(list) {
  return (list || []).reduce((n, step) => n + 1 + forks(step).reduce((m, f) => m + countSteps(at(step, f.key)), 0), 0);
}

function allSteps(body) {
  const out = [];
  const walk = (list, prefix) => (list || []).forEach((step, i) => {
    out.push({ step, path: [...prefix, i] });
    for (const f of forks(step)) walk(at(step, f.key), [...prefix, i, ...f.key]);
  });
  (body.stages || []).forEach((stage, i) => walk(stage.steps, ["stages", i, "steps"]));
  return out;
}

function freshId(body, prefix) {
  const taken = new Set(allSteps(body).map((s) => s.step.id));
  for (let n = 1; ; n += 1) if (!taken.has(`${prefix}-${n}`)) return `${prefix}-${n}`;
}

function newStep(kind, body, catalog, stagePath) {
  if (CHANNELS.includes(kind)) {
    const connector = catalog.connectors.find((c) => CONNECTOR_CHANNEL[c.type] === kind);
    const template = catalog.templates.find((t) => t.channel === kind);
    const step = { id: freshId(body, kind), type: "activation", channel: kind,
      connector_id: connector ? connector.id : "", template_id: template ? template.id : "" };
    if (RECIPIENT[kind]) step.to_attribute = RECIPIENT[kind];
    return step;
  }
  const id = freshId(body, kind.split("-")[0]);
  switch (kind) {
    case "wait": return { id, type: "wait", duration: "P1D" };
    case "branch": return { id, type: "branch", criteria: { event: "" }, timeout: "P1D", yes: [], no: [] };
    case "split-attribute": return { id, type: "split", mode: "attribute",
      cases: [{ criteria: { profile: [{ attribute: "", op: "eq", value: "" }] }, steps: [] }], default: [] };
    case "split-random": return { id, type: "split", mode: "random", paths: [{ percent: 90, steps: [] }, { percent: 10, steps: [] }] };
    case "jump": {
      const later = body.stages.slice(stagePath[1] + 1);
      return { id, type: "jump", stage: later.length ? later[0].name : "" };
    }
    default: return { id, type: "end" };
  }
}

async function loadCatalog() {
  const quiet = (promise) => promise.catch((error) => {
    if (error instanceof ApiError) return [];
    throw error;
  });
  const [templates, connectors, triggers, folders, journeys] = await Promise.all([
    quiet(all(paths.templates)), quiet(all(paths.connectors)), quiet(all(paths.triggers)),
    quiet(all(paths.folders)), quiet(all(paths.journeys)),
  ]);
  return { templates, connectors, triggers: new Map(triggers.map((t) => [t.name, t])), folders, journeys };
}

export async function renderEditor(root, ctx, id) {
  const role = ctx.role;
  const readOnly = !may.changeJourneys(role);
  let journey = null;
  if (id) {
    try {
      journey = await get(paths.journey(id));
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      root.append(editorRefusal(error, role, "open this journey"));
      return;
    }
  } else if (readOnly) {
    root.append(h("div", { class: "page-head" }, h("h1", {}, "New journey")),
      h("p", { class: "note", "data-testid": "read-only-note" }, `Read only: a ${role} key may look at journeys; creating one needs an editor or admin key.`));
    return;
  }
  const catalog = await loadCatalog();
  if (journey && journey.status !== "draft") {
    renderLive(root, ctx, journey, readOnly);
    return;
  }
  new Editor(root, ctx, journey, catalog, readOnly).start();
}

// A 403 on a journey of another folder says which folders the key may change.
function editorRefusal(error, role, what) {
  const box = problemBox(error, role, what);
  if (error.status === 403) {
    box.append(h("p", { "data-testid": "folder-explained" },
      "A key limited to folders may open and change only the journeys of its own folders; this journey is in another folder (or none). ",
      "Ask an admin to add this folder to the key's grants, or to move the journey."));
  }
  return box;
}

function renderLive(root, ctx, journey, readOnly) {
  const message = h("div", {});
  root.append(h("div", { class: "page-head" }, h("div", {},
    h("a", { href: `#/journeys/${encodeURIComponent(journey.id)}`, class: "back" }, `← ${journey.name}`),
    h("h1", {}, journey.name, " ", badge(journey.status)),
    h("p", { class: "muted" }, `Version ${journey.version} is ${journey.status}: a published version does not change. Edit a new version instead.`))));
  if (readOnly) {
    root.append(h("p", { class: "note", "data-testid": "read-only-note" }, `Read only: a ${ctx.role} key may look at journeys; new versions need an editor or admin key.`));
    return;
  }
  if (journey.status === "stopped") return;
  root.append(h("div", { class: "actions" }, h("button", { type: "button", class: "primary", onclick: async () => {
    try {
      await post(paths.action(journey.id, "versions"));
      ctx.reload();
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      clear(message).append(editorRefusal(error, ctx.role, "create a version of this journey"));
    }
  } }, "New version")), message);
}

class Editor {
  constructor(root, ctx, journey, catalog, readOnly) {
    this.root = root;
    this.ctx = ctx;
    this.journey = journey;
    this.catalog = catalog;
    this.readOnly = readOnly;
    this.body = journey ? bodyOf(journey) : emptyJourney();
    this.saved = JSON.stringify(this.body);  // an untouched new journey holds no work to lose
    this.snapshot = JSON.stringify(this.body);
    this.undoStack = [];
    this.redoStack = [];
    this.lastKey = null;
    this.selected = [];          // [] settings, ["stages", i] a stage, a step's path
    this.problems = [];
    this.checking = false;
    this.checked = null;         // the body text the problems are about
    this.inserting = null;       // the insertion point whose menu is open
    this.moving = null;          // the path of a step being moved
    this.confirming = null;      // a pending delete
    this.jsonView = false;
    this.timer = null;
  }

  get dirty() {
    return this.snapshot !== this.saved;
  }

  start() {
    this.head = h("div", { class: "page-head" });
    this.toolbar = h("div", { class: "editor-toolbar", role: "toolbar", "aria-label": "Editor" });
    this.message = h("div", { class: "editor-message", "aria-live": "polite" });
    this.canvas = h("div", { class: "editor-canvas", "data-testid": "canvas" });
    this.inspector = h("aside", { class: "inspector card", "aria-label": "Inspector" });
    this.problemList = h("section", { class: "problems card", "aria-label": "Problems" });
    this.jsonBox = h("section", { class: "json-view card", hidden: true });
    this.simBox = h("section", { class: "sim-box card", hidden: true, "data-testid": "editor-simulation" });
    this.root.append(this.head, this.toolbar, this.message,
      h("div", { class: "editor" }, h("div", { class: "editor-main" }, this.canvas, this.simBox, this.jsonBox),
        h("div", { class: "editor-side" }, this.problemList, this.inspector)));
    // On the document: after an undo removes the focused step, focus is on the body.
    const keys = (e) => this.keys(e);
    document.addEventListener("keydown", keys);
    const unload = (e) => {
      if (this.dirty && !this.readOnly) e.preventDefault();
    };
    window.addEventListener("beforeunload", unload);
    this.ctx.onLeave(() => this.readOnly || !this.dirty || window.confirm("This draft has unsaved changes. Leave without saving them?"),
      () => {
        window.removeEventListener("beforeunload", unload);
        document.removeEventListener("keydown", keys);
      });
    this.renderAll();
    this.validate();
  }

  // -- changes and history ------------------------------------------------------------

  // Called after the body was changed in place; `key` groups keystrokes into one undo step.
  changed(key, { structure = false } = {}) {
    const text = JSON.stringify(this.body);
    if (text === this.snapshot) return;
    if (structure || key !== this.lastKey || !this.undoStack.length) this.undoStack.push(this.snapshot);
    this.lastKey = structure ? null : key;
    this.redoStack = [];
    this.snapshot = text;
    this.renderCanvas();
    this.renderHead();
    this.renderToolbar();
    if (structure) this.renderInspector();
    this.schedule();
  }

  restore(from, to) {
    if (!from.length) return;
    to.push(this.snapshot);
    this.snapshot = from.pop();
    this.body = JSON.parse(this.snapshot);
    this.lastKey = null;
    if (this.selected.length && at(this.body, this.selected) === undefined) this.selected = [];
    this.renderAll();
    this.schedule();
  }

  undo() { this.restore(this.undoStack, this.redoStack); }
  redo() { this.restore(this.redoStack, this.undoStack); }

  keys(e) {
    if (this.readOnly || !(e.ctrlKey || e.metaKey) || e.altKey) return;
    const typing = /^(INPUT|TEXTAREA)$/.test(e.target.tagName);
    const k = e.key.toLowerCase();
    if (k === "s") {
      e.preventDefault();
      this.save();
    } else if (!typing && k === "z") {
      e.preventDefault();
      if (e.shiftKey) this.redo(); else this.undo();
    } else if (!typing && k === "y") {
      e.preventDefault();
      this.redo();
    }
  }

  select(parts, focusPath) {
    this.selected = parts;
    this.inserting = null;
    this.confirming = null;
    this.renderCanvas();
    this.renderInspector();
    const target = focusPath && this.inspector.querySelector(`[data-path="${CSS.escape(focusPath)}"]`);
    const first = target ? (target.matches("input, select, textarea, button") ? target : target.querySelector("input, select, textarea")) : null;
    (first || this.inspector.querySelector("input, select, textarea") || this.inspector).focus?.();
  }

  // -- validation -----------------------------------------------------------------------

  schedule() {
    clearTimeout(this.timer);
    this.checking = true;
    this.problemList.querySelector("[data-testid=no-problems]")?.remove();  // no longer known
    this.renderToolbar();
    this.timer = setTimeout(() => this.validate(), VALIDATE_DELAY_MS);
  }

  async validate() {
    const text = this.snapshot;
    this.checking = true;
    this.renderToolbar();
    let problems = [];
    try {
      await post(paths.validate, this.body);
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      if (error.status === 422) {
        problems = (error.problem.errors || []).map((e) => ({ path: e.path || "", message: e.message }));
        if (!problems.length) problems = [{ path: "", message: error.problem.detail || "not valid" }];
      } else {
        problems = [{ path: "", message: `the check failed (${error.status}): ${error.message}` }];
      }
    }
    if (text !== this.snapshot) return;  // changed meanwhile: a newer check is scheduled
    this.problems = problems;
    this.checked = text;
    this.checking = false;
    this.renderToolbar();
    this.renderProblems();
    this.markProblems();
  }

  // Where a problem shows: the deepest step (or stage) its JSON path lies in, else settings.
  ownerOf(path) {
    const parts = parsePath(path);
    for (let k = parts.length; k >= 2; k -= 1) {
      const node = at(this.body, parts.slice(0, k));
      if (typeof parts[k - 1] === "number" && node && typeof node === "object" && typeof node.type === "string" && "id" in node) {
        return parts.slice(0, k);
      }
    }
    if (parts[0] === "stages" && typeof parts[1] === "number" && this.body.stages?.[parts[1]]) return parts.slice(0, 2);
    return [];
  }

  markProblems() {
    for (const el of this.root.querySelectorAll(".has-problem")) el.classList.remove("has-problem");
    for (const el of this.root.querySelectorAll(".field-problem")) el.remove();
    for (const el of this.root.querySelectorAll("[data-problems]")) delete el.dataset.problems;
    for (const problem of this.problems) {
      const owner = pathText(this.ownerOf(problem.path));
      const node = this.canvas.querySelector(`[data-node="${CSS.escape(owner)}"]`);
      if (node) {
        node.classList.add("has-problem");
        node.dataset.problems = String(Number(node.dataset.problems || 0) + 1);
        node.title = `${node.dataset.problems} problem(s): ${problem.message}`;
      }
      // The field the path names, or the closest enclosing one shown in the inspector.
      let parts = parsePath(problem.path);
      let field = null;
      while (!field) {
        field = this.inspector.querySelector(`[data-path="${CSS.escape(pathText(parts))}"]`);
        if (!parts.length) break;
        parts = parts.slice(0, -1);
      }
      if (field && field !== this.inspector) {
        field.classList.add("has-problem");
        const host = field.closest("label, .condition, fieldset, .field") || field;
        host.after(h("p", { class: "field-problem", role: "alert", "data-testid": "field-problem" }, problem.message));
      }
    }
  }

  renderProblems() {
    clear(this.problemList);
    if (this.checked === null) return;
    if (!this.problems.length) {
      this.problemList.append(h("p", { class: "ok", "data-testid": "no-problems" }, "No problems: this draft can be published."));
      return;
    }
    this.problemList.append(h("h2", {}, `${this.problems.length} problem${this.problems.length === 1 ? "" : "s"}`),
      h("ul", { class: "problem-list", "data-testid": "problem-list" }, this.problems.map((p) => h("li", {},
        h("button", { type: "button", class: "link", onclick: () => this.select(this.ownerOf(p.path), p.path) },
          h("code", {}, p.path || "(journey)"), " ", p.message)))));
  }

  // -- rendering --------------------------------------------------------------------------

  renderAll() {
    this.renderHead();
    this.renderToolbar();
    this.renderCanvas();
    this.renderInspector();
    this.renderProblems();
    this.renderJson();
    this.markProblems();
  }

  renderHead() {
    const j = this.journey;
    clear(this.head).append(h("div", {},
      h("a", { href: j ? `#/journeys/${encodeURIComponent(j.id)}` : "#/journeys", class: "back" }, j ? `← ${j.name}` : "← Journeys"),
      h("h1", {}, j ? `Edit ${this.body.name || j.name}` : "New journey", " ",
        badge(j ? `draft v${j.version}` : "not saved", "draft"),
        this.dirty && !this.readOnly ? badge("unsaved changes", "paused", { "data-testid": "unsaved" }) : null),
      h("p", { class: "muted" }, this.readOnly ? "" : "Click a + to add a step, a step or stage to configure it. Ctrl+Z undoes, Ctrl+S saves.")));
  }

  renderToolbar() {
    clear(this.toolbar);
    if (this.readOnly) {
      this.toolbar.append(h("p", { class: "note", "data-testid": "read-only-note" },
        `Read only: a ${this.ctx.role} key may look at this draft; changing it needs an editor or admin key.`));
      return;
    }
    const blocked = this.checking || this.problems.length > 0;
    this.toolbar.append(
      h("button", { type: "button", onclick: () => this.select([]), "aria-pressed": String(!this.selected.length) }, "Journey settings"),
      h("button", { type: "button", onclick: () => this.undo(), disabled: !this.undoStack.length, "aria-keyshortcuts": "Control+Z" }, "Undo"),
      h("button", { type: "button", onclick: () => this.redo(), disabled: !this.redoStack.length, "aria-keyshortcuts": "Control+Shift+Z" }, "Redo"),
      h("button", { type: "button", "aria-pressed": String(this.jsonView), onclick: () => { this.jsonView = !this.jsonView; this.renderJson(); this.renderToolbar(); } }, "JSON"),
      h("button", { type: "button", onclick: () => this.simulate(), disabled: !may.simulate(this.ctx.role) }, "Simulate"),
      h("span", { class: "spacer" }),
      h("span", { class: "muted small", "data-testid": "check-state" }, this.checking ? "checking…" : blocked ? "fix the problems to publish" : "valid"),
      h("button", { type: "button", onclick: () => this.save(), "aria-keyshortcuts": "Control+S" }, "Save draft"),
      h("button", { type: "button", class: "primary", disabled: blocked, title: blocked ? "Publish is possible once no problem stands" : undefined,
        onclick: () => this.publish() }, "Publish…"));
  }

  renderJson() {
    clear(this.jsonBox);
    this.jsonBox.hidden = !this.jsonView;
    if (!this.jsonView) return;
    const area = h("textarea", { class: "json", spellcheck: "false", "aria-label": "Journey JSON", rows: 24 }, JSON.stringify(this.body, null, 2));
    const error = h("p", { class: "field-problem", hidden: true, role: "alert" });
    this.jsonBox.append(h("div", { class: "card-head" }, h("h2", {}, "JSON"),
      this.readOnly ? null : h("button", { type: "button", onclick: () => {
        let value;
        try {
          value = JSON.parse(area.value);
        } catch (e) {
          error.hidden = false;
          error.textContent = `Not JSON: ${e.message}`;
          return;
        }
        if (!value || typeof value !== "object" || Array.isArray(value)) {
          error.hidden = false;
          error.textContent = "A journey is a JSON object.";
          return;
        }
        this.body = bodyOf(value);
        this.selected = [];
        this.changed("json", { structure: true });
        this.renderJson();
      } }, "Apply JSON")), area, error);
    area.readOnly = this.readOnly;
  }

  renderCanvas() {
    const scroll = this.canvas.scrollLeft;
    clear(this.canvas);
    const row = h("div", { class: "stages" });
    (this.body.stages || []).forEach((stage, i) => row.append(this.stageColumn(stage, i)));
    if (!this.readOnly && (this.body.stages || []).length < MAX_STAGES) {
      row.append(h("button", { type: "button", class: "add-stage", onclick: () => this.addStage() }, "+ Add stage"));
    }
    const settings = h("div", { class: `settings-node${this.selected.length ? "" : " selected"}`, "data-node": "", role: "button", tabindex: 0,
      onclick: () => this.select([]), onkeydown: (e) => this.activate(e, () => this.select([])) },
    h("strong", {}, this.body.name || "Untitled"), " ",
    h("span", { class: "muted" }, `re-entry ${this.body.reentry?.mode || "never"}${this.body.goal ? ` · goal ${this.body.goal.target_percent ?? "–"}%` : ""}${(this.body.exit_criteria || []).length ? ` · ${this.body.exit_criteria.length} exit rule(s)` : ""}`));
    this.canvas.append(settings, row);
    this.canvas.scrollLeft = scroll;
    this.markProblems();
  }

  activate(e, fn) {
    if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      fn();
    }
  }

  stageColumn(stage, i) {
    const path = ["stages", i];
    const selected = pathText(this.selected) === pathText(path);
    const entry = stage.entry ? "entry criteria" : i === 0 ? "no entry criteria" : "after the stage before";
    const col = h("section", { class: "stage-col", "aria-label": `Stage ${i + 1}: ${stage.name}` },
      h("div", { class: `stage-head${selected ? " selected" : ""}`, role: "button", tabindex: 0, "data-node": pathText(path),
        "data-testid": `stage-${i}`, onclick: () => this.select(path), onkeydown: (e) => this.activate(e, () => this.select(path)) },
      h("div", { class: "stage-index" }, `STAGE ${i + 1}`),
      h("div", { class: "stage-name" }, stage.name || "(no name)"),
      h("div", { class: "muted small" }, `${entry}${stage.milestone ? " · milestone" : ""}${(stage.exit_criteria || []).length ? ` · ${stage.exit_criteria.length} exit rule(s)` : ""}${stage.max_time_in_stage ? ` · max ${fmtDuration(stage.max_time_in_stage)}` : ""}`)));
    col.append(this.sequence(stage.steps || [], [...path, "steps"]));
    return col;
  }

  sequence(list, listPath) {
    const seq = h("div", { class: "seq" });
    list.forEach((step, k) => {
      seq.append(this.insertPoint(listPath, k));
      seq.append(this.stepNode(step, [...listPath, k]));
    });
    seq.append(this.insertPoint(listPath, list.length));
    return seq;
  }

  insertPoint(listPath, k) {
    if (this.readOnly) return h("div", { class: "gap" });
    const where = `${pathText(listPath)}[${k}]`;
    if (this.moving) {
      const inside = where.startsWith(`${pathText(this.moving)}.`);
      if (inside) return h("div", { class: "gap" });
      return h("button", { type: "button", class: "insert moving", "data-testid": `insert-${where}`, "aria-label": `Move the step to ${where}`,
        onclick: () => this.moveTo(listPath, k) }, "Move here");
    }
    if (this.inserting === where) {
      return h("div", { class: "insert-menu", role: "menu", "aria-label": `Add a step at ${where}` },
        STEP_KINDS.map(([kind, label]) => h("button", { type: "button", role: "menuitem", class: `small kind-${kind}`, "data-kind": kind,
          onclick: () => this.insert(listPath, k, kind) }, label)),
        h("button", { type: "button", class: "small ghost", onclick: () => { this.inserting = null; this.renderCanvas(); } }, "Cancel"));
    }
    return h("button", { type: "button", class: "insert", "data-testid": `insert-${where}`, "aria-label": `Add a step at ${where}`,
      onclick: () => {
        this.inserting = where;
        this.renderCanvas();
        this.canvas.querySelector(".insert-menu button")?.focus();
      } }, "+");
  }

  stepNode(step, path) {
    const text = pathText(path);
    const selected = pathText(this.selected) === text;
    const names = { templates: new Map(this.catalog.templates.map((t) => [t.id, t.name])) };
    const template = step.type === "activation" && this.catalog.templates.find((t) => t.id === step.template_id);
    const wrap = h("div", { class: "step-wrap" });
    const visited = this.visited && this.visited.has(step.id) ? " visited" : "";
    wrap.append(h("div", { class: `step node-${step.type}${selected ? " selected" : ""}${visited}${this.moving && pathText(this.moving) === text ? " is-moving" : ""}`,
      role: "button", tabindex: 0, "data-node": text, "data-testid": `step-${step.id}`,
      "aria-label": `${step.type} step ${step.id}`,
      onclick: () => this.select(path), onkeydown: (e) => this.activate(e, () => this.select(path)) },
    h("div", { class: "step-top" }, h("span", { class: "step-type" }, step.type === "activation" ? String(step.channel || "message").toUpperCase() : String(step.type).toUpperCase()),
      h("span", { class: "step-id" }, step.id)),
    h("div", { class: "step-summary" }, safeSummary(step, names)),
    template && template.status !== "ready" ? h("div", { class: "step-flag" }, `template is ${template.status}`) : null));
    const kids = forks(step);
    if (kids.length) {
      wrap.append(h("div", { class: "fork" }, kids.map((f) => h("div", { class: "fork-path" },
        h("div", { class: "fork-label" }, f.label),
        this.sequence(at(step, f.key) || [], [...path, ...f.key])))));
    }
    return wrap;
  }

  // -- structural edits ---------------------------------------------------------------

  listAt(listPath, create) {
    const parent = at(this.body, listPath.slice(0, -1));
    const key = listPath[listPath.length - 1];
    if (!Array.isArray(parent[key]) && create) parent[key] = [];
    return parent[key];
  }

  insert(listPath, k, kind) {
    const step = newStep(kind, this.body, this.catalog, listPath);
    this.listAt(listPath, true).splice(k, 0, step);
    this.inserting = null;
    this.selected = [...listPath, k];
    this.changed("insert", { structure: true });
    this.canvas.querySelector(`[data-node="${CSS.escape(pathText(this.selected))}"]`)?.focus();
  }

  moveTo(listPath, k) {
    const from = this.moving;
    const source = this.listAt(from.slice(0, -1));
    const step = source[from[from.length - 1]];
    const target = this.listAt(listPath, true);
    source.splice(from[from.length - 1], 1);
    let index = k;
    if (source === target && from[from.length - 1] < k) index -= 1;
    target.splice(index, 0, step);
    this.moving = null;
    this.selected = this.pathOf(step) || [];
    this.changed("move", { structure: true });
  }

  pathOf(step) {
    const found = allSteps(this.body).find((s) => s.step === step);
    return found ? found.path : null;
  }

  shift(path, by) {
    const list = this.listAt(path.slice(0, -1));
    const i = path[path.length - 1];
    const j = i + by;
    if (j < 0 || j >= list.length) return;
    [list[i], list[j]] = [list[j], list[i]];
    this.selected = [...path.slice(0, -1), j];
    this.changed("shift", { structure: true });
  }

  removeStep(path) {
    this.listAt(path.slice(0, -1)).splice(path[path.length - 1], 1);
    this.selected = [];
    this.confirming = null;
    this.changed("delete", { structure: true });
  }

  addStage() {
    const names = new Set(this.body.stages.map((s) => s.name));
    let n = this.body.stages.length + 1;
    while (names.has(`Stage ${n}`)) n += 1;
    this.body.stages.push({ name: `Stage ${n}`, steps: [] });
    this.selected = ["stages", this.body.stages.length - 1];
    this.changed("stage", { structure: true });
  }

  // Renaming a stage keeps the jumps and exit rules that name it pointing at it.
  renameStage(i, name) {
    const old = this.body.stages[i].name;
    this.body.stages[i].name = name;
    for (const { step } of allSteps(this.body)) if (step.type === "jump" && !step.journey_id && step.stage === old) step.stage = name;
    for (const stage of this.body.stages) for (const rule of stage.exit_criteria || []) if (rule.to_stage === old) rule.to_stage = name;
  }

  moveStage(i, by) {
    const j = i + by;
    const stages = this.body.stages;
    if (j < 0 || j >= stages.length) return;
    [stages[i], stages[j]] = [stages[j], stages[i]];
    this.selected = ["stages", j];
    this.changed("stage-move", { structure: true });
  }

  // -- the inspector ------------------------------------------------------------------

  renderInspector() {
    clear(this.inspector);
    const sel = this.selected;
    const node = at(this.body, sel);
    if (!sel.length || node === undefined) this.settingsForm();
    else if (sel.length === 2) this.stageForm(sel[1]);
    else this.stepForm(node, sel);
    if (this.readOnly) for (const el of this.inspector.querySelectorAll("input, select, textarea, button")) el.disabled = true;
    this.markProblems();
  }

  // A text field bound to `obj[key]`; empty removes the key when `optional`.
  text(label, obj, key, path, { optional = false, type = "text", hint, placeholder, number = false, set } = {}) {
    const value = obj[key];
    const input = h("input", { type, "data-path": path, "data-key": path, placeholder, value: value === undefined || value === null ? "" : String(value),
      oninput: (e) => {
        const v = e.target.value;
        if (set) set(v);
        else if (v === "" && optional) delete obj[key];
        else obj[key] = number ? (v === "" ? null : Number(v)) : v;
        if (hintEl && type === "text" && hint === "duration") hintEl.textContent = durationHint(obj[key]);
        this.changed(path);
      } });
    const hintEl = hint === "duration" ? h("span", { class: "hint" }, durationHint(value)) : hint ? h("span", { class: "hint" }, hint) : null;
    return h("label", { class: "field" }, h("span", {}, label), input, hintEl);
  }

  choice(label, obj, key, path, options, { optional = false, structure = true } = {}) {
    return h("label", { class: "field" }, h("span", {}, label),
      h("select", { "data-path": path, "data-key": path, onchange: (e) => {
        if (e.target.value === "" && optional) delete obj[key];
        else obj[key] = e.target.value;
        this.changed(path, { structure });
      } }, options.map(([v, t]) => h("option", { value: v, selected: (obj[key] ?? "") === v }, t))));
  }

  criteria(criteria, path, label) {
    return criteriaEditor(criteria, { triggers: this.catalog.triggers, path, readOnly: this.readOnly,
      changed: (key, options) => this.changed(key, options) }, label);
  }

  toggle(label, checked, path, on, off) {
    return h("label", { class: "check" }, h("input", { type: "checkbox", checked, "data-path": `${path}?`, onchange: (e) => {
      if (e.target.checked) on(); else off();
      this.changed(path, { structure: true });
    } }), label);
  }

  exitRules(rules, path, laterStages) {
    const box = h("div", { class: "rules", "data-path": path });
    (rules || []).forEach((rule, k) => {
      const rulePath = `${path}[${k}]`;
      const item = h("div", { class: "rule" }, this.criteria(rule.criteria, `${rulePath}.criteria`, `Exit rule ${k + 1}`));
      if (laterStages) {
        item.append(h("label", { class: "field" }, h("span", {}, "Then"),
          h("select", { "data-path": `${rulePath}.to_stage`, onchange: (e) => {
            if (e.target.value) rule.to_stage = e.target.value; else delete rule.to_stage;
            this.changed(`${rulePath}.to_stage`, { structure: true });
          } }, h("option", { value: "" }, "leave the journey"),
          [...new Set([...laterStages, ...(rule.to_stage ? [rule.to_stage] : [])])].map((n) => h("option", { value: n, selected: rule.to_stage === n }, `move to stage ${n}`)))));
      }
      item.append(h("button", { type: "button", class: "small ghost", onclick: () => {
        rules.splice(k, 1);
        this.changed(path, { structure: true });
      } }, "Remove exit rule"));
      box.append(item);
    });
    return box;
  }

  settingsForm() {
    const b = this.body;
    const f = this.inspector;
    f.append(h("h2", {}, "Journey settings"));
    f.append(this.text("Name", b, "name", "name"));
    f.append(this.text("Description", b, "description", "description", { optional: true }));
    const folders = this.catalog.folders.map((x) => [x.id, x.name]);
    if (b.folder_id && !folders.some(([v]) => v === b.folder_id)) folders.push([b.folder_id, `folder ${b.folder_id.slice(0, 8)}`]);
    f.append(this.choice("Folder", b, "folder_id", "folder_id", [["", "No folder"], ...folders], { optional: true }));
    f.append(this.choice("Purpose", b, "purpose", "purpose", [["", "(none)"], ...PURPOSES.map((p) => [p, p])], { optional: true }));
    b.reentry ||= undefined;
    const reentry = b.reentry || {};
    f.append(h("fieldset", { "data-path": "reentry" }, h("legend", {}, "Re-entry"),
      h("label", { class: "field" }, h("span", {}, "Mode"), h("select", { "data-path": "reentry.mode", onchange: (e) => {
        b.reentry = { ...(b.reentry || {}), mode: e.target.value };
        this.changed("reentry.mode", { structure: true });
      } }, ["never", "unless_goal_met", "always"].map((m) => h("option", { value: m, selected: (reentry.mode || "never") === m }, m.replaceAll("_", " "))))),
      b.reentry ? this.text("Cooldown", b.reentry, "cooldown", "reentry.cooldown", { optional: true, hint: "duration", placeholder: "PT0S" }) : null));
    const schedule = b.schedule || {};
    const when = (key) => h("label", { class: "field" }, h("span", {}, key === "start_at" ? "Starts" : "Ends"),
      h("input", { type: "datetime-local", "data-path": `schedule.${key}`, value: typeof schedule[key] === "string" ? schedule[key].slice(0, 16) : "",
        oninput: (e) => {
          b.schedule = { ...(b.schedule || { start_at: null, end_at: null }) };
          b.schedule[key] = e.target.value ? `${e.target.value}:00Z` : null;
          this.changed(`schedule.${key}`);
        } }), h("span", { class: "hint" }, "UTC"));
    f.append(h("fieldset", { "data-path": "schedule" }, h("legend", {}, "Schedule"), when("start_at"), when("end_at")));
    f.append(h("fieldset", { "data-path": "goal" }, h("legend", {}, "Goal"),
      this.toggle("This journey has a goal", Boolean(b.goal), "goal", () => { b.goal = { criteria: { event: "" }, target_percent: 50 }; }, () => { delete b.goal; }),
      b.goal ? [this.criteria(b.goal.criteria, "goal.criteria", "Goal"),
        this.text("Target %", b.goal, "target_percent", "goal.target_percent", { type: "number", optional: true, number: true })] : null));
    f.append(h("fieldset", { "data-path": "exit_criteria" }, h("legend", {}, "Journey exit rules"),
      h("p", { class: "muted small" }, "A profile that matches one leaves the journey wherever it is."),
      this.exitRules(b.exit_criteria, "exit_criteria", null),
      h("button", { type: "button", class: "small", onclick: () => {
        (b.exit_criteria ||= []).push({ criteria: { event: "" } });
        this.changed("exit_criteria", { structure: true });
      } }, "Add exit rule")));
    f.append(this.text("Max time in journey", b, "max_time_in_journey", "max_time_in_journey", { optional: true, hint: "duration", placeholder: "P24D" }));
  }

  stageForm(i) {
    const stage = this.body.stages[i];
    const path = `stages[${i}]`;
    const f = this.inspector;
    const later = this.body.stages.slice(i + 1).map((s) => s.name);
    f.append(h("h2", {}, `Stage ${i + 1}`));
    f.append(this.text("Name", stage, "name", `${path}.name`, { set: (v) => this.renameStage(i, v) }));
    f.append(h("fieldset", { "data-path": `${path}.entry` }, h("legend", {}, "Entry"),
      h("p", { class: "muted small" }, i === 0 ? "Who enters the journey." : "A profile in an earlier stage that matches this moves here."),
      this.toggle("Entry criteria", Boolean(stage.entry), `${path}.entry`, () => { stage.entry = { event: "" }; }, () => { delete stage.entry; }),
      stage.entry ? this.criteria(stage.entry, `${path}.entry`, "Entry") : null));
    f.append(h("fieldset", { "data-path": `${path}.milestone` }, h("legend", {}, "Milestone"),
      this.toggle("Milestone", Boolean(stage.milestone), `${path}.milestone`, () => { stage.milestone = { event: "" }; }, () => { delete stage.milestone; }),
      stage.milestone ? this.criteria(stage.milestone, `${path}.milestone`, "Milestone") : null));
    f.append(h("fieldset", { "data-path": `${path}.exit_criteria` }, h("legend", {}, "Stage exit rules"),
      this.exitRules(stage.exit_criteria, `${path}.exit_criteria`, later),
      h("button", { type: "button", class: "small", onclick: () => {
        (stage.exit_criteria ||= []).push({ criteria: { event: "" } });
        this.changed(`${path}.exit_criteria`, { structure: true });
      } }, "Add stage exit rule")));
    f.append(this.text("Max time in stage", stage, "max_time_in_stage", `${path}.max_time_in_stage`, { optional: true, hint: "duration", placeholder: "P3D" }));
    if (this.readOnly) return;
    const actions = h("div", { class: "inspector-actions" },
      h("button", { type: "button", class: "small", disabled: i === 0, onclick: () => this.moveStage(i, -1) }, "Move left"),
      h("button", { type: "button", class: "small", disabled: i === this.body.stages.length - 1, onclick: () => this.moveStage(i, 1) }, "Move right"),
      h("button", { type: "button", class: "small danger", disabled: this.body.stages.length === 1, onclick: () => {
        this.confirming = path;
        this.renderInspector();
      } }, "Delete stage"));
    f.append(actions);
    if (this.confirming === path) {
      const n = countSteps(stage.steps);
      f.append(h("div", { class: "confirm", role: "alertdialog", "data-testid": "confirm-delete" },
        h("span", {}, `Delete stage ${stage.name}${n ? ` and its ${n} step${n === 1 ? "" : "s"}` : ""}?`),
        h("button", { type: "button", class: "danger", onclick: () => {
          this.body.stages.splice(i, 1);
          this.selected = [];
          this.confirming = null;
          this.changed("delete-stage", { structure: true });
        } }, "Delete"),
        h("button", { type: "button", class: "ghost", onclick: () => { this.confirming = null; this.renderInspector(); } }, "Cancel")));
    }
  }

  stepForm(step, parts) {
    const path = pathText(parts);
    const f = this.inspector;
    f.append(h("h2", {}, `${step.type === "activation" ? `${step.channel} message` : step.type} step`));
    f.append(this.text("Step id", step, "id", `${path}.id`));
    const add = (...els) => f.append(...els);
    switch (step.type) {
      case "wait": this.waitFields(step, path, add); break;
      case "activation": this.activationFields(step, path, add); break;
      case "branch":
        add(this.criteria(step.criteria, `${path}.criteria`, "Branch on"),
          this.text("Within", step, "timeout", `${path}.timeout`, { hint: "duration", placeholder: "P1D" }),
          h("p", { class: "muted small" }, "A profile takes yes as soon as it matches, no when the time runs out."));
        break;
      case "split": this.splitFields(step, path, add); break;
      case "jump": this.jumpFields(step, parts, add); break;
      default: add(h("p", { class: "muted" }, "The profile stays in the stage until a stage exit rule, the milestone or the journey's end takes it."));
    }
    if (this.readOnly) return;
    const list = this.listAt(parts.slice(0, -1));
    const k = parts[parts.length - 1];
    f.append(h("div", { class: "inspector-actions" },
      h("button", { type: "button", class: "small", disabled: k === 0, onclick: () => this.shift(parts, -1) }, "Move up"),
      h("button", { type: "button", class: "small", disabled: k === list.length - 1, onclick: () => this.shift(parts, 1) }, "Move down"),
      h("button", { type: "button", class: "small", onclick: () => {
        this.moving = this.moving ? null : parts;
        this.renderCanvas();
        this.renderInspector();
      } }, this.moving ? "Cancel move" : "Move to…"),
      h("button", { type: "button", class: "small danger", onclick: () => { this.confirming = path; this.renderInspector(); } }, "Delete step")));
    if (this.moving) f.append(h("p", { class: "muted small" }, "Pick a “Move here” point on the canvas."));
    if (this.confirming === path) {
      const n = countSteps(forks(step).flatMap((x) => at(step, x.key) || []));
      f.append(h("div", { class: "confirm", role: "alertdialog", "data-testid": "confirm-delete" },
        h("span", {}, n ? `Delete ${step.id} and the ${n} step${n === 1 ? "" : "s"} on its paths?` : `Delete ${step.id}?`),
        h("button", { type: "button", class: "danger", onclick: () => this.removeStep(parts) }, "Delete"),
        h("button", { type: "button", class: "ghost", onclick: () => { this.confirming = null; this.renderInspector(); } }, "Cancel")));
    }
  }

  waitFields(step, path, add) {
    const kind = step.until !== undefined ? "until" : step.time_of_day !== undefined ? "time_of_day" : "duration";
    add(h("label", { class: "field" }, h("span", {}, "Wait"), h("select", { "data-path": `${path}.kind`, onchange: (e) => {
      for (const key of ["duration", "until", "time_of_day", "days", "timezone_attribute"]) delete step[key];
      if (e.target.value === "duration") step.duration = "P1D";
      if (e.target.value === "until") step.until = new Date(Date.now() + 86_400_000).toISOString().slice(0, 16) + ":00Z";
      if (e.target.value === "time_of_day") step.time_of_day = "09:00";
      this.changed(`${path}.kind`, { structure: true });
    } }, [["duration", "for a time"], ["until", "until a moment"], ["time_of_day", "until a time of day"]].map(([v, t]) =>
      h("option", { value: v, selected: v === kind }, t)))));
    if (kind === "duration") add(this.text("Duration", step, "duration", `${path}.duration`, { hint: "duration", placeholder: "P1D, PT3H" }));
    if (kind === "until") {
      add(h("label", { class: "field" }, h("span", {}, "Until (UTC)"), h("input", { type: "datetime-local", "data-path": `${path}.until`,
        value: String(step.until || "").slice(0, 16), oninput: (e) => { step.until = e.target.value ? `${e.target.value}:00Z` : ""; this.changed(`${path}.until`); } })));
    }
    if (kind === "time_of_day") {
      add(this.text("Time of day", step, "time_of_day", `${path}.time_of_day`, { type: "time" }),
        h("fieldset", { "data-path": `${path}.days` }, h("legend", {}, "On days (none: any day)"),
          DAYS.map((d) => h("label", { class: "check" }, h("input", { type: "checkbox", checked: (step.days || []).includes(d), onchange: (e) => {
            const days = new Set(step.days || []);
            if (e.target.checked) days.add(d); else days.delete(d);
            if (days.size) step.days = DAYS.filter((x) => days.has(x)); else delete step.days;
            this.changed(`${path}.days`);
          } }), d))),
        this.text("Timezone attribute", step, "timezone_attribute", `${path}.timezone_attribute`, { optional: true, placeholder: "timezone" }));
    }
  }

  activationFields(step, path, add) {
    add(h("label", { class: "field" }, h("span", {}, "Channel"), h("select", { "data-path": `${path}.channel`, onchange: (e) => {
      step.channel = e.target.value;
      if (RECIPIENT[step.channel]) step.to_attribute = RECIPIENT[step.channel]; else delete step.to_attribute;
      this.changed(`${path}.channel`, { structure: true });
    } }, CHANNELS.map((c) => h("option", { value: c, selected: c === step.channel }, c)))));
    const connectors = this.catalog.connectors.filter((c) => CONNECTOR_CHANNEL[c.type] === step.channel || c.id === step.connector_id);
    add(h("label", { class: "field" }, h("span", {}, "Connector"), h("select", { "data-path": `${path}.connector_id`, onchange: (e) => {
      step.connector_id = e.target.value;
      this.changed(`${path}.connector_id`, { structure: true });
    } }, connectors.some((c) => c.id === step.connector_id) ? null : h("option", { value: step.connector_id || "", selected: true }, step.connector_id ? `${step.connector_id} (unknown)` : "(choose a connector)"),
    connectors.map((c) => h("option", { value: c.id, selected: c.id === step.connector_id }, `${c.name} · ${c.type}${c.status ? ` · ${c.status}` : ""}`)))));
    const templates = this.catalog.templates.filter((t) => t.channel === step.channel || t.id === step.template_id);
    const chosen = this.catalog.templates.find((t) => t.id === step.template_id);
    add(h("label", { class: "field" }, h("span", {}, "Template"), h("select", { "data-path": `${path}.template_id`, onchange: (e) => {
      step.template_id = e.target.value;
      this.changed(`${path}.template_id`, { structure: true });
    } }, chosen ? null : h("option", { value: step.template_id || "", selected: true }, step.template_id ? `${step.template_id} (unknown)` : "(choose a template)"),
    templates.map((t) => h("option", { value: t.id, selected: t.id === step.template_id }, `${t.name} · ${t.status}`)))));
    if (chosen && chosen.status !== "ready") add(h("p", { class: "warn small", "data-testid": "draft-template" }, `Template ${chosen.name} is a ${chosen.status}: it must be ready before the journey is published.`));
    if (RECIPIENT[step.channel] || step.to_attribute !== undefined) {
      add(this.text("Recipient attribute", step, "to_attribute", `${path}.to_attribute`, { optional: true, placeholder: RECIPIENT[step.channel] || "" }));
    }
  }

  splitFields(step, path, add) {
    if (step.mode === "attribute") {
      (step.cases || []).forEach((c, i) => {
        add(this.criteria(c.criteria, `${path}.cases[${i}].criteria`, `Case ${i + 1}`),
          h("button", { type: "button", class: "small ghost", onclick: () => {
            step.cases.splice(i, 1);
            this.changed(`${path}.cases`, { structure: true });
          } }, `Remove case ${i + 1} (${countSteps(c.steps)} steps)`));
      });
      add(h("button", { type: "button", class: "small", onclick: () => {
        (step.cases ||= []).push({ criteria: { profile: [{ attribute: "", op: "eq", value: "" }] }, steps: [] });
        this.changed(`${path}.cases`, { structure: true });
      } }, "Add case"), h("p", { class: "muted small" }, "A profile takes the first case it matches, else the default path."));
      return;
    }
    (step.paths || []).forEach((p, i) => {
      const row = this.text(`Path ${i + 1} %`, p, "percent", `${path}.paths[${i}].percent`, { type: "number", number: true,
        hint: (p.steps || []).length ? "" : "no steps: a holdout" });
      row.append(h("button", { type: "button", class: "small ghost", onclick: () => {
        step.paths.splice(i, 1);
        this.changed(`${path}.paths`, { structure: true });
      } }, "Remove"));
      add(row);
    });
    const total = (step.paths || []).reduce((n, p) => n + (Number(p.percent) || 0), 0);
    add(h("p", { class: total === 100 ? "muted small" : "warn small" }, `Total ${total}% (must be 100%)`),
      h("button", { type: "button", class: "small", onclick: () => {
        (step.paths ||= []).push({ percent: 0, steps: [] });
        this.changed(`${path}.paths`, { structure: true });
      } }, "Add path"));
  }

  jumpFields(step, parts, add) {
    const path = pathText(parts);
    const others = this.catalog.journeys.filter((j) => !this.journey || j.id !== this.journey.id);
    add(h("label", { class: "field" }, h("span", {}, "To journey"), h("select", { "data-path": `${path}.journey_id`, onchange: (e) => {
      if (e.target.value) step.journey_id = e.target.value; else delete step.journey_id;
      const target = e.target.value ? others.find((j) => j.id === e.target.value) : null;
      step.stage = target ? target.stages?.[0]?.name || "" : this.body.stages[parts[1] + 1]?.name || "";
      this.changed(`${path}.journey_id`, { structure: true });
    } }, h("option", { value: "" }, "this journey (a later stage)"),
    others.map((j) => h("option", { value: j.id, selected: j.id === step.journey_id }, `${j.name} · ${j.status}`)))));
    const target = step.journey_id ? others.find((j) => j.id === step.journey_id) : null;
    const stages = target ? (target.stages || []).map((s) => s.name) : this.body.stages.slice(parts[1] + 1).map((s) => s.name);
    const options = [...new Set([...stages, ...(step.stage ? [step.stage] : [])])];
    add(h("label", { class: "field" }, h("span", {}, "Stage"), h("select", { "data-path": `${path}.stage`, onchange: (e) => {
      step.stage = e.target.value;
      this.changed(`${path}.stage`, { structure: true });
    } }, step.stage ? null : h("option", { value: "", selected: true }, "(choose a stage)"),
    options.map((n) => h("option", { value: n, selected: n === step.stage }, n)))));
  }

  // -- simulation -----------------------------------------------------------------------

  // Runs the draft as it is now on sample events (the simulator stores and sends nothing);
  // the chosen profile's steps are outlined on the canvas.
  async simulate() {
    clear(this.simBox);
    this.simBox.hidden = false;
    this.visited = null;
    let report;
    try {
      report = await post(paths.simulate, { journey: this.body, events: sampleEvents(this.body), profiles: SAMPLE_PROFILES });
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      this.simBox.append(problemBox(error, this.ctx.role, "run simulations"));
      return;
    }
    const show = (profile) => {
      this.visited = new Set(profile.path.map((e) => e.step_id).filter(Boolean));
      this.renderCanvas();
      for (const b of this.simBox.querySelectorAll("[data-profile]")) b.setAttribute("aria-pressed", String(b.dataset.profile === profile.profile_id));
    };
    this.simBox.append(h("div", { class: "card-head" }, h("h2", {}, "Simulation"),
      h("button", { type: "button", class: "small ghost", onclick: () => { this.simBox.hidden = true; this.visited = null; this.renderCanvas(); } }, "Close")),
    h("p", { class: "muted small" }, `Sample events: ${sampleEvents(this.body).map((e) => `${e.profile_id} ${e.name}`).join(", ")}. Waits pass at once; nothing is stored or sent.`),
    report.profiles.length ? h("div", { class: "sim-list" }, report.profiles.map((p) => h("button", { type: "button", class: "small", "data-profile": p.profile_id,
      onclick: () => show(p) }, `${p.profile_id} · ${p.outcome} · ${p.path.filter((e) => e.step_id).length} step(s)`)))
      : h("p", { class: "empty" }, "No profile entered the journey."),
    h("p", { class: "muted small" }, `${report.activations.length} message(s) would be sent.`));
    if (report.profiles.length) show(report.profiles[0]);
  }

  // -- saving and publishing ------------------------------------------------------------

  async save() {
    if (this.readOnly) return null;
    clear(this.message);
    const text = this.snapshot;
    try {
      const saved = this.journey ? await api("PUT", paths.journey(this.journey.id), this.body) : await post(paths.journeys, this.body);
      this.journey = saved;
      this.saved = text;
      if (!location.hash.endsWith(`/${encodeURIComponent(saved.id)}`)) this.ctx.replaceHash(`#/edit/${encodeURIComponent(saved.id)}`);
      this.renderHead();
      this.message.append(h("p", { class: "ok", "data-testid": "saved" }, `Draft v${saved.version} saved.`));
      return saved;
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      this.message.append(editorRefusal(error, this.ctx.role, this.journey ? "change this journey" : "create journeys"));
      return null;
    }
  }

  async publish() {
    if (this.dirty || !this.journey) {
      if (!(await this.save())) return;
    }
    const live = this.journey.live_version ? await get(paths.version(this.journey.id, this.journey.live_version)) : null;
    publishDialog(this.root, { ctx: this.ctx, journey: this.journey, draft: this.body, live: live ? bodyOf(live) : null, liveStatus: live?.status,
      done: () => { this.saved = this.snapshot; location.hash = `#/journeys/${encodeURIComponent(this.journey.id)}`; },
      refusal: (error, what) => editorRefusal(error, this.ctx.role, what) });
  }
}

function safeSummary(step, names) {
  try {
    return summary(step, names);
  } catch {
    return "";
  }
}

function durationHint(value) {
  if (!value) return "ISO 8601, e.g. P1D, PT3H";
  const read = fmtDuration(value);
  return read === value ? "not an ISO 8601 duration?" : `= ${read}`;
}

export { BUILTIN_EVENTS };
