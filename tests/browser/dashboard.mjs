// The dashboard in headless Chromium, against a real control plane and edge (started by
// tests/tests/e2e/dashboard.rs): the first owner sets up their account from the setup link,
// signs out and in, creates a key (copied once, never shown again), regenerates it with a
// grace period, revokes the old one, reads the audit log, manages a webhook endpoint
// (lib/webhooks.mjs), invites a viewer who can change nothing and revokes an invitation sent
// by mistake (lib/invitations.mjs). The edge is asked after each change. Every page visited is
// checked for its Content-Security-Policy, requests to other origins and axe findings, and
// screenshotted.
//
// Pages are found the way people find them: by their labels, roles and accessible names.
//
// Environment:
//   KEYPLANE_URL    the control plane, e.g. http://127.0.0.1:40123
//   EDGE_URL        an edge of that control plane
//   SETUP_LINK      the first owner's setup link, http://…/invitation#token=…
//   SCREENSHOT_DIR  where <page>.png go
//   EDGE_PATH       a path the edge forwards for a key holding KEY_SCOPE [/v1/docs/readme]
//   KEY_SCOPE       the scope ticked on the new key (offered by the form) [docs:read]
//   OWNER_EMAIL     the first owner's email [owner@example.com]
//   ADMIN_KEY       the organization's admin key (branding, portal links: the host's back end)
//   OTHER_ORG_KEY_ID  a key of another organization, which the portal must not show
//   WEBHOOK_URL     a receiver that answers 200 (the test origin), for the webhook steps
//   CHROMIUM        the browser [/usr/bin/chromium]
//
// Prints `page weight /keys: N bytes` (the first, uncached load of /keys and what it loads).
// Exits 1 with the failing step's name and the reason.

import { createRequire } from "node:module";

import { expectAtEdge, statusAtEdge } from "./lib/edge.mjs";
import { checkPage, htmlNow, reportBreaches, watch } from "./lib/pages.mjs";
import { invitationSteps } from "./lib/invitations.mjs";
import { portalSteps } from "./lib/portal.mjs";
import { check, note, step } from "./lib/steps.mjs";
import { webhookSteps } from "./lib/webhooks.mjs";

const require = createRequire(import.meta.url);
const { chromium } = require("playwright-core");

function required(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`dashboard.mjs: ${name} is not set`);
    process.exit(2);
  }
  return value;
}

const BASE = required("KEYPLANE_URL").replace(/\/$/, "");
const ORIGIN = new URL(BASE).origin;
const EDGE_URL = required("EDGE_URL");
const SETUP_LINK = required("SETUP_LINK");
const SHOTS = required("SCREENSHOT_DIR");
const EDGE_PATH = process.env.EDGE_PATH || "/v1/docs/readme";
const SCOPE = process.env.KEY_SCOPE || "docs:read";
const OWNER_EMAIL = process.env.OWNER_EMAIL || "owner@example.com";
const ADMIN_KEY = required("ADMIN_KEY");
const OTHER_ORG_KEY_ID = required("OTHER_ORG_KEY_ID");
const WEBHOOK_URL = required("WEBHOOK_URL");
const VIEWER_EMAIL = "viewer@example.com";
const PASSWORD = "correct horse battery staple";
const KEY_NAME = "Billing sync (browser test)";
const PROPAGATION_MS = 15_000;

const url = (path) => `${BASE}${path}`;
const pathOf = (page) => new URL(page.url()).pathname;

async function newContext(browser, label) {
  const context = await browser.newContext();
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: ORIGIN });
  context.setDefaultTimeout(10_000);
  context.setDefaultNavigationTimeout(15_000);
  watch(context, ORIGIN, label);
  return context;
}

