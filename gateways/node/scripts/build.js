// Transpiles the built component into dist/ with jco, mapping its key-value and config imports
// to this package's modules (everything else comes from preview2-shim).
//
//   npm run build                       the component `cargo build -p wxnotify` built
//   WXNOTIFY_COMPONENT=path.wasm npm run build
import { existsSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readFile } from 'node:fs/promises';
import { transpile } from '@bytecodealliance/jco';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const component =
  process.env.WXNOTIFY_COMPONENT ??
  join(root, '../../target/wasm-guest/wasm32-wasip2/release/wxnotify_guest.wasm');
if (!existsSync(component)) {
  console.error(
    `wxnotify: no component at ${component}: build it first (\`cargo build -p wxnotify\` ` +
      'from the repository root builds it there), or set WXNOTIFY_COMPONENT',
  );
  process.exit(2);
}

const { files } = await transpile(await readFile(component), {
  name: 'wxnotify_guest',
  map: {
    'wasi:keyvalue/*': '../src/keyvalue.js#*',
    'wasi:config/*': '../src/config.js#*',
  },
  quiet: true,
});
const dist = join(root, 'dist');
await rm(dist, { recursive: true, force: true });
for (const [name, bytes] of Object.entries(files)) {
  const path = join(dist, name);
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, bytes);
}
console.log(`transpiled ${component} into ${dist}`);
