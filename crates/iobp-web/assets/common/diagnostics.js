// What a page records for tests and for debugging from the browser console, as
// `window.IOBP`: unexpected script errors, the last notices shown, how many server-sent
// events of each kind arrived, and `safeNext` (set by api.js) so that tests can check it.
// Nothing in the pages reads it back.

export const diagnostics = {
  /** Unexpected script errors, oldest first. */
  errors: [],
  /** The last 50 notices shown (`kind: message`). */
  notices: [],
  /** Server-sent events received, by event name. */
  eventCounts: {},
};

window.IOBP = diagnostics;