/** The copy-once view: its key, copied with the "Copy" button and read back. */
async function copyOnce(page) {
  await page.getByRole("heading", { name: "Your new API key", level: 1 }).waitFor();
  const key = (await page.locator("#new-key").innerText()).trim();
  check(key.length > 20, `#new-key holds "${key}", not a key`);
  await page.getByRole("button", { name: "Copy", exact: true }).click();
  const copied = await page.evaluate(() => navigator.clipboard.readText());
  check(copied === key, `the clipboard holds "${copied}", not the key shown`);
  await page.getByText("You will not see it again").waitFor();
  const truncated = (await page.locator("#truncated-key").innerText()).trim();
  check(truncated && truncated !== key && !truncated.includes(key), `#truncated-key is "${truncated}"`);
  const id = /^\/keys\/(key_[^/]+)$/.exec(pathOf(page))?.[1];
  check(id, `the address bar shows ${page.url()}, not the key's page /keys/key_…`);
  note(`key ${truncated} (${id}), copied to the clipboard`);
  return { key, id, truncated };
}

/** Fails if the page's HTML (and `body`, a response's text, if given) contains `key`. */
async function expectNoKey(page, key, where, body) {
  const html = await htmlNow(page);
  check(!html.includes(key), `${where}: the page (${page.url()}) still shows the key`);
  if (body !== undefined) check(!body.includes(key), `${where}: the response body contains the key`);
}

async function main() {
  const root = typeof process.getuid === "function" && process.getuid() === 0;
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    // Root cannot use Chromium's sandbox; containers often have a small /dev/shm.
    args: [...(root ? ["--no-sandbox"] : []), "--disable-dev-shm-usage"],
  });
  try {
    await flow(browser);
  } catch (error) {
    await screenshotOpenPages(browser);
    throw error;
  } finally {
    await browser.close();
  }
}

/** After a failure: every page still open, as `failure-<n>.png`, to see where it stopped. */
async function screenshotOpenPages(browser) {
  const open = browser.contexts().flatMap((context) => context.pages());
  for (const [index, page] of open.entries()) {
    const file = `${SHOTS}/failure-${index + 1}.png`;
    try {
      await page.screenshot({ path: file, fullPage: true });
      console.error(`    the page at ${page.url()} when it failed: ${file}`);
    } catch {
      // A page that cannot be drawn any more adds nothing to the failure.
    }
  }
}

