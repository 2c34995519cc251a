// The public /v1 API with the key kept in sessionStorage; errors carry the problem+json body.
const KEY = "waypost.console.key";

export function storedKey() {
  return sessionStorage.getItem(KEY);
}

export function storeKey(key) {
  sessionStorage.setItem(KEY, key);
}

export function forgetKey() {
  sessionStorage.removeItem(KEY);
}

export class ApiError extends Error {
  constructor(status, problem, method, path) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
    this.method = method;
    this.path = path;
  }
}

export async function api(method, path, body, key = storedKey()) {
  const headers = { Accept: "application/json" };
  if (key) headers.Authorization = `Bearer ${key}`;
  const init = { method, headers, cache: "no-store", credentials: "omit", referrerPolicy: "no-referrer" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, { title: "Network error", detail: "the gateway could not be reached" }, method, path);
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = { detail: text.slice(0, 200) };
    }
  }
  if (!response.ok) {
    const error = new ApiError(response.status, data, method, path);
    if (response.status === 401) window.dispatchEvent(new CustomEvent("waypost:unauthorized", { detail: error }));
    throw error;
  }
  return data;
}

export const get = (path) => api("GET", path);
export const post = (path, body) => api("POST", path, body);

export function query(params) {
  const q = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") q.set(name, value);
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}

// Every item of a paginated list, at most `pages` pages.
export async function all(path, pages = 20) {
  const items = [];
  let cursor = null;
  for (let i = 0; i < pages; i += 1) {
    const sep = path.includes("?") ? "&" : "?";
    const page = await get(`${path}${sep}limit=500${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
    items.push(...page.items);
    cursor = page.next_cursor;
    if (!cursor) break;
  }
  return items;
}

const enc = encodeURIComponent;
export const paths = {
  me: "/v1/me",
  folders: "/v1/folders",
  journeys: "/v1/journeys",
  templates: "/v1/templates",
  connectors: "/v1/connectors",
  triggers: "/v1/event-triggers",
  validate: "/v1/journeys/validate",
  migratePreview: (id) => `/v1/journeys/${enc(id)}/publish/preview`,
  journey: (id) => `/v1/journeys/${enc(id)}`,
  version: (id, n) => `/v1/journeys/${enc(id)}/versions/${enc(n)}`,
  analytics: (id, version) => `/v1/journeys/${enc(id)}/analytics${query({ version })}`,
  journeyProfiles: (id, state) => `/v1/journeys/${enc(id)}/profiles${query({ state, limit: 50 })}`,
  action: (id, action) => `/v1/journeys/${enc(id)}/${action}`,
  simulate: "/v1/journeys/simulate",
  profile: (id) => `/v1/profiles/${enc(id)}`,
  timeline: (id, cursor) => `/v1/profiles/${enc(id)}/timeline${query({ limit: 100, cursor })}`,
  explain: (id, journeyId) => `/v1/profiles/${enc(id)}/explain${query({ journey_id: journeyId })}`,
  deliveries: (filters) => `/v1/deliveries${query(filters)}`,
};

// What each role may do, as the gateway's route table decides (README: Using the API).
const READERS = ["admin", "editor", "viewer"];
const WRITERS = ["admin", "editor"];
export const may = {
  readJourneys: (role) => READERS.includes(role),
  changeJourneys: (role) => WRITERS.includes(role),
  listJourneyProfiles: (role) => WRITERS.includes(role),
  simulate: (role) => WRITERS.includes(role),
  readProfiles: (role) => READERS.includes(role),
  readDeliveries: (role) => READERS.includes(role),
};
