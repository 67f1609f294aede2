// Opens pages of Prefect's UI in Chromium and checks each one: no API call answered >= 400,
// no page error, and the texts the page must show are visible. Screenshots go to SHOTS.
//
//   node drive.mjs SPEC.json
//
// SPEC: {"base": "http://127.0.0.1:PORT", "chromium": "/usr/bin/chromium", "shots": DIR,
//        "node_modules": the folder holding playwright-core,
//        "login": KEY or null,
//        "pages": [{"name", "path", "expect": [TEXT...], "calls": [PATH PART...],
//                   "steps": [{"click": TEXT} | {"click_role": ROLE} | {"expect": TEXT}]}]}
// `calls`: API paths (parts of them) the page must have called, each answered below 400.
// Prints one JSON line per page and exits 1 if any page failed.
import { readFileSync, mkdirSync } from "node:fs";
import { createRequire } from "node:module";

const spec = JSON.parse(readFileSync(process.argv[2], "utf8"));
// playwright-core is installed outside the repository (infra/browser.sh), so it is loaded from
// the folder the spec names.
const { chromium } = createRequire(`${spec.node_modules}/`)("playwright-core");
mkdirSync(spec.shots, { recursive: true });

const browser = await chromium.launch({
  executablePath: spec.chromium,
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
  ],
});
const context = await browser.newContext({ viewport: { width: 1440, height: 1000 } });
let failed = 0;
try {
  for (const page of spec.pages) {
    const result = await visit(context, page);
    if (result.problems.length > 0) failed += 1;
    console.log(JSON.stringify(result));
  }
} finally {
  await browser.close();
}
process.exit(failed > 0 ? 1 : 0);

async function visit(context, spec_page) {
  const tab = await context.newPage();
  const problems = [];
  const calls = [];
  tab.on("response", async (response) => {
    const url = response.url();
    if (!url.includes("/api/")) return;
    const request = response.request();
    calls.push(`${request.method()} ${new URL(url).pathname}`);
    if (response.status() >= 400) {
      let body = "";
      try {
        body = (await response.text()).slice(0, 300);
      } catch {}
      problems.push(`${response.status()} ${request.method()} ${new URL(url).pathname} ${request.postData() ?? ""} -> ${body}`);
    }
  });
  tab.on("requestfailed", (request) => {
    if (request.url().includes("/api/")) {
      problems.push(`request failed: ${request.method()} ${request.url()} ${request.failure()?.errorText}`);
    }
  });
  tab.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  try {
    await tab.goto(spec.base + spec_page.path, { waitUntil: "load" });
    if (spec.login && spec_page.login) {
      await login(tab, spec.login);
    }
    // The pages poll; "idle" is a quiet half second, or ten seconds at most.
    await tab.waitForLoadState("networkidle", { timeout: 10000 }).catch(() => {});
    for (const text of spec_page.expect ?? []) {
      await expectText(tab, text, problems);
    }
    for (const step of spec_page.steps ?? []) {
      if (step.click !== undefined) {
        try {
          await tab.getByText(step.click, { exact: true }).first().click({ timeout: 15000 });
          await tab.waitForLoadState("networkidle", { timeout: 10000 }).catch(() => {});
        } catch {
          problems.push(`could not click ${JSON.stringify(step.click)}`);
        }
      } else if (step.click_role !== undefined) {
        try {
          await tab.getByRole(step.click_role).first().click({ timeout: 15000 });
          await tab.waitForLoadState("networkidle", { timeout: 10000 }).catch(() => {});
        } catch {
          problems.push(`could not click the first ${step.click_role}`);
        }
      } else if (step.expect !== undefined) {
        await expectText(tab, step.expect, problems);
      }
    }
    await tab.waitForTimeout(spec_page.settle ?? 1000);
  } catch (error) {
    problems.push(`navigation: ${error.message}`);
  }
  for (const part of spec_page.calls ?? []) {
    if (!calls.some((call) => call.includes(part))) {
      problems.push(`never called ${JSON.stringify(part)}`);
    }
  }
  await tab.screenshot({ path: `${spec.shots}/${spec_page.name}.png`, fullPage: true }).catch(() => {});
  await tab.close();
  return { page: spec_page.name, path: spec_page.path, problems, calls: [...new Set(calls)] };
}

async function expectText(tab, text, problems) {
  try {
    await tab.getByText(text, { exact: false }).first().waitFor({ state: "visible", timeout: 15000 });
  } catch {
    problems.push(`text not visible: ${JSON.stringify(text)}`);
  }
}

// Prefect's login page asks for the auth string; Sluice takes an API key there.
async function login(tab, key) {
  const field = tab.locator("input[type=password], input").first();
  await field.waitFor({ state: "visible", timeout: 15000 });
  await field.fill(key);
  await field.press("Enter");
  await tab.waitForURL((url) => !url.pathname.endsWith("/login"), { timeout: 15000 });
}
