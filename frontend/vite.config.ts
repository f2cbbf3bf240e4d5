/**
 * Vite build of the Maskloop client. The onnxruntime-web WASM runtime files are copied into
 * `dist/ort/` so the decoder loads them from our own origin (no CDN at run time), and the dev
 * server sends the cross-origin isolation headers that threaded WASM needs.
 */
import { cpSync, existsSync, mkdirSync, readdirSync } from "node:fs";
import { resolve } from "node:path";
import { defineConfig, type Plugin } from "vite";

const ORT_DIST = resolve(__dirname, "node_modules/onnxruntime-web/dist");

function copyOrtRuntime(): Plugin {
  return {
    name: "maskloop-copy-ort-runtime",
    apply: "build",
    writeBundle(options) {
      const outDir = options.dir ?? resolve(__dirname, "dist");
      const target = resolve(outDir, "ort");
      mkdirSync(target, { recursive: true });
      for (const name of readdirSync(ORT_DIST)) {
        // the plain SIMD(+threads) runtime is all the decoder uses (no WebGPU/JSEP in workers here)
        if (/^ort-wasm-simd-threaded\.(mjs|wasm)$/.test(name)) cpSync(resolve(ORT_DIST, name), resolve(target, name));
      }
      if (!existsSync(resolve(target, "ort-wasm-simd-threaded.wasm"))) {
        throw new Error(`onnxruntime-web WASM files not found in ${ORT_DIST}`);
      }
    },
  };
}

const isolation = {
  "Cross-Origin-Opener-Policy": "same-origin",
  "Cross-Origin-Embedder-Policy": "require-corp",
};

export default defineConfig({
  base: "/",
  plugins: [copyOrtRuntime()],
  build: {
    outDir: "dist",
    target: "es2022",
    rollupOptions: {
      input: {
        main: resolve(__dirname, "index.html"),
        bench: resolve(__dirname, "bench.html"),
      },
    },
  },
  // the ort build without the bundled WASM reference: the runtime comes from dist/ort/ (wasmPaths),
  // whose separate .mjs also serves as the pthread worker script for threaded WASM
  resolve: { conditions: ["onnxruntime-web-use-extern-wasm", "module", "browser", "development|production"] },
  worker: { format: "es" },
  server: { headers: isolation, proxy: { "/api": "http://127.0.0.1:8000" } },
  preview: { headers: isolation },
  test: { environment: "node", include: ["tests/**/*.test.ts"] },
} as Parameters<typeof defineConfig>[0]);
