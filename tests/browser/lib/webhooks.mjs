// Webhooks in a real browser: the owner opens Webhooks from the navigation, adds an endpoint
// with the keyboard (the test origin, which answers 200 to everything), copies its signing
// secret once, sees a key's creation delivered and sends it again, turns the endpoint off and
// on, gets a new secret, sets the expiry reminders, and deletes the endpoint.

import { htmlNow } from "./pages.mjs";
import { check, note, poll, step } from "./steps.mjs";

/** Runs the webhook steps on the owner's `page`. `api(method, path, body)` calls the control
 * plane with the admin key; `receiver` is the URL the endpoint gets. */
export async function webhookSteps({ page, base, api, receiver, shots, checkPage }) {
  const url = (path) => `${base}${path}`;
  const attemptRows = async () => {
    await page.reload();
    const rows = page.getByRole("table", { name: "Delivery attempts, newest first" }).locator("tbody tr");
    return rows.allInnerTexts();
  };

  await step("the owner opens Webhooks from the navigation", async () => {
    await page.goto(url("/keys"));
    await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Webhooks" }).click();
    await page.getByRole("heading", { name: "Webhooks", level: 1 }).waitFor();
    await page.getByText("No endpoint yet.").waitFor();
    await checkPage(page, "webhooks", shots);
  });

  const secret = await step("the owner adds an endpoint with the keyboard and copies its secret once", async () => {
    await page.getByLabel("Endpoint URL").focus();
    await page.keyboard.type(receiver);
    await page.keyboard.press("Tab");
    await page.keyboard.type("Browser test receiver");
    const created = page.getByRole("checkbox", { name: /key\.created/ });
    await created.focus();
    await page.keyboard.press("Space");
    check(await created.isChecked(), "Space did not tick key.created");
    await page.getByLabel("Endpoint URL").focus();
    await page.keyboard.press("Enter");
    await page.getByRole("heading", { name: "Your new endpoint", level: 1 }).waitFor();
    const shown = (await page.locator("#new-secret").innerText()).trim();
    check(shown.startsWith("whsec_"), `#new-secret holds "${shown}", not a signing secret`);
    await page.getByRole("button", { name: "Copy", exact: true }).click();
    const copied = await page.evaluate(() => navigator.clipboard.readText());
    check(copied === shown, "the clipboard does not hold the secret shown");
    check(/^\/webhooks\/whk_[^/]+$/.test(new URL(page.url()).pathname), `the address bar shows ${page.url()}`);
    await checkPage(page, "webhook-secret", shots);
    return shown;
  });

  await step("reloading shows the endpoint's page, without the secret", async () => {
    await page.reload();
    await page.getByRole("heading", { name: receiver, level: 1 }).waitFor();
    check(!(await htmlNow(page)).includes(secret), "the endpoint's page shows the secret");
  });

  await step("a key created with the API is delivered, and the attempt is listed", async () => {
    const made = await api("POST", "/v1/keys", { name: "Announced by a webhook", environment: "live" });
    check(made.status === 201, `creating a key answered ${made.status}`);
    const { ms } = await poll("the delivery is listed", 15_000, async () => {
      const rows = await attemptRows();
      return rows.some((row) => row.includes("key.created") && row.includes("delivered (200)"));
    });
    note(`listed as delivered ${ms} ms after the create`);
    check(!(await htmlNow(page)).includes(secret), "the endpoint's page shows the secret");
    await checkPage(page, "webhook-endpoint", shots);
  });

  await step("the owner sends the event again", async () => {
    await page.getByRole("button", { name: /^Send again/ }).first().click();
    await page.getByText("The event is sent again within a second.").waitFor();
    await poll("the second attempt is listed", 15_000, async () => {
      const rows = await attemptRows();
      return rows.filter((row) => row.includes("delivered (200)")).length >= 2;
    });
  });

  await step("the owner disables the endpoint and enables it again", async () => {
    await page.getByRole("button", { name: "Disable", exact: true }).click();
    await page.getByText("Endpoint disabled: nothing is sent until it is enabled again.").waitFor();
    await page.getByRole("button", { name: "Enable", exact: true }).click();
    await page.getByText("Endpoint enabled: deliveries resume.").waitFor();
  });

  await step("the owner gets a new signing secret; the old one signs a day more", async () => {
    await page.getByRole("button", { name: "New signing secret" }).click();
    await page.getByRole("heading", { name: "New signing secret", level: 1 }).waitFor();
    const renewed = (await page.locator("#new-secret").innerText()).trim();
    check(renewed.startsWith("whsec_") && renewed !== secret, "the new secret is not a new one");
    await page.getByText("The previous secret also signs each delivery until").waitFor();
    await page.getByRole("link", { name: "Done" }).click();
    await page.getByRole("heading", { name: receiver, level: 1 }).waitFor();
    check(!(await htmlNow(page)).includes(renewed), "the endpoint's page shows the new secret");
  });

  await step("the owner sets the expiry reminders", async () => {
    await page.goto(url("/webhooks"));
    const field = page.getByLabel("Days before a key expires");
    check((await field.inputValue()) === "7, 1", `the reminders field shows "${await field.inputValue()}"`);
    await field.fill("30, 7, 1");
    await page.getByRole("button", { name: "Save reminders" }).click();
    await page.getByText("Expiry reminders saved.").waitFor();
    check((await field.inputValue()) === "30, 7, 1", "the saved reminders are not shown");
    const stored = await api("GET", "/v1/organization/expiry-notices");
    check(JSON.stringify(stored.body.days_before) === "[30,7,1]", `the API has ${JSON.stringify(stored.body)}`);
  });

  await step("the owner deletes the endpoint after confirming", async () => {
    await page.getByRole("link", { name: receiver }).click();
    await page.getByRole("link", { name: "Delete endpoint" }).click();
    await page.getByRole("heading", { name: `Delete ${receiver}`, level: 1 }).waitFor();
    await checkPage(page, "webhook-delete", shots);
    await page.getByRole("button", { name: "Delete endpoint" }).click();
    await page.getByText("Endpoint deleted.").waitFor();
    await page.getByText("No endpoint yet.").waitFor();
  });
}
