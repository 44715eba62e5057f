// The asynchronous half of the key-value bridge (see sync-redis.js): a worker thread that owns
// the Redis connection, runs one command per message and wakes the waiting main thread.
import { workerData } from 'node:worker_threads';
import Redis from 'ioredis';

const { url, signal, port } = workerData;

// Compare-and-swap in one step on the server: the value is replaced only if it is still the one
// the caller read (ARGV[1] = '1' and equal to ARGV[2]) or still absent (ARGV[1] = '0').
const CAS = `
local current = redis.call('GET', KEYS[1])
if ARGV[1] == '1' then
  if current ~= ARGV[2] then return 0 end
elseif current then
  return 0
end
redis.call('SET', KEYS[1], ARGV[3])
return 1
`;

const redis = new Redis(url, {
  // A command waits for a reconnect at most this often before it fails: the component turns
  // the failure into `unavailable`, and the caller retries.
  maxRetriesPerRequest: 2,
  lazyConnect: false,
});
redis.defineCommand('compareAndSwap', { numberOfKeys: 1, lua: CAS });
// The bridge reports failures per command; a connection error between commands is not one.
redis.on('error', () => {});

const commands = {
  get: (key) => redis.getBuffer(key),
  set: (key, value) => redis.set(key, Buffer.from(value)),
  del: (keys) => (keys.length ? redis.del(...keys) : 0),
  mget: (keys) => (keys.length ? redis.mgetBuffer(...keys) : []),
  mset: (entries) =>
    entries.length ? redis.mset(...entries.flatMap(([key, value]) => [key, Buffer.from(value)])) : 'OK',
  scan: (cursor, pattern, count) => redis.scan(cursor, 'MATCH', pattern, 'COUNT', count),
  compareAndSwap: (key, expected, value) =>
    redis.compareAndSwap(
      key,
      expected === undefined ? '0' : '1',
      expected === undefined ? '' : Buffer.from(expected),
      Buffer.from(value),
    ),
  incrby: (key, delta) => redis.incrby(key, delta),
  quit: () => redis.quit(),
};

port.on('message', async ({ id, command, args }) => {
  let reply;
  try {
    reply = { id, value: await commands[command](...args) };
  } catch (error) {
    reply = { id, error: String(error?.message ?? error) };
  }
  port.postMessage(reply);
  Atomics.store(signal, 0, id);
  Atomics.notify(signal, 0);
});
