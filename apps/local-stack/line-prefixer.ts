// Each child's output, line by line, behind its name, so three processes can share one terminal.
export const prefixLines = (name: string, from: NodeJS.ReadableStream, to: NodeJS.WritableStream) => {
  let partial = "";
  from.setEncoding("utf8");
  from.on("data", (chunk: string) => {
    const lines = (partial + chunk).split("\n");
    partial = lines.pop() ?? "";
    for (const line of lines) to.write(`[${name}] ${line}\n`);
  });
  from.on("end", () => {
    if (partial) to.write(`[${name}] ${partial}\n`);
    partial = "";
  });
};
