// The last lines of an endless output, bounded in lines and characters: a long run prints
// a progress line per step, and what matters (the summary, the error) comes last.

export class TailLines {
  private lines: string[] = [];
  private head = 0; // lines before this index are dropped
  private chars = 0;
  readonly maxLines: number;
  readonly maxChars: number;

  constructor(maxLines: number, maxChars: number) {
    this.maxLines = maxLines;
    this.maxChars = maxChars;
  }

  push(line: string): void {
    const kept = line.length > this.maxChars ? line.slice(-this.maxChars) : line;
    this.lines.push(kept);
    this.chars += kept.length;
    while (this.lines.length - this.head > this.maxLines || this.chars > this.maxChars) {
      this.chars -= this.lines[this.head]!.length;
      this.head++;
    }
    if (this.head > 4096 && this.head * 2 > this.lines.length) {
      this.lines = this.lines.slice(this.head); // amortised O(1) per line
      this.head = 0;
    }
  }

  get length(): number {
    return this.lines.length - this.head;
  }

  toArray(): string[] {
    return this.lines.slice(this.head);
  }
}
