// The API, called from the browser: same origin, with the operator's Keystone token when
// one was given (kept in sessionStorage, so it goes with the tab).

const TOKEN_KEY = "amphorae.dashboard.token";
// The page is served at <API root>/dashboard/.
const ROOT = new URL("../", document.baseURI);

export function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// The sentence an error body carries: Octavia's faultstring, pecan's description,
// keystonemiddleware's error.message.
function detail(data, text) {
  return (data && (data.faultstring || data.description || data.error?.message))
    || text.slice(0, 200) || "request failed";
}

export async function call(method, path, body) {
  const headers = { Accept: "application/json" };
  if (token()) headers["X-Auth-Token"] = token();
  const init = { method, headers, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(new URL(path.replace(/^\//, ""), ROOT), init);
  const text = await resp.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!resp.ok) throw new ApiError(resp.status, `${resp.status}: ${detail(data, text)}`);
  return data;
}

export const get = (path) => call("GET", path);
export const put = (path, body) => call("PUT", path, body);
