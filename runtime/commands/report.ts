// `bilevel report DIR [--out FILE]` and `bilevel serve DIR [--port N]`: a run's or a study's page,
// written to one self-contained HTML file, or served on loopback with live updates.
import { writeFileSync } from "node:fs";
import path from "node:path";
import { type Command, InvalidArgumentError } from "commander";
import { UserError } from "../errors.ts";
import { serveReport } from "../report/serve.ts";
import { openReportSource, renderDocument } from "../report/source.ts";

function port(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n > 65535)
    throw new InvalidArgumentError(`expected a port 0-65535, got "${value}"`);
  return n;
}

export function registerReportCommands(program: Command): void {
  program
    .command("report")
    .description(
      "write a run's or a study's page: one self-contained HTML file (opens from disk, no network)",
    )
    .argument("<dir>", "run folder (run.db) or study folder (study.json)")
    .option("--out <file>", "where to write it (default DIR/report.html)")
    .action(async (dir: string, options: { out?: string }) => {
      const source = openReportSource(dir);
      try {
        const html = await renderDocument(source);
        const out = path.resolve(options.out ?? path.join(source.dir, "report.html"));
        try {
          writeFileSync(out, html);
        } catch (error) {
          throw new UserError(
            `cannot write ${out}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
            1,
          );
        }
        process.stdout.write(`${out}\n`);
      } finally {
        source.close();
      }
    });
  program
    .command("serve")
    .description(
      "serve a run's or a study's page on 127.0.0.1, updating live while the run goes on (Ctrl-C stops)",
    )
    .argument("<dir>", "run folder (run.db) or study folder (study.json)")
    .option("--port <n>", "port (0: any free one)", port, 8765)
    .action(async (dir: string, options: { port: number }) => {
      const source = openReportSource(dir);
      let server: Awaited<ReturnType<typeof serveReport>>;
      try {
        server = await serveReport(source, { port: options.port });
      } catch (error) {
        source.close();
        const code = (error as NodeJS.ErrnoException).code;
        if (code === "EADDRINUSE")
          throw new UserError(
            `port ${options.port} is in use: pick another with --port (0: any free one)`,
            2,
          );
        throw error;
      }
      process.stdout.write(`serving ${source.kind} ${source.dir} at ${server.url} (Ctrl-C to stop)\n`);
      await new Promise<void>((resolve) => {
        const stop = () => {
          process.off("SIGINT", stop);
          process.off("SIGTERM", stop);
          void server.close().then(() => {
            source.close();
            process.stderr.write("\nstopped serving\n");
            resolve();
          });
        };
        process.on("SIGINT", stop);
        process.on("SIGTERM", stop);
      });
    });
}
