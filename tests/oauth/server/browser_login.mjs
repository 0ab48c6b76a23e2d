// A person's browser for tests/oauth/server/test_browser.py: Debian's Chromium driven by
// playwright-core goes to mcplane's authorization URL, allows on the consent page, signs in at
// the identity provider (its login and consent pages), and prints the URL it is finally sent to
// (the client's redirect URI, which is intercepted: nothing listens there).
//
//   node browser_login.mjs PLAYWRIGHT_NODE_MODULES AUTHORIZE_URL REDIRECT_PREFIX USER

import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const [modules, authorizeUrl, redirectPrefix, user] = process.argv.slice(2);
const { chromium } = await import(pathToFileURL(join(modules, 'playwright-core', 'index.mjs')).href);

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
let landed;
let page;
const done = new Promise((resolve) => { landed = resolve; });
try {
  page = await (await browser.newContext()).newPage();
  page.on('console', (message) => process.stderr.write(`console: ${message.text()}\n`));
  page.setDefaultTimeout(15000);
  await page.route(`${redirectPrefix}**`, async (route) => {
    landed(route.request().url());
    await route.fulfill({ status: 200, contentType: 'text/plain', body: 'back at the client' });
  });
  await page.goto(authorizeUrl);
  await page.click('button[value=allow]');            // mcplane's consent page
  for (let step = 0; step < 10; step += 1) {          // the provider's login, then its consent
    const next = await Promise.race([done.then(() => null), page.waitForSelector('form button[type=submit]')]);
    if (next === null) break;
    if (await page.$('input[name=login]')) {
      await page.fill('input[name=login]', user);
      await page.fill('input[name=password]', 'any');
    }
    await Promise.all([page.waitForLoadState('load'), next.click()]);
  }
  process.stdout.write(JSON.stringify({ url: await done }) + '\n');
} catch (error) {
  process.stderr.write(`stuck at ${page?.url()}: ${(await page?.content())?.slice(0, 1500)}\n`);
  throw error;
} finally {
  await browser.close();
}
