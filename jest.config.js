/** Tests are TypeScript ES modules, run through ts-jest in ESM mode (transpile only: tsc --noEmit type-checks). */
export default {
  testEnvironment: "node",
  extensionsToTreatAsEsm: [".ts"],
  moduleNameMapper: { "^(\\.{1,2}/.*)\\.ts$": "$1" },
  transform: {
    "^.+\\.ts$": ["ts-jest", { useESM: true, diagnostics: false }],
  },
  testMatch: ["<rootDir>/__tests__/**/*.test.ts"],
  testTimeout: 60000,
  maxWorkers: 2,
  // Every temporary file of a run goes under one folder, removed at the end (see the module).
  globalSetup: "<rootDir>/__tests__/support/temp-setup.js",
  globalTeardown: "<rootDir>/__tests__/support/temp-teardown.js",
};
