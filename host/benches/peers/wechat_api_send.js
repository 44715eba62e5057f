// The npm `wechat-api` client sending the bench's template message: what a Node.js backend
// does today.
//
// Usage: node wechat_api_send.js BASE_URL TOKEN COUNT CONCURRENCY
// Prints sends per second over COUNT sends, CONCURRENCY at a time through one client (Node's
// global agent keeps connections alive), after a warm-up.
'use strict';

const WechatAPI = require('wechat-api');

const OA_OPENID = 'oOA0000000000000000000000001';

function client(baseUrl, token) {
  // The token handed in is kept as cached: no token fetch, as in the other sides' steady state.
  const api = new WechatAPI('wx0ac0a0c0a0c00002', 's', (callback) =>
    callback(null, { accessToken: token, expireTime: Date.now() + 3600 * 1000 }),
  );
  api.endpoint = baseUrl;
  return api;
}

function send(api) {
  return new Promise((resolve, reject) => {
    api.sendTemplate(OA_OPENID, 'TPL_ORDER_SHIPPED', null, { thing1: { value: 'Order shipped' } },
      (error, answer) => {
        if (error) reject(error);
        else if (answer.errcode !== 0) reject(new Error(JSON.stringify(answer)));
        else resolve();
      });
  });
}

async function run(api, count, concurrency) {
  const perTask = Math.floor(count / concurrency);
  await Promise.all(Array.from({ length: concurrency }, async () => {
    for (let i = 0; i < perTask; i++) await send(api);
  }));
  return perTask * concurrency;
}

async function main() {
  const [baseUrl, token, count, concurrency] = process.argv.slice(2);
  const api = client(baseUrl, token);
  await run(api, 8 * Number(concurrency), Number(concurrency));
  const started = process.hrtime.bigint();
  const sent = await run(api, Number(count), Number(concurrency));
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  console.log((sent / seconds).toFixed(1));
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
