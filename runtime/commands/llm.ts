// `bilevel llm check`: the preflight a run makes, on its own and in full: reachable, key accepted,
// model found, which structured-output modes work, latency. Exit 0 only if a run would work.
import type { Command } from "commander";
import { ConfigError, mergeRunConfig, readConfigFile } from "../config.ts";
import { apiKeyWarning, createLlmClient, type OpenAiLlmClient } from "../llm/client.ts";
import { type PreflightReport, preflight } from "../llm/preflight.ts";
import { jsonForTerminal, safeText } from "../terminal-text.ts";

interface CheckOptions {
  readonly config?: string;
  readonly json?: boolean;
}

export function registerLlmCommands(program: Command): void {
  const group = program.command("llm").description("the LLM endpoint a run uses");
  group
    .command("check")
    .description(
      "check the configured LLM endpoint: reachable, API key accepted, model found, which structured-output " +
        "modes work, latency; exit 0 only if a run would work",
    )
    .option("--config <file>", "run config (JSON); default: the built-in defaults (OPENAI_BASE_URL)")
    .option("--json", "print the report as JSON")
    .action(async (options: CheckOptions) => {
      process.exitCode = await llmCheck(options);
    });
}

function clientFor(options: CheckOptions): {
  client: OpenAiLlmClient | null;
  keyEnv: string;
  warning: string | null;
} {
  const config = options.config
    ? mergeRunConfig(readConfigFile(options.config), {}, options.config)
    : mergeRunConfig({});
  let client: OpenAiLlmClient | null;
  try {
    client = createLlmClient(config.llm, process.env);
  } catch (error) {
    throw new ConfigError((error as Error).message);
  }
  return { client, keyEnv: config.llm.apiKeyEnv, warning: apiKeyWarning(config.llm, process.env) };
}

/** The report for people: one line per check, then the verdict. */
export function formatCheck(report: PreflightReport, setting: string, warning: string | null): string {
  const lines = [
    `LLM endpoint ${report.url}, model ${report.model}, structured output ${setting}`,
    ...(warning ? [`  warning: ${warning}`] : []),
    ...report.lines.map(
      (l) =>
        `  ${l.status.padEnd(8)} ${l.check.padEnd(17)} ${l.detail}${l.latencyMs === null ? "" : ` (${l.latencyMs} ms)`}`,
    ),
    report.ok
      ? `a run would work: structured output ${report.mode}`
      : `a run would NOT work: ${report.problem ?? "unknown problem"}`,
  ];
  // Server messages and model names are foreign text.
  return `${lines.map((l) => safeText(l, { maxLength: 2000 })).join("\n")}\n`;
}

async function llmCheck(options: CheckOptions): Promise<number> {
  const { client, keyEnv, warning } = clientFor(options);
  if (!client) {
    process.stdout.write(
      "no LLM endpoint: llm.baseURL is null and OPENAI_BASE_URL is not set; a run would be offline (nothing to check)\n",
    );
    return 1;
  }
  const report = await preflight(client, { allModes: true, keyEnv, keySet: warning === null });
  if (options.json) {
    const { exchanges: _exchanges, ...rest } = report;
    process.stdout.write(`${jsonForTerminal({ ...rest, setting: client.structuredSetting, warning })}\n`);
  } else {
    process.stdout.write(formatCheck(report, client.structuredSetting, warning));
  }
  return report.ok ? 0 : 1;
}
