// The portal in Debian's Chromium, driven by playwright-core, against a server that
// crates/portcullis/tests/portal.rs started on 127.0.0.1 (PORTAL_URL, https) with history
// replayed and accounts made (PORTAL_PASSWORD for "analyst" and "viewer"). Chromium
// trusts only the server's self-signed certificate, by the SHA-256 of its public key
// (PORTAL_SPKI, base64). Screenshots go to PORTAL_SHOTS.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawn, spawnSync } from "node:child_process";
import { setTimeout as sleep } from "node:timers/promises";
import { chromium } from "playwright-core";

const base = process.env.PORTAL_URL;
const password = process.env.PORTAL_PASSWORD;
const radius = process.env.PORTAL_RADIUS; // host:port of the authentication listener
const secret = process.env.PORTAL_SECRET;
const acct = process.env.PORTAL_ACCT; // host:port of the accounting listener
const shots = process.env.PORTAL_SHOTS || mkdtempSync(join(tmpdir(), "portal-shots-"));
const spki = process.env.PORTAL_SPKI;
assert.ok(base.startsWith("https://"), `the portal is served over HTTPS: ${base}`);
assert.match(spki, /^[A-Za-z0-9+/]{43}=$/, "the SPKI hash of the server's certificate");

// No network beyond loopback: Chromium's background services stay off.
const args = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  // The one certificate accepted beyond the system's trust: the server's own.
  `--ignore-certificate-errors-spki-list=${spki}`,
];

async function browser() {
  const profile = mkdtempSync(join(tmpdir(), "portal-chromium-"));
  return chromium.launchPersistentContext(profile, {
    executablePath: "/usr/bin/chromium",
    headless: true,
    args,
    acceptDownloads: true,
  });
}

async function shot(page, name) {
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
}

/// Presses Tab until the element matching `selector` has the focus.
async function tabTo(page, selector) {
  for (let i = 0; i < 200; i++) {
    if (await page.evaluate((s) => document.activeElement && document.activeElement.matches(s), selector)) {
      return;
    }
    await page.keyboard.press("Tab");
  }
  assert.fail(`Tab never reached ${selector}`);
}

async function signIn(page, name) {
  await page.goto(`${base}/login`);
  // Keyboard only: the name field has the focus.
  await tabTo(page, "#name");
  await page.keyboard.type(name);
  await page.keyboard.press("Tab");
  await page.keyboard.type(password);
  await page.keyboard.press("Enter");
  await page.waitForURL(`${base}/`);
}

test("an analyst investigates paula and closes an alert", async () => {
  const context = await browser();
  try {
    const page = await context.newPage();
    await signIn(page, "analyst");
    await shot(page, "01-dashboard");

    // Live: a rejected login sent by radclient shows in the open dashboard without a reload.
    const rejected = page.locator("[data-key=reject]");
    const before = Number(await rejected.textContent());
    // radclient exits non-zero for the Access-Reject it expects here.
    const sent = spawnSync("radclient", ["-r", "2", "-t", "1", radius, "auth", secret], {
      input: 'User-Name = "nobody"\nUser-Password = "x"\nMessage-Authenticator = 0x00\n',
      encoding: "utf8",
    });
    assert.match(sent.stdout + sent.stderr, /Access-Reject/);
    await page.waitForFunction(
      (n) => Number(document.querySelector("[data-key=reject]").textContent) > n,
      before,
      { timeout: 5000 },
    );

    // Search from the navigation bar, by keyboard.
    await tabTo(page, "#nav-q");
    await page.keyboard.type("paula");
    await page.keyboard.press("Enter");
    await page.waitForURL(/\/users\?q=paula/);
    await shot(page, "02-users");

    await page.getByRole("link", { name: "paula", exact: true }).click();
    await page.waitForURL(/\/users\/paula/);
    await page.getByRole("link", { name: "180 days" }).click();
    await page.waitForURL(/observed=180/);
    const locations = page.locator("#locations tbody tr");
    const cities = await locations.locator("td:first-child").allTextContents();
    assert.ok(cities.includes("Moscow"), `Moscow among ${cities}`);
    await shot(page, "03-entity");

    // The far-away place on the map: a named marker that opens the timeline filtered to it.
    const marker = page.locator("#map").getByRole("link", { name: /^Moscow, RU — \d+ connections, last / });
    assert.equal(await marker.count(), 1);
    assert.equal(await page.locator("#map .travel line").count() > 0, true, "the impossible travel is a line");
    await marker.click();
    await page.waitForURL(/country=RU&city=Moscow#timeline/);
    const placeRows = page.locator("#timeline table tbody tr");
    assert.equal(await placeRows.count(), 20);
    assert.deepEqual([...new Set(await placeRows.locator("td:nth-child(11)").allTextContents())], ["Moscow"]);
    await shot(page, "03b-map-marker");

    // Filter the timeline by country: only those rows remain.
    await page.locator("#timeline select[name=country]").selectOption("RU");
    await page.locator("#timeline form.filters button").click();
    await page.waitForURL(/country=RU/);
    const rows = page.locator("#timeline table tbody tr");
    assert.equal(await rows.count(), 20);
    const countries = await rows.locator("td:nth-child(10)").allTextContents();
    assert.deepEqual([...new Set(countries)], ["RU"]);
    await shot(page, "04-timeline-ru");

    // Export by keyboard: the CSV of exactly this filter.
    await tabTo(page, "#timeline a.export-csv");
    const [download] = await Promise.all([page.waitForEvent("download"), page.keyboard.press("Enter")]);
    const csv = readFileSync(await download.path(), "utf8");
    assert.equal(csv.trimEnd().split("\r\n").length, 21, "header and 20 rows");

    // Change an alert's status; it is still changed after a reload.
    await page.goto(`${base}/alerts/1`);
    await page.locator("select#status").selectOption("closed");
    await page.getByRole("button", { name: "Save" }).click();
    await page.waitForURL(`${base}/alerts/1`);
    await page.reload();
    assert.equal((await page.locator("#alert-status").textContent()).trim(), "closed");
    await shot(page, "05-alert");
  } finally {
    await context.close();
  }
});

test("a viewer sees no settings and cannot write through the API", async () => {
  const context = await browser();
  try {
    const page = await context.newPage();
    await signIn(page, "viewer");
    assert.equal(await page.locator("#nav-settings").count(), 0);
    const settings = await page.goto(`${base}/settings`);
    assert.equal(settings.status(), 403);
    await page.goto(`${base}/`);
    const status = await page.evaluate(() =>
      fetch("/api/v1/alerts/1", {
        method: "PATCH",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ status: "open" }),
      }).then((r) => r.status),
    );
    assert.equal(status, 403);
    await shot(page, "06-viewer");
  } finally {
    await context.close();
  }
});

