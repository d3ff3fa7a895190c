// Loaded as a module from the page's origin: allowed. Reports into data-* attributes.
const out = document.body.dataset;
out.module = "ran";
const config = await (await fetch("/config.json")).json();
out.config = config.relay_key;
try {
  await fetch("http://127.0.0.2:9/forbidden");
  out.foreign = "reached";
} catch {
  out.foreign = "blocked";
}
out.ws = await new Promise((resolve) => {
  const ws = new WebSocket(config.relay_url);
  ws.onopen = () => { ws.close(); resolve("open"); };
  ws.onerror = () => resolve("error");
});
out.done = "1";
