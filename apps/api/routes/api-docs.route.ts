import { createRequire } from "node:module";
import path from "node:path";
import { Router, type Response } from "express";
import { AppError } from "../../domain/errors/app-error.ts";
import { openApiDocument } from "../openapi/openapi-document.ts";

// Swagger UI's files, from node_modules (no CDN: these machines have no internet).
const swaggerDir = path.dirname(createRequire(import.meta.url).resolve("swagger-ui-dist/package.json"));
const assets: Record<string, string> = {
  "swagger-ui.css": "swagger-ui.css",
  "swagger-ui-bundle.js": "swagger-ui-bundle.js",
  "favicon-32x32.png": "favicon-32x32.png",
};

// No inline script: the page works under a CSP that allows only this origin's files.
const page = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Kling orchestrator API</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css">
<link rel="icon" href="/docs/assets/favicon-32x32.png">
</head>
<body>
<div id="docs"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/docs/assets/init.js"></script>
</body>
</html>
`;
const init = `window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#docs", deepLinking: true, tryItOutEnabled: false });\n`;

const securityHeaders = (res: Response) =>
  res.set({
    "content-security-policy": "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
  });

export const apiDocsRouter = (): Router => {
  const router = Router();
  router.get("/openapi.json", (_req, res) => {
    res.set("cache-control", "no-cache").json(openApiDocument());
  });
  router.get("/docs", (_req, res) => {
    securityHeaders(res).type("html").send(page);
  });
  router.get("/docs/assets/:file", (req, res) => {
    securityHeaders(res);
    if (req.params.file === "init.js") return void res.type("js").send(init);
    const file = Object.hasOwn(assets, req.params.file) ? assets[req.params.file] : undefined;
    if (!file) throw new AppError("not_found", "no such file of the docs page");
    res.sendFile(path.join(swaggerDir, file), { maxAge: "1h" });
  });
  return router;
};
