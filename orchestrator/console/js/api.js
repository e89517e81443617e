// The orchestrator's API (`/v1/…`, described at /v1/openapi.json) and its live feed (`/v1/feed`,
// a WebSocket of JSON events). Same origin: the console is served by the service it shows.

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** GETs a JSON document; a non-2xx answer throws an ApiError with the service's message. */
export async function get(path, { headers } = {}) {
  let r;
  try {
    r = await fetch(path, { headers: { accept: 'application/json', ...headers }, cache: 'no-store' });
  } catch (e) {
    throw new ApiError(0, `the orchestrator did not answer (${e.message})`);
  }
  const body = await r.json().catch(() => null);
  if (!r.ok) throw new ApiError(r.status, (body && body.error) || `${r.status} ${r.statusText}`);
  return body;
}

/** Every feed's state, for the header's indicator: 'connecting', 'live' or 'reconnecting'. */
export const feedState = new EventTarget();

function announce(state) {
  document.documentElement.dataset.feed = state;
  feedState.dispatchEvent(new CustomEvent('change', { detail: state }));
}

/**
 * One subscription to the feed. `query` narrows it (`order=…`, `worker=…`, the buyer's
 * `logs=…&unix_ms=…&signature=…`). `onEvent(event)` gets each event; `onOpen()` runs on every
 * (re)connection, so a page can read again what it may have missed. It reconnects with backoff
 * until `close()`.
 */
export class Feed {
  constructor(query, { onEvent, onOpen, onRefused } = {}) {
    this.query = query;
    this.onEvent = onEvent || (() => {});
    this.onOpen = onOpen || (() => {});
    // Called instead of reconnecting when a connection is refused before it opens (a signed
    // subscription whose signature expired); without it, it reconnects.
    this.onRefused = onRefused;
    this.closed = false;
    this.backoff = 250;
    this.received = 0;
    this.connect();
  }

  connect() {
    if (this.closed) return;
    announce(this.received ? 'reconnecting' : 'connecting');
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const q = this.query ? `?${this.query}` : '';
    const ws = new WebSocket(`${scheme}://${location.host}/v1/feed${q}`);
    this.ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      this.backoff = 250;
      announce('live');
      this.onOpen();
    };
    ws.onmessage = (m) => {
      let event;
      try {
        event = JSON.parse(m.data);
      } catch {
        return;
      }
      this.received += 1;
      this.onEvent(event);
    };
    ws.onclose = () => {
      if (this.closed || this.ws !== ws) return;
      if (!opened && this.onRefused) {
        this.closed = true;
        this.onRefused();
        return;
      }
      announce('reconnecting');
      setTimeout(() => this.connect(), this.backoff);
      this.backoff = Math.min(this.backoff * 2, 5000);
    };
  }

  close() {
    this.closed = true;
    const ws = this.ws;
    if (!ws) return;
    // Closing a socket still connecting makes the browser report a failed connection: let it
    // open, then close it.
    if (ws.readyState === WebSocket.CONNECTING) {
      ws.onopen = () => ws.close();
      ws.onmessage = null;
    } else {
      ws.close();
    }
  }
}
