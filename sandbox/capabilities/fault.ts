/** A capability called with arguments it cannot honour (unknown parameter, empty bandit…). */
export class CapabilityFault extends Error {
  override readonly name = "CapabilityFault";
}
