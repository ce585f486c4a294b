// The mechanism API version this runtime implements: the host's copy of `ApiVersion` in index.d.ts
// (a test keeps the two equal). A manifest's `apiVersion` above it is refused at compile.
import type { ApiVersion } from "./index.d.ts";

export const API_VERSION: ApiVersion = 1;
