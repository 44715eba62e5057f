// wasi:keyvalue@0.2.0-draft2 (store, atomics, batch) over Redis, for the transpiled component.
//
// Keys are `wxnotify:{tenant}:{bucket}:{key}`: a tenant's buckets never meet another tenant's,
// and the component names only the key. Only the buckets the component opens exist.
import { SyncRedis } from './sync-redis.js';

/** The buckets the component opens (the host's `BUCKETS`, Spin's `key_value_stores`). */
export const BUCKETS = ['tokens', 'users', 'callbacks'];
/** Keys per `list-keys` page (a hint to SCAN, which may answer more or fewer). */
const LIST_PAGE = 1000;

const url = process.env.WXNOTIFY_REDIS_URL ?? 'redis://127.0.0.1:6379';
const tenant = process.env.WXNOTIFY_TENANT ?? 'default';
if (!/^[A-Za-z0-9_-]+$/.test(tenant)) {
  throw new Error(`WXNOTIFY_TENANT must be letters, digits, '_' or '-', got ${JSON.stringify(tenant)}`);
}
let redis;
/** Connects on first use, so importing this module opens nothing. */
function client() {
  redis ??= new SyncRedis(url);
  return redis;
}

/** A wasi:keyvalue `error` (thrown values become the import's `err`). */
function storeError(message) {
  return { tag: 'other', val: `redis: ${message}` };
}

/** Runs a command, turning any failure into a wasi:keyvalue error. */
function run(command, ...args) {
  try {
    return client().call(command, ...args);
  } catch (error) {
    throw storeError(error.message);
  }
}

/** Redis answers a missing value with null; WIT's option is undefined. */
const option = (value) => (value === null ? undefined : new Uint8Array(value));

class Bucket {
  #prefix;

  constructor(name) {
    this.#prefix = `wxnotify:${tenant}:${name}:`;
  }

  /** The Redis key of `key`. */
  key(key) {
    return this.#prefix + key;
  }

  get(key) {
    return option(run('get', this.key(key)));
  }

  set(key, value) {
    run('set', this.key(key), value);
  }

  delete(key) {
    run('del', [this.key(key)]);
  }

  listKeys(cursor) {
    // SCAN's own cursor is the page cursor; "0" means it went round the whole keyspace.
    const pattern = this.#prefix.replace(/[*?[\]\\]/g, '\\$&') + '*';
    const [next, keys] = run('scan', cursor ?? '0', pattern, LIST_PAGE);
    return {
      keys: keys.map((key) => key.slice(this.#prefix.length)),
      cursor: next === '0' ? undefined : next,
    };
  }
}

export const store = {
  Bucket,
  open(identifier) {
    if (!BUCKETS.includes(identifier)) {
      throw { tag: 'no-such-store' };
    }
    return new Bucket(identifier);
  },
};

class Cas {
  constructor(bucket, key, current) {
    this.bucket = bucket;
    this.key = key;
    this.value = current;
  }

  /** Reads the value the swap will be conditional on. */
  static new(bucket, key) {
    return new Cas(bucket, key, bucket.get(key));
  }

  current() {
    return this.value;
  }
}

export const atomics = {
  Cas,
  increment(bucket, key, delta) {
    return BigInt(run('incrby', bucket.key(key), delta.toString()));
  },
  swap(cas, value) {
    const swapped = run('compareAndSwap', cas.bucket.key(cas.key), cas.value, value);
    if (swapped !== 1) {
      throw { tag: 'cas-failed', val: cas };
    }
  },
};

export const batch = {
  getMany(bucket, keys) {
    const values = run('mget', keys.map((key) => bucket.key(key)));
    return keys.map((key, i) => [key, option(values[i])]);
  },
  setMany(bucket, entries) {
    run('mset', entries.map(([key, value]) => [bucket.key(key), value]));
  },
  deleteMany(bucket, keys) {
    run('del', keys.map((key) => bucket.key(key)));
  },
};
