// Builds the package twice with tsc: ES modules in dist/esm, CommonJS in dist/cjs, each with its
// declarations. The sources import each other without extensions (so that jest, swc-node and the
// server's type check read them as they are); Node's ES module loader needs the file, so the ESM
// build's relative imports get theirs here. A package.json in dist/cjs marks those files CommonJS.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');

rmSync(join(root, 'dist'), { recursive: true, force: true });
for (const project of ['tsconfig.esm.json', 'tsconfig.cjs.json']) {
  execFileSync(process.execPath, [tsc, '-p', join(root, project)], { stdio: 'inherit', cwd: root });
}
for (const file of walk(join(root, 'dist', 'esm'))) {
  if (file.endsWith('.js') || file.endsWith('.d.ts')) {
    const text = readFileSync(file, 'utf8');
    const fixed = text.replace(
      /(\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)(['"])(\.{1,2}\/[^'"]+)\2/g,
      (all, lead, q, spec) =>
        spec.endsWith('.js') ? all : `${lead}${q}${withExtension(dirname(file), spec)}${q}`,
    );
    if (fixed !== text) {
      writeFileSync(file, fixed);
    }
  }
}
mkdirSync(join(root, 'dist', 'cjs'), { recursive: true });
writeFileSync(join(root, 'dist', 'cjs', 'package.json'), '{ "type": "commonjs" }\n');

function withExtension(from, spec) {
  if (existsSync(join(from, `${spec}.js`))) {
    return `${spec}.js`;
  }
  if (existsSync(join(from, spec, 'index.js'))) {
    return `${spec}/index.js`;
  }
  throw new Error(`build: cannot resolve ${spec} from ${from}`);
}

function* walk(dir) {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) {
      yield* walk(path);
    } else {
      yield path;
    }
  }
}
