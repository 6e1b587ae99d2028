// Requests Studio makes to the server it is served by, and the timings a bench can read.

/** The server root, from /studio/. */
export const base = new URL("..", new URL("./", location.href));

/** An Error carrying the server's MLflow-format message (`{error_code, message}`). */
async function failure(res) {
  let message = `HTTP ${res.status}`;
  try {
    const body = await res.json();
    message = body.message || message;
  } catch (_) { /* not JSON */ }
  return new Error(message);
}

/** POST a SQL query; resolves to the Response in the format `accept` asks for. */
export async function postSql(query, accept) {
  const res = await fetch(new URL("api/2.0/quiver/sql", base), {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: accept },
    body: JSON.stringify({ query }),
  });
  if (!res.ok) throw await failure(res);
  return res;
}

/** The rows of a SQL query, as objects. */
export async function sqlRows(query) {
  return (await (await postSql(query, "application/json")).json()).rows;
}

/** A SQL string literal. */
export const literal = (s) => `'${String(s).replace(/'/g, "''")}'`;

/** GET an API path with query parameters (arrays repeat the name); resolves to the JSON. */
export async function getJson(path, params = {}) {
  const url = new URL(path, base);
  for (const [k, v] of Object.entries(params)) {
    for (const one of Array.isArray(v) ? v : [v]) if (one !== undefined && one !== null) url.searchParams.append(k, one);
  }
  const res = await fetch(url);
  if (!res.ok) throw await failure(res);
  return res.json();
}

/** POST JSON to an API path; resolves to the JSON answer. */
export async function postJson(path, body) {
  const res = await fetch(new URL(path, base), {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  if (!res.ok) throw await failure(res);
  return res.json();
}

/** Records a timing (`window.studioTimings`, read by benches/browser) and a performance mark. */
export function timing(what, ms) {
  (window.studioTimings ??= []).push({ what, ms });
  performance.mark(`studio:${what}`);
}
