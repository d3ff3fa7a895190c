// Build the front-end pages into web/dist: one ES-module bundle per page (the SDK and the
// page's code together, minified), the proof-of-work Web Worker, and the static files
// (HTML, CSS, images) copied as they are.
//
// Why a bundle per page and no code splitting: each page then loads exactly two files of
// its own origin (its HTML and its script), which keeps the Content-Security-Policy at
// `script-src 'self'` with nothing inline, and a page never fetches code it does not run.
//
// Usage: node scripts/build-pages.mjs [--out DIR]   (npm run build:pages)
import { build } from "esbuild";
import { copyFile, mkdir, readdir, rm } from "node:fs/promises";
import { existsSync } from "node:fs";
import { dirname, extname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const WEB = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const PAGES = join(WEB, "pages");
const STATIC = new Set([".html", ".css", ".svg", ".png", ".ico", ".txt", ".webmanifest"]);

const args = process.argv.slice(2);
const outAt = args.indexOf("--out");
const OUT = outAt >= 0 ? resolve(args[outAt + 1]) : join(WEB, "dist");

/** Page entry points: every top-level web/pages/*.ts, plus the PoW worker if present. */
async function entries() {
  const names = (await readdir(PAGES)).filter((n) => n.endsWith(".ts") && !n.endsWith(".d.ts"));
  const points = Object.fromEntries(names.map((n) => [n.slice(0, -3), join(PAGES, n)]));
  const worker = join(WEB, "sdk", "src", "pow-worker.ts");
  if (existsSync(worker)) points["pow-worker"] = worker;
  return points;
}

await rm(OUT, { recursive: true, force: true });
await mkdir(OUT, { recursive: true });
await build({
  entryPoints: await entries(),
  outdir: OUT,
  bundle: true,
  format: "esm",
  platform: "browser",
  target: ["es2022"],
  minify: true,
  legalComments: "none",
  logLevel: "warning",
});
for (const name of await readdir(PAGES)) {
  if (STATIC.has(extname(name))) await copyFile(join(PAGES, name), join(OUT, name));
}
