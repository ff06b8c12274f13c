// The embedded portal in a real browser: a host product's page (served by a small HTTP server
// of the test's own, reached as http://localhost:<port>, another site than the control plane's
// http://127.0.0.1) frames the one-time portal URL its back end got from
// POST /v1/portal/sessions. (The deployment runs in local-dev mode, which lets an http origin
// be a frame ancestor; a real host is https.) The framed pages are the organization's, branded,
// acting as the named member only; the link works once; another organization's key is not
// there; "Sign out" ends the portal session (a page in the frame says so, with the way back
// to the host's page); a page the
// organization does not allow cannot frame it.

import http from "node:http";

import { check, note, step } from "./steps.mjs";

/** A host product's web server: `/settings/api-keys?src=<url>` is a page framing `src`. */
async function hostServer() {
  const server = http.createServer((request, response) => {
    const src = new URL(request.url, "http://localhost").searchParams.get("src") || "about:blank";
    const escaped = src.replace(/&/g, "&amp;").replace(/"/g, "&quot;").replace(/</g, "&lt;");
    response.writeHead(200, { "content-type": "text/html; charset=utf-8" });
    response.end(`<!doctype html><html lang="en"><head><title>Host product</title></head><body>
<h1>Host product settings</h1>
<iframe id="portal" title="API keys" src="${escaped}" width="1100" height="900"></iframe>
</body></html>`);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { server, origin: `http://localhost:${server.address().port}` };
}

/** Opens the host page at `origin` framing `src`. */
async function hostPage(context, origin, src) {
  const page = await context.newPage();
  await page.goto(`${origin}/settings/api-keys?src=${encodeURIComponent(src)}`);
  return page;
}

/** Runs the portal steps. `api(method, path, body)` calls the control plane with the admin key. */
export async function portalSteps(options) {
  const allowed = await hostServer();
  const other = await hostServer();
  try {
    await portalFlow({ ...options, HOST_ORIGIN: allowed.origin, OTHER_HOST: other.origin });
  } finally {
    allowed.server.close();
    other.server.close();
  }
}

async function portalFlow({ browser, api, base, otherOrgKeyId, member, shots, checkPage, HOST_ORIGIN, OTHER_HOST }) {
  await step("branding is set through the API: a name, an accent and the host allowed to frame", async () => {
    const reply = await api("PUT", "/v1/organization/branding", {
      display_name: "Acme Cloud",
      accent_color: "#0b6e4f",
      frame_ancestors: [HOST_ORIGIN],
    });
    check(reply.status === 200, `branding: ${reply.status} ${JSON.stringify(reply.body)}`);
  });

  const ask = async () => {
    const reply = await api("POST", "/v1/portal/sessions", {
      user: { email: member },
      return_url: `${HOST_ORIGIN}/settings/api-keys`,
    });
    check(reply.status === 201, `portal link: ${reply.status} ${JSON.stringify(reply.body)}`);
    check(reply.body.url.startsWith(`${base}/portal/enter#token=`), `portal link is ${reply.body.url}`);
    return reply.body.url;
  };

  const link = await step("the host's back end asks for a one-time portal link", ask);
  const context = await browser.newContext();
  context.setDefaultTimeout(10_000);
  try {
    const page = await step("the host page frames the link; the portal opens on the API keys", async () => {
      const host = await hostPage(context, HOST_ORIGIN, link);
      const frame = host.frameLocator("#portal");
      await frame.getByRole("heading", { name: "API keys", level: 1 }).waitFor();
      await frame.getByText("Acme Cloud").first().waitFor();
      const back = frame.getByRole("link", { name: "Back to Acme Cloud" });
      check((await back.getAttribute("href")) === `${HOST_ORIGIN}/settings/api-keys`, "no way back to the host");
      check(await frame.getByRole("link", { name: "Members" }).count() === 0, "the portal offers the team's pages");
      await host.screenshot({ path: `${shots}/portal-framed.png`, fullPage: true });
      return host;
    });

    await step("inside the frame the member creates a key and sees it once", async () => {
      const frame = page.frameLocator("#portal");
      await frame.getByRole("link", { name: "Create API key" }).click();
      await frame.getByLabel("Name", { exact: true }).fill("Made in the portal");
      await frame.getByRole("group", { name: "Expires" }).getByRole("radio", { name: "7 days", exact: true }).check();
      await frame.getByRole("button", { name: "Create key" }).click();
      await frame.getByRole("heading", { name: "Your new API key", level: 1 }).waitFor();
      const key = (await frame.locator("#new-key").innerText()).trim();
      check(key.startsWith("sk_live_"), `the portal's new key is "${key}"`);
      note("a key made inside the framed portal");
    });

    await step("another organization's key is not there", async () => {
      const inner = page.frames().find((frame) => frame.url().startsWith(base));
      check(inner, "no portal frame");
      const response = await inner.goto(`${base}/keys/${otherOrgKeyId}`);
      check(response.status() === 404, `another organization's key answered ${response.status()}`);
    });

    await step("the member signs out, in the frame, then goes back to the host; the session is over", async () => {
      const frame = page.frameLocator("#portal");
      const inner = page.frames().find((candidate) => candidate.url().startsWith(base));
      check(inner, "no portal frame");
      await inner.goto(`${base}/keys`);
      await frame.getByRole("banner").getByRole("button", { name: "Sign out" }).click();
      await frame.getByRole("heading", { name: "Signed out", level: 1 }).waitFor();
      await page.screenshot({ path: `${shots}/portal-signed-out.png`, fullPage: true });
      const back = frame.getByRole("link", { name: "Back to Acme Cloud" });
      check((await back.getAttribute("href")) === `${HOST_ORIGIN}/settings/api-keys`, "no way back to the host");
      // The way back leaves the frame: the host's own page, at the top.
      await back.click();
      await page.waitForURL(`${HOST_ORIGIN}/settings/api-keys`);
      // The host frames the key page again: without the session it is not served (a redirect
      // to the sign-in page, which no frame may show).
      const served = context.waitForEvent("response", {
        predicate: (response) => response.url() === `${base}/keys`,
        timeout: 15_000,
      });
      await page.goto(`${HOST_ORIGIN}/settings/api-keys?src=${encodeURIComponent(`${base}/keys`)}`);
      const keys = await served;
      check(keys.status() !== 200, `the key page answered ${keys.status()} after signing out`);
      note(`signed out of the portal; the key page then answered ${keys.status()}`);
    });
  } finally {
    await context.close();
  }

  await step("the same link a second time does not open the portal", async () => {
    const again = await browser.newContext();
    try {
      const page = await again.newPage();
      await page.goto(link);
      await page.getByRole("heading", { name: "This link no longer works" }).waitFor();
      await checkPage(page, "portal-link-used", shots);
      check(!(await page.content()).includes("Create API key"), "a used link showed the keys");
    } finally {
      await again.close();
    }
  });

  await step("a page the organization does not allow cannot frame the portal", async () => {
    const fresh = await ask();
    const elsewhere = await browser.newContext();
    try {
      const served = elsewhere.waitForEvent("response", {
        predicate: (response) => response.url() === `${base}/keys`,
        timeout: 15_000,
      });
      const host = await hostPage(elsewhere, OTHER_HOST, fresh);
      // The entry page may load anywhere and redeems the link; the key page it leads to is
      // served, but its policy names only the allowed host, so the browser does not show it.
      const keys = await served;
      const policy = keys.headers()["content-security-policy"] || "";
      check(policy.endsWith(`frame-ancestors ${HOST_ORIGIN}`), `the key page's policy: "${policy}"`);
      await host.waitForTimeout(500);
      for (const frame of host.frames()) {
        const headings = await frame.getByRole("heading", { name: "API keys" }).count().catch(() => 0);
        check(headings === 0, `the key page rendered inside ${OTHER_HOST} (frame ${frame.url()})`);
      }
      note("the key page was refused in a frame of a host that is not allowed");
    } finally {
      await elsewhere.close();
    }
  });
}
