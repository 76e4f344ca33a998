// The admin dashboard (/ui/) in a real browser: Debian's chromium, headless, driven by
// puppeteer-core (pinned in package.json). Usage:
//   node dashboard.mjs ADMIN_URL OPERATOR_TOKEN VIEWER_TOKEN SCREENSHOT CHROMIUM
// The gateway's model "m" must have a rollout at canary-20 whose next stage is canary-50.
// Prints "ready" once the page shows canary-20 (the test then sends traffic, so the
// controller promotes while the page watches), and finally one JSON line with what it saw.
// Every wait has a deadline; a step that misses one fails the script (exit 1) and says which.
import puppeteer from "puppeteer-core";

const [base, operatorToken, viewerToken, screenshot, chromium] = process.argv.slice(2);
const stepMs = 10000;
const seen = { steps: [], console_errors: [] };

// Any error the page logs (a script error, something the Content-Security-Policy blocked) and
// any of its own files that failed to load is a failure of the dashboard: collected, and
// checked by the test. The API's refusals are not: the page asks for a token after a 401 and
// shows a 400's words, and Chromium logs each as "Failed to load resource".
function watch(page) {
  page.on("console", (msg) => {
    if (msg.type() === "error" && !msg.text().startsWith("Failed to load resource")) {
      seen.console_errors.push(msg.text());
    }
  });
  page.on("pageerror", (e) => seen.console_errors.push(e.message));
  page.on("response", (r) => {
    if (!new URL(r.url()).pathname.startsWith("/api/") && r.status() >= 400) {
      seen.console_errors.push(`${r.status()} for ${r.url()}`);
    }
  });
  page.on("requestfailed", (r) => {
    // The feed's fetch is aborted when the page goes: not a failure.
    if (!r.url().endsWith("/api/v1/events")) {
      seen.console_errors.push(`${r.failure()?.errorText} for ${r.url()}`);
    }
  });
}

const stageShown = (model) =>
  document.querySelector(`[data-model="${model}"] [data-field="stage"]`)?.textContent ?? null;

async function step(name, action) {
  seen.steps.push(name);
  return action();
}

async function signIn(browser, token) {
  const page = await browser.newPage();
  watch(page);
  await page.setViewport({ width: 1280, height: 900 });
  await page.goto(`${base}/`, { waitUntil: "load", timeout: stepMs });  // "/" redirects to /ui/
  await step("the page asks for a token", () =>
    page.waitForSelector("#token-form:not([hidden])", { timeout: stepMs }));
  await page.type("#token-input", token);
  await page.click("#token-form button[type=submit]");
  return page;
}

const browser = await puppeteer.launch({
  executablePath: chromium,
  headless: true,
  timeout: 30000,  // CI runs the suite two tests at a time on 2 cores: a slow start is no failure
  // --no-sandbox: CI runs as root, where chromium's sandbox refuses to start.
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
         "--disable-extensions", "--disable-background-networking"],
});
try {
  const page = await signIn(browser, operatorToken);
  seen.url = page.url();
  await step("the operator sees canary-20", () =>
    page.waitForFunction((m) => document.querySelector(
      `[data-model="${m}"] [data-field="stage"]`)?.textContent === "canary-20",
      { timeout: stepMs }, "m"));
  console.log("ready");
  await step("the page shows the controller's promotion to canary-50", () =>
    page.waitForFunction((m) => document.querySelector(
      `[data-model="${m}"] [data-field="stage"]`)?.textContent === "canary-50",
      { timeout: 20000, polling: "mutation" }, "m"));
  await step("the timeline shows the promotion", () =>
    page.waitForSelector('#timeline li[data-type="promoted"]', { timeout: stepMs }));
  await step("the report shows canary-20 promoted and canary-50 in progress", () =>
    page.waitForFunction((m) => [...document.querySelectorAll(
      `[data-model="${m}"] table.report tr[data-stage]`)].map((r) => r.dataset.stage).join() ===
      "canary-20,canary-50", { timeout: stepMs }, "m"));
  seen.report_stages = await page.$$eval('[data-model="m"] table.report tr[data-stage]',
    (rows) => rows.map((r) => [r.dataset.stage, r.querySelector("td.decision").textContent]));
  await step("the metrics poll shows the candidate's traffic at canary-50", () =>
    page.waitForFunction((m) => parseFloat(document.querySelector(
      `[data-model="${m}"] tr[data-version="v2"] td:nth-child(3)`)?.textContent) > 0,
      { timeout: stepMs }, "m"));
  seen.feed = await page.$eval("#feed-state", (e) => e.dataset.state);
  seen.gates = await page.$$eval('[data-model="m"] table.gates tr[data-gate]', (rows) => rows.length);
  await page.screenshot({ path: screenshot, fullPage: true });
  seen.buttons = await page.$$eval('[data-model="m"] button[data-command]',
                                   (bs) => bs.map((b) => b.dataset.command));

  await page.type('[data-model="m"] .reason', "seen in the browser test");
  await page.click('[data-model="m"] button[data-command="pause"]');
  await step("the page shows the rollout paused", () =>
    page.waitForFunction((m) => document.querySelector(
      `[data-model="${m}"] [data-field="phase"]`)?.textContent === "paused",
      { timeout: stepMs }, "m"));

  // A command the server refuses shows the server's own words.
  await page.type('[data-model="m"] input.weight', "12.345");
  await page.click('[data-model="m"] button[data-command="set_weight"]');
  await step("the page shows why the weight was refused", () =>
    page.waitForFunction((m) => document.querySelector(
      `[data-model="${m}"] [data-field="message"]`)?.dataset.kind === "error",
      { timeout: stepMs }, "m"));
  seen.refusal = await page.$eval('[data-model="m"] [data-field="message"]', (e) => e.textContent);

  seen.storage = await page.evaluate(() => ({
    session: sessionStorage.length, local: localStorage.length, cookie: document.cookie,
  }));
  seen.cookies = (await page.cookies()).length;

  // A viewer, in a context of its own (nothing shared with the operator's tab).
  const viewerContext = await browser.createBrowserContext();
  const viewer = await signIn(viewerContext, viewerToken);
  await step("the viewer sees the rollout", () =>
    viewer.waitForFunction(stageShown, { timeout: stepMs }, "m"));
  seen.viewer_identity = await viewer.$eval("#identity", (e) => e.textContent);
  seen.viewer_buttons = await viewer.$$eval("button[data-command]", (bs) => bs.length);
  seen.viewer_phase = await viewer.$eval('[data-model="m"] [data-field="phase"]',
                                         (e) => e.textContent);
  console.log(JSON.stringify(seen));
} catch (e) {
  seen.error = `${seen.steps.at(-1) ?? "start"}: ${e.message}`;
  // What the pages said last, for the failure's report.
  for (const page of await browser.pages()) {
    seen.last_messages = (seen.last_messages ?? []).concat(await page.$$eval(
      "[data-field=message], #notice, #feed-state", (es) => es.map((x) => x.textContent))
      .catch(() => []));
  }
  console.log(JSON.stringify(seen));
  process.exitCode = 1;
} finally {
  await browser.close();
}