/// One accounting Start from `source` (a loopback address only a stored client covers);
/// resolves to whether it was acknowledged.
function accountingFrom(source, clientSecret, session) {
  return new Promise((resolve) => {
    const child = spawn("radclient", ["-r", "1", "-t", "0.3", acct, "acct", clientSecret], { stdio: ["pipe", "ignore", "ignore"] });
    child.on("exit", (code) => resolve(code === 0));
    child.stdin.end(
      `Acct-Status-Type = Start\nUser-Name = "branch-user"\nNAS-Identifier = "branch-nas"\n` +
        `Acct-Session-Id = "${session}"\nPacket-Src-IP-Address = ${source}\n`,
    );
  });
}

test("an admin adds a RADIUS client in Settings and its accounting is acknowledged within a second", async () => {
  const context = await browser();
  const clientSecret = "browser-branch-Kf8-secret-only-here";
  try {
    const page = await context.newPage();
    await signIn(page, "admin");
    await page.getByRole("link", { name: "Settings" }).click();
    await page.waitForURL(`${base}/settings`);
    // The configuration file's client is listed, read-only.
    assert.match(await page.locator("tr[data-client=local]").textContent(), /configuration file \(read-only\)/);
    const form = page.locator("#add-client");
    await form.getByLabel("Name").fill("branch-office");
    await form.getByLabel("Address (IP or CIDR)").fill("127.0.0.4");
    await form.getByLabel("Vendor").selectOption("fortinet");
    await form.getByLabel("Shared secret").fill(clientSecret);
    const since = Date.now();
    await form.getByRole("button", { name: "Add client" }).click();
    await page.locator(".notice").first().waitFor();
    // A request every 50 ms for 1.5 s; the first acknowledged one was sent within a second.
    const attempts = [];
    for (let n = 0; Date.now() - since < 1500; n++) {
      const sent = Date.now() - since;
      attempts.push(accountingFrom("127.0.0.4", clientSecret, `browser-${n}`).then((ok) => (ok ? sent : null)));
      await sleep(50);
    }
    const acknowledged = (await Promise.all(attempts)).filter((t) => t !== null);
    assert.ok(acknowledged.length > 0, "no request from the new client was acknowledged");
    assert.ok(Math.min(...acknowledged) < 1000, `first acknowledged request sent ${Math.min(...acknowledged)} ms after adding`);
    await page.reload();
    const row = page.locator("tr[data-client=branch-office]");
    assert.match(await row.textContent(), /127\.0\.0\.4\/32.*fortinet/s);
    assert.ok(!(await page.content()).includes(clientSecret), "the secret is never shown again");
    await shot(page, "07-settings-client");
  } finally {
    await context.close();
  }
});
