// Shared by the demo pages: the connection token, and saying so when the hub refuses one.
//
// `wsend serve --jwt-secret ...` (or --jwt-public-key) requires a token from every connection:
// open a page with ?token=JWT in its address. The token is kept for the tab (sessionStorage)
// and removed from the address bar, so that links copied from it don't carry it.

const KEY = "wsend-token";

/** Client options for a demo page: its token, a reconnection backoff capped at 5 s (a demo
 * server restarted on a laptop should be back quickly; wsend.js defaults to 20 s), and
 * `extra` (e.g. the display name). */
export function clientOptions(extra = {}) {
  return { token: pageToken(), maxDelay: 5000, ...extra };
}

/** The connection token given to this tab with ?token=..., or undefined. */
export function pageToken() {
  const url = new URL(location.href);
  const given = url.searchParams.get("token");
  if (given) {
    sessionStorage.setItem(KEY, given);
    url.searchParams.delete("token");
    history.replaceState(history.state, "", url);
  }
  return sessionStorage.getItem(KEY) || undefined;
}

/** Show a bar at the top of the page when the hub refuses this page's token (or its lack). */
export function explainRefusals(client) {
  client.on("error", (err) => {
    if (err?.code === 101 || err?.code === 109) showRefusal(err.code === 109, err.message);
  });
}

/** The bar saying why the server refused this page: no token, an expired or a refused one. */
export function showRefusal(expired, reason) {
  const bar = document.getElementById("refusal") ?? document.createElement("div");
  bar.id = "refusal";
  bar.className = "refusal";
  bar.setAttribute("role", "alert");
  const token = sessionStorage.getItem(KEY);
  bar.textContent = !token
    ? "This server requires a sign-in token: open this page with ?token=<JWT> in its address."
    : expired
      ? "Your token has expired: open this page with a new ?token=<JWT>."
      : `The server refused your token (${reason}): open this page with another ?token=<JWT>.`;
  document.body.prepend(bar);
}
