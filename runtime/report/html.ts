// HTML building blocks for the report pages. Every stored string (mechanism names and code, LLM
// replies, rationales, reasons, log messages) is foreign: it goes through esc() and nothing else
// reaches the page raw except markup this project writes and the SVG vega renders (which escapes
// its own text). A Content-Security-Policy with a per-page nonce is the second line of defence.
import { randomBytes } from "node:crypto";
import { unsafeCharacter } from "../terminal-text.ts";

/** What a terminal would act on (runtime/terminal-text.ts), less the newline, which a page may show. */
const unsafe = (code: number): boolean => code !== 0x0a && unsafeCharacter(code);

/** The text with every unsafe character written visibly as \uXXXX. */
function visibleControls(text: string): string {
  let out = "";
  let from = 0;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (!unsafe(code)) continue;
    out += `${text.slice(from, i)}\\u${code.toString(16).padStart(4, "0")}`;
    from = i + 1;
  }
  return from === 0 ? text : out + text.slice(from);
}

const ENTITIES: Readonly<Record<string, string>> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&#39;",
};

/**
 * Text for an element's content or a quoted attribute value: the five HTML specials as entities,
 * control and bidi characters shown visibly as \uXXXX (as the terminal report does).
 */
export function esc(text: string | number | null | undefined): string {
  if (text === null || text === undefined) return "";
  return visibleControls(String(text)).replace(/[&<>"']/g, (ch) => ENTITIES[ch] ?? ch);
}

/** Markup this module vouches for: the only kind of string the builders below pass through unescaped. */
export interface Html {
  readonly html: string;
}

export function raw(html: string): Html {
  return { html };
}

type Child = Html | string | number | null | undefined | false | readonly Child[];

function render(child: Child): string {
  if (child === null || child === undefined || child === false) return "";
  if (Array.isArray(child)) return child.map(render).join("");
  if (typeof child === "object" && "html" in child) return child.html;
  return esc(child as string | number);
}

/** Attribute values are escaped; `true` writes a bare attribute, false/null/undefined leave it out. */
export type Attrs = Readonly<Record<string, string | number | boolean | null | undefined>>;

/** One element: attributes and children escaped unless they are Html. */
export function h(tag: string, attrs: Attrs | null, ...children: Child[]): Html {
  const attrText = Object.entries(attrs ?? {})
    .filter(([, v]) => v !== false && v !== null && v !== undefined)
    .map(([k, v]) => (v === true ? ` ${k}` : ` ${k}="${esc(v as string | number)}"`))
    .join("");
  return raw(`<${tag}${attrText}>${render(children)}</${tag}>`);
}

/** Children joined without a wrapper element. */
export function frag(...children: Child[]): Html {
  return raw(render(children));
}

/** A table: header cells, then rows of cells (each cell a child, or [attrs, child]). */
export function table(
  attrs: Attrs | null,
  head: readonly string[],
  rows: readonly (readonly (Child | readonly [Attrs, Child])[])[],
): Html {
  const cell = (c: Child | readonly [Attrs, Child]): Html =>
    isAttrCell(c) ? h("td", c[0], c[1]) : h("td", null, c as Child);
  return h(
    "table",
    attrs,
    h(
      "thead",
      null,
      h(
        "tr",
        null,
        head.map((t) => h("th", { scope: "col" }, t)),
      ),
    ),
    h(
      "tbody",
      null,
      rows.map((r) => h("tr", null, r.map(cell))),
    ),
  );
}

function isAttrCell(c: unknown): c is readonly [Attrs, Child] {
  return (
    Array.isArray(c) &&
    c.length === 2 &&
    typeof c[0] === "object" &&
    c[0] !== null &&
    !Array.isArray(c[0]) &&
    !("html" in c[0])
  );
}

/** A long text in full behind a <details> when it exceeds `limit` characters; else plain. */
export function longText(text: string, limit = 160): Html {
  if (text.length <= limit) return h("span", null, text);
  return h(
    "details",
    { class: "long" },
    h("summary", null, `${text.slice(0, limit)}…`),
    h("div", null, text),
  );
}

export function fmt(value: number | null | undefined, digits = 4): string {
  return value === null || value === undefined || !Number.isFinite(value) ? "–" : value.toFixed(digits);
}

/** Milliseconds for people: 850 ms, 12.3 s, 4 min 05 s, 2 h 03 min. */
export function duration(ms: number): string {
  if (!Number.isFinite(ms)) return "–";
  if (ms < 1000) return `${ms.toFixed(ms < 10 ? 1 : 0)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(Math.round(s - m * 60)).padStart(2, "0")} s`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, "0")} min`;
}

export interface PageOptions {
  readonly title: string;
  /** The page's content (what `serve` swaps on an update). */
  readonly body: Html;
  readonly css: string;
  readonly script: string;
  /** Set by `serve`: where the page listens for updates and fetches its new content. */
  readonly live?:
    | { readonly events: string; readonly content: string; readonly revision: string }
    | undefined;
}

/**
 * The whole document. Self-contained: no external resource of any kind. The CSP allows inline
 * styles, data: images, this page's one nonce'd script, and (served) fetches to its own origin.
 */
export function page(o: PageOptions): string {
  const nonce = randomBytes(16).toString("base64");
  const csp = [
    "default-src 'none'",
    "style-src 'unsafe-inline'",
    "img-src data:",
    `script-src 'nonce-${nonce}'`,
    o.live ? "connect-src 'self'" : "connect-src 'none'",
    "base-uri 'none'",
    "form-action 'none'",
  ].join("; ");
  const liveAttrs = o.live
    ? ` data-live-events="${esc(o.live.events)}" data-live-content="${esc(o.live.content)}" data-live-revision="${esc(o.live.revision)}"`
    : "";
  return [
    "<!doctype html>",
    '<html lang="en">',
    "<head>",
    '<meta charset="utf-8">',
    `<meta http-equiv="Content-Security-Policy" content="${esc(csp)}">`,
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    `<title>${esc(o.title)}</title>`,
    `<style>${o.css}</style>`,
    "</head>",
    `<body${liveAttrs}>`,
    `<div id="live" class="live" hidden></div>`,
    `<main id="content">${o.body.html}</main>`,
    `<div id="tip" class="tip" hidden></div>`,
    `<script nonce="${nonce}">${o.script}</script>`,
    "</body>",
    "</html>",
  ].join("\n");
}
