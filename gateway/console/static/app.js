// The console shell: sign in with a key, ask the gateway who it is, route between pages.
import { ApiError, api, forgetKey, paths, storeKey, storedKey } from "./api.js";
import { renderDeliveries } from "./deliveries.js";
import { renderEditor } from "./editor.js";
import { renderJourney, renderJourneys } from "./journeys.js";
import { renderProfile } from "./profiles.js";
import { renderSimulate } from "./simulate.js";
import { clear, h, problemBox } from "./ui.js";

const $ = (id) => document.getElementById(id);
let me = null;
let cleanup = null;
// A page with unsaved work may hold the visitor back: `leave()` answers whether to go.
let leave = null;
let shownHash = null;
let restoring = false;

const ROUTES = [
  [/^\/journeys\/([^/]+)$/, renderJourney, "journeys"],
  [/^\/edit(?:\/([^/]+))?$/, renderEditor, "journeys"],
  [/^\/journeys$/, renderJourneys, "journeys"],
  [/^\/profiles(?:\/(.+))?$/, renderProfile, "profiles"],
  [/^\/deliveries$/, renderDeliveries, "deliveries"],
  [/^\/simulate(?:\/([^/]+))?$/, renderSimulate, "simulate"],
];

function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "/journeys";
  const [path, search = ""] = raw.split("?");
  return { path, params: new URLSearchParams(search) };
}

function decodePart(part) {
  try {
    return part ? decodeURIComponent(part) : part;
  } catch {
    return part;  // a malformed escape is taken as written
  }
}

function route() {
  if (!me) return;
  if (restoring) {
    restoring = false;
    return;
  }
  if (leave && location.hash !== shownHash && !leave()) {
    restoring = true;
    location.hash = shownHash;
    return;
  }
  leave = null;
  shownHash = location.hash;
  if (cleanup) cleanup();
  cleanup = null;
  const { path, params } = parseHash();
  const found = ROUTES.find(([pattern]) => pattern.test(path));
  if (!found) {
    location.hash = "#/journeys";
    return;
  }
  // Each visit renders into its own element: a slower earlier visit can no longer show.
  const page = h("div", { class: "view" });
  clear($("page")).append(page);
  const [pattern, render, name] = found;
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.page === name);
  const match = pattern.exec(path).slice(1).map(decodePart);
  const timers = [];
  let alive = true;
  const ctx = {
    me,
    role: me.role,
    params,
    reload: route,
    every(ms, fn) {
      if (alive) timers.push(setInterval(fn, ms));
    },
    // The address of this page changes without showing it again (a new journey once saved).
    replaceHash(hash) {
      history.replaceState(null, "", hash);
      shownHash = location.hash;
    },
    onLeave(ask, teardown) {
      if (!alive) return;
      leave = ask;
      teardowns.push(teardown);
    },
  };
  const teardowns = [];
  cleanup = () => {
    alive = false;
    timers.forEach(clearInterval);
    teardowns.forEach((fn) => fn());
    leave = null;
  };
  Promise.resolve(render(page, ctx, ...match)).catch((error) => {
    if (error instanceof ApiError) page.append(problemBox(error, me.role));
    else page.append(h("div", { class: "problem", role: "alert" }, h("strong", {}, "Something went wrong"), h("p", {}, String(error))));
  });
}

function showSignIn(message) {
  me = null;
  if (cleanup) cleanup();
  cleanup = null;
  $("page").hidden = true;
  $("nav").hidden = true;
  $("who").hidden = true;
  $("sign-in").hidden = false;
  const error = $("sign-in-error");
  error.hidden = !message;
  error.textContent = message || "";
  $("api-key").focus();
}

function showConsole(who) {
  me = who;
  $("sign-in").hidden = true;
  $("page").hidden = false;
  $("nav").hidden = false;
  $("who").hidden = false;
  $("who-role").textContent = who.role;
  $("who-role").className = `role role-${who.role}`;
  $("who-workspace").textContent = `workspace ${who.workspace_id.slice(0, 8)}${who.folder_ids.length ? ` · ${who.folder_ids.length} folder grant(s)` : ""}`;
  $("who-workspace").title = who.workspace_id;
  $("who-clock").hidden = who.clock !== "virtual";
  route();
}

async function signIn(key) {
  try {
    const who = await api("GET", paths.me, undefined, key);
    storeKey(key);
    showConsole(who);
  } catch (error) {
    forgetKey();
    const reason = error.status === 401 ? "This key is unknown or has been revoked."
      : error.problem?.detail || error.message;
    showSignIn(reason);
  }
}

function start() {
  $("sign-in-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("api-key");
    const key = input.value.trim();
    input.value = "";
    if (key) signIn(key);
  });
  $("sign-out").addEventListener("click", () => {
    forgetKey();
    showSignIn("Signed out.");
  });
  window.addEventListener("waypost:unauthorized", () => {
    forgetKey();
    showSignIn("The key was refused (unknown or revoked). Sign in again.");
  });
  window.addEventListener("hashchange", route);
  const key = storedKey();
  if (key) signIn(key);
  else showSignIn();
}

start();
