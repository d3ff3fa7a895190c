// Quick Exit for every Haven page: a button and Esc pressed twice leave at once.
//
// Why each step: the page's content is removed first (nothing left to glimpse while the
// next page loads), the caller's hook drops the connection (nothing keeps running), and
// location.replace() swaps this page's history entry for a neutral address, so Back
// does not return here. No storage is used by the pages; it is cleared anyway in case a
// browser extension or a future change wrote something.

/** Milliseconds within which a second Esc counts as "Esc twice". */
export const ESC_WINDOW_MS = 1500;

/**
 * Leave now: clear the page, run `onExit` (drop connections), go to `url`.
 * @param {string} url neutral address from /config.json (quick_exit_url)
 * @param {() => void} [onExit] closes the SDK connection; errors are ignored
 */
export function quickExit(url, onExit) {
  try {
    onExit?.();
  } catch {
    // Leaving matters more than a clean close.
  }
  document.title = "";
  document.documentElement.replaceChildren(document.createElement("body"));
  try {
    localStorage.clear();
    sessionStorage.clear();
  } catch {
    // Storage may be disabled: nothing to clear then.
  }
  location.replace(url);
}

/**
 * Wire the Quick Exit button and Esc-twice on this page.
 * @param {HTMLElement} button the page's Quick Exit button
 * @param {() => string} url returns the quick_exit_url (known once /config.json is read)
 * @param {() => void} [onExit] closes the connection
 */
export function installQuickExit(button, url, onExit) {
  button.addEventListener("click", (event) => {
    event.preventDefault();
    quickExit(url(), onExit);
  });
  let lastEsc = -Infinity;
  document.addEventListener("keydown", (event) => {
    if (event.key !== "Escape") return;
    const now = performance.now();
    if (now - lastEsc <= ESC_WINDOW_MS) {
      quickExit(url(), onExit);
    }
    lastEsc = now;
  });
}
