// Wires web/pages/quick-exit.js as a page would; the hook records that it ran.
import { installQuickExit } from "./quick-exit.js";

const config = await (await fetch("/config.json")).json();
const ws = new WebSocket(config.relay_url);
await new Promise((resolve) => { ws.onopen = resolve; ws.onerror = resolve; });
installQuickExit(document.getElementById("quick-exit"), () => config.quick_exit_url, () => ws.close());
document.body.dataset.ready = "1";
