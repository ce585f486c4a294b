// The CLI loads only the command group a command line names (runtime/program.ts): the table that
// maps each top-level command to its group must name every command the groups register, and a
// command line must get what it asks for.
import { buildProgram, COMMAND_GROUPS } from "../../runtime/program.ts";

const argv = (...args: string[]) => ["node", "cli.ts", ...args];
const names = (program: { commands: readonly { name(): string }[] }) => program.commands.map((c) => c.name());

test("every top-level command is in the table, with the group that registers it", async () => {
  const all = await buildProgram();
  expect(names(all).sort()).toEqual(["test", ...Object.keys(COMMAND_GROUPS)].sort());
  for (const [command, group] of Object.entries(COMMAND_GROUPS)) {
    const only = await buildProgram(argv(command));
    const loaded = new Set(names(only));
    expect(loaded.has(command)).toBe(true);
    // Exactly the commands of that group (and `test`), nothing from the others.
    const ofGroup = Object.entries(COMMAND_GROUPS)
      .filter(([, g]) => g === group)
      .map(([c]) => c);
    expect([...loaded].sort()).toEqual(["test", ...ofGroup].sort());
  }
});

test("`mechanism check` registers check alone; the group, help and unknown commands get everything", async () => {
  const check = await buildProgram(argv("mechanism", "check", "a.ts"));
  const group = check.commands.find((c) => c.name() === "mechanism");
  expect(group?.commands.map((c) => c.name())).toEqual(["check"]);
  const mechanism = await buildProgram(argv("mechanism", "--help"));
  expect(
    mechanism.commands
      .find((c) => c.name() === "mechanism")
      ?.commands.map((c) => c.name())
      .sort(),
  ).toEqual(["approve", "check", "new", "test"]);
  for (const line of [argv("--help"), argv("frobnicate"), argv()]) {
    expect(names(await buildProgram(line)).sort()).toEqual(["test", ...Object.keys(COMMAND_GROUPS)].sort());
  }
});
