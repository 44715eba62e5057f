// wasi:config/store@0.2.0-draft-2024-09-27 from the environment: config key `mini_appid` is
// the variable WXNOTIFY_MINI_APPID, and so on for every key the component reads (the list is
// `KEYS` in guest/src/wechat/config.rs, also in the README). An unset or empty variable is an
// unset key.

/** The environment variable of config key `key`. */
export function variableOf(key) {
  return `WXNOTIFY_${key.toUpperCase()}`;
}

/** The gateway's own settings, which share the prefix but are not the component's config. */
const SETTINGS = new Set(['WXNOTIFY_REDIS_URL', 'WXNOTIFY_TENANT', 'WXNOTIFY_BIND']);

export const store = {
  get(key) {
    const value = process.env[variableOf(key)];
    return value === undefined || value === '' ? undefined : value;
  },
  getAll() {
    const prefix = 'WXNOTIFY_';
    return Object.entries(process.env)
      .filter(([name, value]) => name.startsWith(prefix) && !SETTINGS.has(name) && value !== '')
      .map(([name, value]) => [name.slice(prefix.length).toLowerCase(), value]);
  },
};
