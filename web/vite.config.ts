import preact from "@preact/preset-vite";
import { defineConfig } from "vite";

// The devserver (python -m devserver) serves dist/ at / and the API at /api on one origin;
// `npm run dev` proxies /api to it for hot reloading.
export default defineConfig({
  plugins: [preact()],
  build: { outDir: "dist", emptyOutDir: true, sourcemap: false, target: "es2022" },
  server: { proxy: { "/api": `http://127.0.0.1:${process.env.PORT ?? "8000"}` } },
});
