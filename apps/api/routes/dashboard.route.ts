import { readFileSync } from "node:fs";
import { Router, type Response } from "express";
import { AppError } from "../../domain/errors/app-error.ts";

const dir = new URL("../dashboard/", import.meta.url);
// Read once at start: three small files, the whole dashboard.
const files = {
  page: readFileSync(new URL("index.html", dir)),
  "app.js": readFileSync(new URL("app.js", dir)),
  "app.css": readFileSync(new URL("app.css", dir)),
};
const types: Record<"app.js" | "app.css", string> = { "app.js": "text/javascript", "app.css": "text/css" };

// Scripts and styles only from this origin (no inline script, so injected markup cannot run);
// images from this origin (results by their signed links) and blob: (sources, fetched with the key
// from our stored copy). Never a caller's image URL: the viewer's browser fetches nothing they named.
const dashboardCsp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

const headers = (res: Response) =>
  res.set({
    "content-security-policy": dashboardCsp,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
  });

// The account dashboard at `/`: a static page whose script calls the native API with the key the
// person signs in with. The API takes the key only from the Authorization header, never a cookie,
// so another site cannot make a signed-in browser act (no CSRF surface).
export const dashboardRouter = (): Router => {
  const router = Router();
  router.get("/", (_req, res) => {
    headers(res).type("html").send(files.page);
  });
  router.get("/dashboard/:file", (req, res) => {
    headers(res);
    const name = req.params.file;
    if (name !== "app.js" && name !== "app.css") throw new AppError("not_found", "no such file of the dashboard");
    res.type(types[name]).send(files[name]);
  });
  return router;
};
