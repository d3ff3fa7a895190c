/** The landing page: links to the pages, and Quick Exit like every other page. */
import { loadConfig, quickExitFor, type PageConfig } from "./lib/app.js";

let config: PageConfig | null = null;
quickExitFor(() => config, () => null);
loadConfig().then((c) => (config = c), () => undefined);
