// The admin API as the dashboard calls it: the bearer token (this tab's sessionStorage only,
// never localStorage or a cookie, so no other tab, site or later session gets it and no
// request carries it unasked: CSRF has nothing to ride on), JSON calls that turn the server's
// {"error": {"code", "message"}} into an ApiError, and the live event feed.

const tokenKey = "stagegate.admin-token";

export function savedToken() {
  return sessionStorage.getItem(tokenKey) ?? "";
}

export function saveToken(token) {
  sessionStorage.setItem(tokenKey, token.trim());
}

export function forgetToken() {
  sessionStorage.removeItem(tokenKey);
}

// A refusal, carrying the server's own words: its message, then what each problem it listed
// was (a validation error names the field: "/percent: expected a number ...").
export class ApiError extends Error {
  constructor(status, code, message, problems = []) {
    const details = problems.map((p) => (p.path ? `${p.path}: ${p.message}` : p.message));
    super(details.length ? `${message}: ${details.join("; ")}` : message);
    this.status = status;
    this.code = code;
  }
}

function headers(extra) {
  const out = { ...extra };
  const token = savedToken();
  if (token) out.Authorization = `Bearer ${token}`;
  return out;
}

// One call; resolves to the parsed JSON answer, rejects with an ApiError.
export async function call(method, path, body) {
  const init = {
    method,
    headers: headers({ Accept: "application/json" }),
    cache: "no-store",
    credentials: "omit",
  };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, "unreachable", `the gateway did not answer (${e.message})`);
  }
  let data = null;
  try {
    data = await res.json();
  } catch {
    // Not JSON: the status line says enough below.
  }
  if (!res.ok) {
    const err = data?.error;
    throw new ApiError(res.status, err?.code ?? `http_${res.status}`,
                       err?.message ?? `${res.status} ${res.statusText}`,
                       Array.isArray(err?.problems) ? err.problems : []);
  }
  return data;
}

const sleep = (ms, signal) =>
  new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
  });

// Follows GET /api/v1/events (Server-Sent Events) until `signal` aborts. Read through fetch,
// because EventSource cannot send an Authorization header; reconnects after the server's
// `retry` with Last-Event-ID, so the server replays what fell between. onEvent(event) gets each
// event's JSON; onState("live" | "reconnecting" | "refused", message) tells the feed's health.
// A refused feed (401, 403) is not retried: the token has to change first.
export async function followEvents({ since = 0, onEvent, onState, signal }) {
  let lastId = since;
  let retryMs = 2000;
  while (!signal.aborted) {
    try {
      const extra = { Accept: "text/event-stream" };
      if (lastId > 0) extra["Last-Event-ID"] = String(lastId);
      const res = await fetch("/api/v1/events", {
        headers: headers(extra), cache: "no-store", credentials: "omit", signal,
      });
      if (!res.ok) {
        let message = `${res.status} ${res.statusText}`;
        try { message = (await res.json()).error.message; } catch { /* keep the status */ }
        onState("refused", message, res.status);
        if (res.status === 401 || res.status === 403) return;
      } else {
        onState("live");
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let cut;
          while ((cut = buffer.indexOf("\n\n")) >= 0) {
            const frame = parseFrame(buffer.slice(0, cut));
            buffer = buffer.slice(cut + 2);
            if (frame.retry) retryMs = frame.retry;
            if (frame.id) lastId = frame.id;
            if (frame.data) {
              let event = null;
              try { event = JSON.parse(frame.data); } catch { /* not an event: skip it */ }
              if (event) onEvent(event);
            }
          }
        }
      }
    } catch {
      if (signal.aborted) return;
    }
    onState("reconnecting");
    await sleep(retryMs, signal);
  }
}

// One SSE frame's fields (comments, such as the heartbeat, have none).
function parseFrame(text) {
  const frame = { data: "" };
  for (const line of text.split(/\r?\n/)) {
    if (line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "data") frame.data += (frame.data ? "\n" : "") + value;
    else if (field === "id" && /^\d+$/.test(value)) frame.id = Number(value);
    else if (field === "retry" && /^\d+$/.test(value)) frame.retry = Number(value);
  }
  return frame;
}
