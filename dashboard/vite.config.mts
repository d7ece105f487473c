// The dashboard is a static bundle: `npm run build` writes it next to the server's build, which
// serves it at `/`. Everything it needs (socket.io client included) is bundled: nothing is fetched
// from the network at run time.
import { defineConfig } from 'vite';

export default defineConfig({
  base: '/',
  esbuild: { jsx: 'automatic', jsxImportSource: 'preact' },
  build: {
    outDir: '../dist/dashboard-ui',
    emptyOutDir: true,
    target: 'es2022',
    // A small app: one script and one stylesheet, named by content hash so they cache forever.
    assetsInlineLimit: 0,
  },
  server: { proxy: { '/socket.io': { target: 'http://127.0.0.1:3000', ws: true } } },
});
