// The accessibility pass: axe-core run inside a page, failing on serious or critical findings.
//
// The dashboard's Content-Security-Policy allows scripts from its own origin only, so axe is
// not added as a <script> (which the policy would refuse): its source is evaluated through the
// DevTools protocol, which the policy does not govern, so the page keeps its real policy.

import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const source = await readFile(require.resolve("axe-core/axe.min.js"), "utf8");

/** Impacts that fail the test. */
const FAILING = new Set(["serious", "critical"]);

/** Runs axe on `page`; the serious and critical violations, and a count of the rest. */
export async function audit(page) {
  const present = await page.evaluate(() => typeof window.axe === "object");
  if (!present) await page.evaluate(source);
  const results = await page.evaluate(() =>
    window.axe.run(document, { resultTypes: ["violations"] }),
  );
  const failing = results.violations.filter((violation) => FAILING.has(violation.impact));
  const minor = results.violations.length - failing.length;
  return { failing, minor };
}

/** A readable list of violations: rule, impact, help, and the elements concerned. */
export function describe(violations) {
  return violations
    .map((violation) => {
      const nodes = violation.nodes
        .slice(0, 5)
        .map((node) => `      ${node.target.join(" ")}: ${node.failureSummary?.split("\n").join(" ")}`)
        .join("\n");
      return `  - ${violation.id} (${violation.impact}): ${violation.help}\n${nodes}`;
    })
    .join("\n");
}
