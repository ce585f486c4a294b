#!/usr/bin/env node
// The bilevel command line (runtime/program.ts). Node keeps the compiled code and the stripped
// TypeScript of every module loaded after this line in its compile cache (NODE_COMPILE_CACHE, else
// os.tmpdir()/node-compile-cache; NODE_DISABLE_COMPILE_CACHE=1 turns it off), so this entry
// imports nothing else statically. The sandbox child keeps a cache of its own beside it.
import module from "node:module";

module.enableCompileCache?.();
const { main } = await import("./program.ts");
process.exitCode = await main(process.argv);
