// What every page of the dashboard must be: served with a strict Content-Security-Policy,
// loading nothing from another origin, free of script errors and policy violations, and
// without serious accessibility findings. `watch` records breaches as they happen in a
// browser context; `checkPage` reports them, audits the page and takes its screenshot.

import { mkdir } from "node:fs/promises";
import path from "node:path";

import { audit, describe } from "./axe.mjs";
import { check, fail, note } from "./steps.mjs";

/** What `script-src` of a `content-security-policy` value is wrong with, or null. */
export function scriptSrcProblem(policy) {
  if (!policy) return "no content-security-policy header";
  const directive = policy
    .split(";")
    .map((part) => part.trim().split(/\s+/))
    .find(([name]) => name.toLowerCase() === "script-src");
  if (!directive) return `no script-src in "${policy}"`;
  const sources = directive.slice(1);
  if (!sources.includes("'self'")) return `script-src without 'self': "${policy}"`;
  if (sources.includes("'unsafe-inline'")) return `script-src allows 'unsafe-inline': "${policy}"`;
  return null;
}

/** Breaches seen in the contexts being watched, drained by each `checkPage`. */
const breaches = [];

/** Records, for every request of `context`: another origin, or a control-plane response
 * without the policy; and every script error or policy violation its pages report. */
export function watch(context, origin, label) {
  context.on("request", (request) => {
    const url = request.url();
    if (url.startsWith("data:") || url.startsWith("about:")) return;
    if (new URL(url).origin !== origin) {
      breaches.push(`[${label}] a request to another origin: ${request.method()} ${url}`);
    }
  });
  context.on("response", (response) => {
    const url = response.url();
    if (!url.startsWith(origin)) return;
    const problem = scriptSrcProblem(response.headers()["content-security-policy"]);
    if (problem) breaches.push(`[${label}] ${response.status()} ${url}: ${problem}`);
  });
  context.on("page", (page) => followPage(page, label));
}

function followPage(page, label) {
  page.on("pageerror", (error) => breaches.push(`[${label}] script error on ${page.url()}: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() !== "error") return;
    const text = message.text();
    if (/Content Security Policy/i.test(text)) {
      breaches.push(`[${label}] policy violation on ${page.url()}: ${text}`);
    }
  });
}

/** Fails with every breach recorded since the last call. */
export function reportBreaches() {
  const found = breaches.splice(0);
  if (found.length) fail(`the pages broke their rules:\n  ${found.join("\n  ")}`);
}

/** The checks every visited page gets: the breaches so far, axe, and a full-page screenshot
 * `<SCREENSHOT_DIR>/<name>.png`. */
export async function checkPage(page, name, screenshotDir) {
  reportBreaches();
  const { failing, minor } = await audit(page);
  await mkdir(screenshotDir, { recursive: true });
  const file = path.join(screenshotDir, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  const lesser = minor ? `, ${minor} minor/moderate finding(s) not failing` : "";
  note(`page "${name}" (${new URL(page.url()).pathname}): axe ${failing.length ? "FAILED" : "ok"}${lesser}; screenshot ${file}`);
  check(
    failing.length === 0,
    `axe found ${failing.length} serious/critical violation(s) on "${name}" (${page.url()}):\n${describe(failing)}`,
  );
}

/** The page's HTML as it stands, retried while a navigation replaces the document. */
export async function htmlNow(page) {
  for (let attempt = 0; ; attempt++) {
    try {
      await page.waitForLoadState("load");
      return await page.content();
    } catch (error) {
      if (attempt >= 20 || !/context was destroyed|navigating/i.test(error.message)) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}
