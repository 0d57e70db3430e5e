// Builds the UI into dist/, which the hub embeds (tap-hub/build.rs). Every
// asset is a file of its own (no data: URLs, no inline script) so that the
// hub's Content-Security-Policy can forbid inline code.
import { defineConfig } from 'vite';

export default defineConfig({
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    assetsInlineLimit: 0,
    sourcemap: false,
    chunkSizeWarningLimit: 2000,
    modulePreload: { polyfill: false },
  },
  server: {
    // `npm run dev` against a hub (KUBETAP_HUB, default the default port).
    proxy: { '/api': { target: process.env.KUBETAP_HUB ?? 'http://127.0.0.1:8899', ws: true } },
  },
  test: {
    include: ['src/**/*.test.ts'],
    environment: 'node',
  },
});
