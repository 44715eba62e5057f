// The gateway as a user runs it: the transpiled component behind node:http, key-value in a real
// redis-server, against the WeChat API sandbox.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { Processes, gatewayEnv, postJson } from './harness.js';

const processes = new Processes();
let sandbox;
let redisUrl;

before(async () => {
  sandbox = await processes.sandbox();
  redisUrl = await processes.redis();
});

after(() => processes.stopAll());

/** An OA template message to `openid`. */
const shipped = (openid, key) => ({
  recipient: { official_account: openid },
  channels: [{ template_message: { template_id: 'TPL_ORDER_SHIPPED', data: { thing1: 'Shipped' } } }],
  ...(key ? { idempotency_key: key } : {}),
});

/** A new follower of the sandbox's official account. */
async function follower() {
  return sandbox.admin('POST', '/users', { follows_oa: true, has_unionid: true });
}

test('answers WeChat URL verification with the official vector', async () => {
  // wechat-api.md §5.1: token AAAAA.
  const gateway = await processes.gateway(
    gatewayEnv(sandbox, redisUrl, 'url-check', { WXNOTIFY_OA_CALLBACK_TOKEN: 'AAAAA' }),
  );
  const query =
    'signature=f464b24fc39322e44b38aa78f5edd27bd1441696&echostr=4375120948345356249' +
    '&timestamp=1714036504&nonce=1514711492';
  const ok = await fetch(`${gateway}/callback/oa?${query}`);
  assert.equal(ok.status, 200);
  assert.equal(await ok.text(), '4375120948345356249');

  const forged = await fetch(`${gateway}/callback/oa?${query.replace('f464', 'f465')}`);
  assert.equal(forged.status, 401);
  assert.equal((await forged.json()).error.kind, 'bad_signature');
});

test('delivers a template message and maps a follower from a subscribe push', async () => {
  const gateway = await processes.gateway(
    gatewayEnv(sandbox, redisUrl, 'deliver', {
      WXNOTIFY_OA_CALLBACK_TOKEN: 'AAAAA',
      WXNOTIFY_CALLBACK_MAX_AGE_SECS: '0',
    }),
  );
  const user = await follower();
  const sent = await postJson(gateway, '/v1/notifications', shipped(user.oa_openid, 'node-1'));
  assert.equal(sent.status, 200, JSON.stringify(sent.body));
  assert.equal(sent.body.channel, 'template_message');
  assert.equal(sent.body.openid, user.oa_openid);
  const { template } = await sandbox.admin('GET', '/messages');
  assert.ok(
    template.some((m) => m.touser === user.oa_openid && m.msgid === sent.body.msgid),
    'the sandbox delivered it',
  );

  // A plain-mode `subscribe` push (signed with the §5.1 vector) maps the follower's unionid.
  const push =
    `<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName><FromUserName><![CDATA[${user.oa_openid}]]></FromUserName>` +
    '<CreateTime>1714037059</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe]]></Event></xml>';
  const signed = 'signature=899cf89e464efb63f54ddac96b0a0a235f53aa78&timestamp=1714037059&nonce=486452656';
  for (let delivery = 0; delivery < 2; delivery++) {
    const answer = await fetch(`${gateway}/callback/oa?${signed}`, { method: 'POST', body: push });
    assert.equal(answer.status, 200);
    assert.equal(await answer.text(), 'success');
  }
  const resolved = await (await fetch(`${gateway}/v1/users/oa/${user.oa_openid}`)).json();
  assert.deepEqual(resolved, {
    // Not logged in to the mini-program yet: only a login or a sync of its side reveals it.
    mini_openid: null,
    unionid: user.unionid,
    oa_openid: user.oa_openid,
    follows_oa: true,
  });
});

test('two gateways on one Redis fetch the access token once for 200 concurrent sends', async () => {
  const env = gatewayEnv(sandbox, redisUrl, 'shared-token');
  const gateways = await Promise.all([processes.gateway(env), processes.gateway(env)]);
  const users = await Promise.all(Array.from({ length: 20 }, follower));
  const before = (await sandbox.admin('GET', '/stats')).token_fetches[sandbox.oaAppid];

  const sends = Array.from({ length: 200 }, (_, i) =>
    postJson(gateways[i % 2], '/v1/notifications', shipped(users[i % users.length].oa_openid, `shared-${i}`)),
  );
  const answers = await Promise.all(sends);
  for (const answer of answers) {
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
  }

  const stats = await sandbox.admin('GET', '/stats');
  const fetches = stats.token_fetches[sandbox.oaAppid];
  assert.equal(fetches.classic + fetches.stable - (before.classic + before.stable), 1);
  assert.equal(stats.unframed_requests, 0, 'every request carried Content-Length');
});

test('a Redis that does not answer is a 503 naming it, and a missing secret a 500 naming the key', async () => {
  // A port nothing listens on: every key-value command fails.
  const nowhere = gatewayEnv(sandbox, 'redis://127.0.0.1:1', 'no-redis');
  const gateway = await processes.gateway(nowhere);
  const user = await follower();
  const answer = await postJson(gateway, '/v1/notifications', shipped(user.oa_openid));
  assert.equal(answer.status, 503, JSON.stringify(answer.body));
  assert.equal(answer.body.error.kind, 'unavailable');
  assert.match(answer.body.error.message, /redis/);

  const { WXNOTIFY_OA_SECRET: _, ...unconfigured } = gatewayEnv(sandbox, redisUrl, 'no-secret');
  const misconfigured = await processes.gateway(unconfigured);
  const refused = await postJson(misconfigured, '/v1/notifications', shipped(user.oa_openid));
  assert.equal(refused.status, 500, JSON.stringify(refused.body));
  assert.equal(refused.body.error.kind, 'config');
  assert.match(refused.body.error.message, /oa_secret/);
});
