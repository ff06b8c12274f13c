// Pending invitations in a real browser: the owner invites an address by mistake, finds it
// under "Pending invitations" beside the invitation still wanted, revokes it with the keyboard,
// and the mistaken link, opened in the invitee's own browser, says it was revoked.

import { check, step } from "./steps.mjs";

/** Runs the steps on the owner's `page` (on /members, with `wanted` invited already);
 * `newContext(label)` opens another person's browser. */
export async function invitationSteps({ page, base, wanted, shots, checkPage, newContext }) {
  const url = (path) => `${base}${path}`;
  const MISTAKE = "wrong-person@example.com";
  const pendingRows = () =>
    page.getByRole("table", { name: "Pending invitations" }).locator("tbody tr").allInnerTexts();

  const link = await step("the owner invites the wrong address and sees both invitations pending", async () => {
    await page.goto(url("/members"));
    await page.getByLabel("Email", { exact: true }).fill(MISTAKE);
    await page.getByLabel("Role", { exact: true }).selectOption("developer");
    await page.getByRole("button", { name: "Send invitation" }).click();
    const shown = (await page.locator("#invitation-link").innerText()).trim();
    check(/\/invitation#token=/.test(shown), `#invitation-link holds "${shown}"`);
    const rows = await pendingRows();
    check(rows.length === 2, `pending rows: ${JSON.stringify(rows)}`);
    check(rows.some((row) => row.includes(wanted)) && rows.some((row) => row.includes(MISTAKE)),
      `pending rows do not show both invitations: ${JSON.stringify(rows)}`);
    check(!(await page.getByRole("table", { name: "Pending invitations" }).innerText()).includes("#token="),
      "the pending list shows a link");
    await checkPage(page, "members-pending", shots);
    return shown;
  });

  await step("the owner revokes the mistaken invitation with the keyboard", async () => {
    await page.getByRole("button", { name: `Revoke the invitation of ${MISTAKE}` }).focus();
    await page.keyboard.press("Enter");
    await page.getByText("Invitation revoked: its link no longer works.").waitFor();
    const rows = await pendingRows();
    check(rows.length === 1 && rows[0].includes(wanted), `pending rows after revoking: ${JSON.stringify(rows)}`);
    check(await page.getByRole("button", { name: `Revoke the invitation of ${MISTAKE}` }).count() === 0,
      "the revoked invitation is still offered for revoking");
  });

  await step("the revoked link, opened by its recipient, says it was revoked", async () => {
    const context = await newContext("revoked-invitee");
    try {
      const invitee = await context.newPage();
      await invitee.goto(link);
      await invitee.getByRole("heading", { name: "This link does not work", level: 1 }).waitFor();
      const text = await invitee.locator("main").innerText();
      check(text.includes("This invitation was revoked"), `the page says: ${text}`);
      check(await invitee.getByLabel("Password", { exact: true }).count() === 0, "the revoked link offers the sign-up form");
      await checkPage(invitee, "invitation-revoked", shots);
    } finally {
      await context.close();
    }
  });
}