async function flow(browser) {
  const owner = await newContext(browser, "owner");
  const page = await owner.newPage();

  await step("the invitation page without a token explains what is missing", async () => {
    // A tab of its own: the setup link below differs from it by its fragment only, which
    // would make following it a same-document navigation instead of a page load.
    const tab = await owner.newPage();
    await tab.goto(url("/invitation"));
    await tab.locator("#token-missing").waitFor({ state: "visible" });
    await checkPage(tab, "invitation-without-token", SHOTS);
    await tab.close();
  });

  await step("the first owner opens the setup link and creates their account", async () => {
    await page.goto(SETUP_LINK);
    await page.getByLabel("Your name").waitFor();
    check(!page.url().includes("token="), `the token is still in the address bar: ${page.url()}`);
    await checkPage(page, "setup-account", SHOTS);
    const email = page.getByLabel("Email", { exact: true });
    if (await email.count()) await email.fill(OWNER_EMAIL);
    await page.getByLabel("Your name").fill("Olivia Owner");
    await page.getByLabel("Password", { exact: true }).fill(PASSWORD);
    await page.getByLabel("Confirm password").fill(PASSWORD);
    await page.getByRole("button", { name: "Create account" }).click();
    await page.waitForURL(url("/keys"));
    await checkPage(page, "keys", SHOTS);
  });

  await step("the owner signs out from the header", async () => {
    await page.getByRole("banner").getByRole("button", { name: "Sign out" }).click();
    await page.waitForURL(url("/sign-in"));
    await checkPage(page, "sign-in", SHOTS);
  });

  await step("the owner signs in again", async () => {
    await page.getByLabel("Email", { exact: true }).fill(OWNER_EMAIL);
    await page.getByLabel("Password", { exact: true }).fill(PASSWORD);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.waitForURL(url("/keys"));
  });

  await step("the first load of /keys stays on this origin; its weight", async () => {
    await measureKeysPage(browser, owner);
  });

  const first = await step("the owner creates a key", async () => {
    await page.getByRole("link", { name: "Create API key" }).click();
    await page.waitForURL(url("/keys/new"));
    await checkPage(page, "key-new", SHOTS);
    await page.getByLabel("Name", { exact: true }).fill(KEY_NAME);
    await page.getByLabel("Environment").selectOption("live");
    const scopes = page.getByRole("group", { name: "Scopes" });
    await scopes.getByRole("checkbox", { name: SCOPE, exact: true }).check();
    const expires = page.getByRole("group", { name: "Expires" });
    for (const choice of ["1 hour", "7 days", "30 days", "90 days", "1 year", "Never", "On a date"]) {
      check(await expires.getByRole("radio", { name: choice, exact: true }).count() === 1, `no "${choice}" under Expires`);
    }
    await expires.getByRole("radio", { name: "30 days", exact: true }).check();
    await page.getByLabel("Rate limit (requests per minute)").fill("600");
    await page.getByRole("button", { name: "Create key" }).click();
    const created = await copyOnce(page);
    await checkPage(page, "key-created", SHOTS);
    return created;
  });

  await step("the new key opens the edge", async () => {
    check((await statusAtEdge(EDGE_URL, EDGE_PATH, null)) === 401, "the edge lets a request without a key through");
    const ms = await expectAtEdge(EDGE_URL, EDGE_PATH, first.key, 200, "the new key", PROPAGATION_MS);
    note(`200 at the edge after ${ms} ms`);
  });

  await step("reloading the copy-once view shows the key's page, without the key", async () => {
    const response = await page.reload();
    check(response, "the reload loaded nothing");
    await expectNoKey(page, first.key, "after a reload", await response.text());
    check(pathOf(page) === `/keys/${first.id}`, `the reload landed on ${page.url()}`);
    await page.getByRole("heading", { name: KEY_NAME, level: 1 }).waitFor();
    await checkPage(page, "key-detail", SHOTS);
  });

  await step("going back from the key's page does not show the key either", async () => {
    await page.goBack();
    await expectNoKey(page, first.key, "after going back");
    await page.goto(url(`/keys/${first.id}`));
    await expectNoKey(page, first.key, "on the key's page");
  });

  const second = await step("the owner regenerates the key, the old one working 1 more hour", async () => {
    await page.getByRole("link", { name: "Regenerate" }).click();
    await page.waitForURL(url(`/keys/${first.id}/regenerate`));
    await checkPage(page, "key-regenerate", SHOTS);
    const grace = page.getByRole("group", { name: "Old key keeps working" });
    for (const choice of ["No, stop it now", "For 1 hour", "For 24 hours", "For 7 days"]) {
      check(await grace.getByRole("radio", { name: choice, exact: true }).count() === 1, `no "${choice}" under "Old key keeps working"`);
    }
    await grace.getByRole("radio", { name: "For 1 hour", exact: true }).check();
    await page.getByRole("button", { name: "Regenerate key" }).click();
    const rotated = await copyOnce(page);
    check(rotated.key !== first.key && rotated.id !== first.id, "regenerating showed the old key again");
    await checkPage(page, "key-regenerated", SHOTS);
    return rotated;
  });

  await step("both the old and the new key open the edge", async () => {
    const ms = await expectAtEdge(EDGE_URL, EDGE_PATH, second.key, 200, "the regenerated key", PROPAGATION_MS);
    note(`new key: 200 after ${ms} ms`);
    check((await statusAtEdge(EDGE_URL, EDGE_PATH, first.key)) === 200, "the old key stopped working during its grace period");
  });

  await step("leaving the copy-once view and going back does not show the new key", async () => {
    await page.getByRole("link", { name: "Done" }).click();
    await page.waitForURL(url(`/keys/${second.id}`));
    await page.goBack();
    await expectNoKey(page, second.key, "after Done and back");
  });

  await step("the owner revokes the old key", async () => {
    await page.goto(url(`/keys/${first.id}`));
    await page.getByRole("link", { name: "Revoke" }).click();
    await page.waitForURL(url(`/keys/${first.id}/revoke`));
    await checkPage(page, "key-revoke", SHOTS);
    const reason = page.getByLabel("Reason");
    const values = await reason.locator("option").evaluateAll((options) => options.map((o) => o.value));
    const wanted = ["compromised", "replaced", "unused", "employee_departure", "project_ended", "other"];
    check(JSON.stringify(values) === JSON.stringify(wanted), `the reasons are ${values.join(", ")}`);
    await reason.selectOption({ label: "Replaced" });
    // Two lines: the browser sends the line break as CRLF.
    await page.getByLabel("Note").fill("Replaced by the regenerated key.\nBrowser test.");
    await page.getByRole("button", { name: `Revoke \u201c${KEY_NAME}\u201d` }).click();
    await page.waitForURL((address) => address.pathname === `/keys/${first.id}`);
    await page.getByRole("main").getByText("Revoked", { exact: true }).first().waitFor();
    await page.getByRole("main").getByText("Browser test.").first().waitFor();
    await checkPage(page, "key-revoked", SHOTS);
  });

  await step("the edge refuses the revoked key and still takes the new one", async () => {
    const ms = await expectAtEdge(EDGE_URL, EDGE_PATH, first.key, 401, "the revoked key", PROPAGATION_MS);
    note(`revoked key: 401 after ${ms} ms`);
    check((await statusAtEdge(EDGE_URL, EDGE_PATH, second.key)) === 200, "the new key no longer works");
  });

  await step("the audit log lists the creation, the rotation and the revocation", async () => {
    await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Audit log" }).click();
    await page.waitForURL(url("/audit"));
    const table = await page.getByRole("table").first().innerText();
    for (const action of ["key_created", "key_rotated", "key_revoked"]) {
      check(table.includes(action), `the audit table does not mention ${action}`);
    }
    await checkPage(page, "audit", SHOTS);
  });

  await step("the owner's other pages pass the same checks", async () => {
    const pages = [
      ["account", "/account", "Your account"],
      ["edges", "/edges", "Edges"],
      ["organizations", "/organizations", "Organizations"],
      ["key-edit", `/keys/${second.id}/edit`, `Edit \u201c${KEY_NAME}\u201d`],
      ["key-delete", `/keys/${first.id}/delete`, `Delete \u201c${KEY_NAME}\u201d`],
      ["audit-filtered", "/audit?action=key_revoked", "Audit log"],
      ["keys-filtered", "/keys?status=revoked&never_used=true", "API keys"],
    ];
    for (const [name, path, heading] of pages) {
      await page.goto(url(path));
      await page.getByRole("heading", { name: heading, level: 1 }).waitFor();
      await checkPage(page, name, SHOTS);
    }
  });

  await webhookSteps({ page, base: BASE, api, receiver: WEBHOOK_URL, shots: SHOTS, checkPage });

  const link = await step("the owner invites a viewer", async () => {
    await page.goto(url("/members"));
    await checkPage(page, "members", SHOTS);
    await page.getByLabel("Email", { exact: true }).fill(VIEWER_EMAIL);
    await page.getByLabel("Role", { exact: true }).selectOption("viewer");
    await page.getByRole("button", { name: "Send invitation" }).click();
    const shown = (await page.locator("#invitation-link").innerText()).trim();
    check(/\/invitation#token=/.test(shown), `#invitation-link holds "${shown}"`);
    await checkPage(page, "members-invited", SHOTS);
    return shown;
  });

  await invitationSteps({
    page,
    base: BASE,
    wanted: VIEWER_EMAIL,
    shots: SHOTS,
    checkPage,
    newContext: (label) => newContext(browser, label),
  });

  const viewer = await newContext(browser, "viewer");
  try {
    const vpage = await viewer.newPage();

    await step("the viewer accepts the invitation in their own browser", async () => {
      await vpage.goto(link);
      await vpage.getByLabel("Your name").waitFor();
      await checkPage(vpage, "invitation-accept", SHOTS);
      await vpage.getByLabel("Your name").fill("Vera Viewer");
      await vpage.getByLabel("Password", { exact: true }).fill(PASSWORD);
      await vpage.getByLabel("Confirm password").fill(PASSWORD);
      await vpage.getByRole("button", { name: "Create account" }).click();
      await vpage.waitForURL(url("/keys"));
      await checkPage(vpage, "keys-viewer", SHOTS);
    });

    await step("the viewer is offered no way to change keys", async () => {
      check(await vpage.getByRole("link", { name: "Create API key" }).count() === 0, "the viewer is offered \"Create API key\"");
      check(await vpage.getByRole("link", { name: "Webhooks" }).count() === 0, "the viewer is offered \"Webhooks\"");
      await vpage.goto(url(`/keys/${second.id}`));
      await vpage.getByRole("heading", { name: KEY_NAME, level: 1 }).waitFor();
      for (const action of ["Revoke", "Regenerate"]) {
        check(await vpage.getByRole("link", { name: action, exact: true }).count() === 0, `the viewer is offered "${action}"`);
      }
      await checkPage(vpage, "key-detail-viewer", SHOTS);
    });

    await step("a forged create-key post from the viewer's session is refused with 403", async () => {
      // The same post with the owner's session goes through, so the viewer's refusal is their
      // role's, not a token or origin the server would refuse from anyone.
      const owners = await forgedCreate(page, "made by a script post (owner)");
      check(owners.status() === 200, `the owner's scripted post got ${owners.status()}, not the copy-once view`);
      check((await owners.text()).includes('id="new-key"'), "the owner's scripted post did not create a key");
      const viewers = await forgedCreate(vpage, "forged by the viewer");
      check(viewers.status() === 403, `the viewer's forged post got ${viewers.status()}: ${(await viewers.text()).slice(0, 300)}`);
    });
  } finally {
    await viewer.close();
  }
  reportBreaches();
  await owner.close();

  await portalSteps({
    browser,
    api,
    base: BASE,
    otherOrgKeyId: OTHER_ORG_KEY_ID,
    member: OWNER_EMAIL,
    shots: SHOTS,
    checkPage,
  });
}

/** A call to the control plane's API with the admin key: `{ status, body }`. */
async function api(method, path, body) {
  const response = await fetch(url(path), {
    method,
    headers: { "x-api-key": ADMIN_KEY, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

/** Posts the create-key form from `page`'s session without the form: the CSRF token copied
 * from the page's sign-out form, the control plane's origin. */
async function forgedCreate(page, name) {
  const csrf = await page.locator('form[action="/sign-out"] input[name="csrf"]').inputValue();
  check(csrf, `${page.url()} has no CSRF token in its sign-out form`);
  // The create form's one-submission token, when this session may open the form at all.
  const form = await page.request.get(url("/keys/new"));
  const once = /name="once" value="([^"]+)"/.exec(await form.text())?.[1] || "";
  return page.request.post(url("/keys/new"), {
    form: { csrf, once, name, environment: "live", expires: "1h" },
    headers: { origin: ORIGIN },
    maxRedirects: 0,
  });
}

/** Loads /keys in a new context (cold cache, the owner's cookies) and prints what it
 * weighed: the page and every subresource, each from this origin. */
async function measureKeysPage(browser, owner) {
  const context = await browser.newContext({ storageState: await owner.storageState() });
  try {
    watch(context, ORIGIN, "page weight");
    const page = await context.newPage();
    const finished = [];
    page.on("requestfinished", (request) => finished.push(request));
    const foreign = [];
    page.on("request", (request) => {
      if (new URL(request.url()).origin !== ORIGIN) foreign.push(request.url());
    });
    await page.goto(url("/keys"), { waitUntil: "networkidle" });
    check(pathOf(page) === "/keys", `the owner's cookies did not carry over: ${page.url()}`);
    check(foreign.length === 0, `/keys loads from other origins: ${foreign.join(", ")}`);
    let total = 0;
    for (const request of finished) {
      const response = await request.response();
      if (!response) continue;
      const bytes = (await response.body()).length;
      total += bytes;
      note(`${response.status()} ${new URL(request.url()).pathname}: ${bytes} bytes`);
    }
    check(finished.length > 0, "no request finished");
    console.log(`page weight /keys: ${total} bytes`);
  } finally {
    await context.close();
  }
}

main().then(
  () => console.log("dashboard.mjs: every step passed"),
  (error) => {
    console.error(`dashboard.mjs: FAILED: ${error.message}`);
    if (error.cause?.stack) console.error(error.cause.stack);
    process.exitCode = 1;
  },
);
