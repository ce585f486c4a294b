"""Find and rewrite the top-level constants of a Karpathy-style train.py, touching nothing else.

Reads one JSON request on stdin and writes one JSON answer on stdout:

- ``{"mode": "discover", "source": str, "folder": str | null}`` ->
  ``{"constants": [...], "imported": [...], "skipped": [...], "errors": [...]}``
- ``{"source": str, "values": {NAME: value}, "optional": {...}, "folder": ...}`` ->
  ``{"source": str, "changes": [...], "errors": [...], "constants": [...]}`` where
  ``constants`` are read back from the rewritten source (what will actually run).

A constant is a module-scope name bound exactly once, by a simple assignment whose value
is a constant expression: literals, tuples/lists, arithmetic, a few builtins (int, float,
min, max, abs, round) and names of earlier constants or of constants imported with
``from MODULE import NAME`` from a MODULE.py next to the script. Elements of a tuple or
list constant are constants of their own, named ``NAME[i]``. Values set to a name:
numbers or strings (arrays set a whole tuple/list).

Why Python's ast rather than a regex: ast gives the exact source span of each value
expression (multi-line tuples, annotations, trailing comments, ``2**17`` all included),
so only those characters are replaced and every other byte of the file stays as it
was; and the result is parsed again to prove it is still valid Python that assigns
exactly the requested values. A UTF-8 byte order mark is kept. Standard library only.
"""

from __future__ import annotations

import ast
import json
import math
import os
import re
import sys
from typing import Any, Callable, Dict, List, Optional, Tuple

Num = (int, float)
BOM = "\ufeff"
BUILTINS: Dict[str, Callable[..., Any]] = {
    "int": int,
    "float": float,
    "min": min,
    "max": max,
    "abs": abs,
    "round": round,
}
BINOPS: Dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.FloorDiv: lambda a, b: a // b,
    ast.Mod: lambda a, b: a % b,
    ast.Pow: lambda a, b: a**b,
}


class Evaluator:
    """Evaluates constant expressions; records whether other names were used."""

    def __init__(self, env: Dict[str, Any]) -> None:
        self.env = env
        self.derived = False

    def value(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str)):
            if isinstance(node.value, bool):
                raise ValueError("booleans are not supported")
            return node.value
        if isinstance(node, (ast.Tuple, ast.List)):
            items = [self.value(e) for e in node.elts]
            return tuple(items) if isinstance(node, ast.Tuple) else items
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            v = self.number(node.operand)
            return -v if isinstance(node.op, ast.USub) else v
        if isinstance(node, ast.BinOp) and type(node.op) in BINOPS:
            a, b = self.number(node.left), self.number(node.right)
            result = BINOPS[type(node.op)](a, b)
            if isinstance(result, float) and not math.isfinite(result):
                raise ValueError("not a finite number")
            return result
        if isinstance(node, ast.Name) and node.id in self.env:
            self.derived = True
            return self.env[node.id]
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in BUILTINS
            and node.func.id not in self.env
            and not node.keywords
        ):
            args = [self.number(a) for a in node.args]
            return BUILTINS[node.func.id](*args)
        raise ValueError(f"not a literal constant ({type(node).__name__})")

    def number(self, node: ast.AST) -> Any:
        v = self.value(node)
        if isinstance(v, bool) or not isinstance(v, Num):
            raise ValueError("arithmetic on non-numbers")
        return v


def literal(node: ast.AST) -> Any:
    """The value of a constant expression without names (kept for callers and tests)."""
    return Evaluator({}).value(node)


def split_lines(source: str) -> List[str]:
    """Lines as ast counts them (str.splitlines also splits on \\f, \\x1c, ...)."""
    return re.findall(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$", source)


def span_text(encoded: List[bytes], node: ast.AST) -> str:
    sl, sc = node.lineno - 1, node.col_offset  # type: ignore[attr-defined]
    el, ec = (node.end_lineno or node.lineno) - 1, node.end_col_offset or 0  # type: ignore[attr-defined]
    joined = b"".join(encoded[sl : el + 1])
    return joined[sc : len(joined) - len(encoded[el]) + ec].decode("utf-8")


def trailing_comment(encoded: List[bytes], node: ast.AST) -> str:
    """The comment after a value on its last line (`DEPTH = 8  # layers` -> `layers`)."""
    el, ec = (node.end_lineno or node.lineno) - 1, node.end_col_offset or 0  # type: ignore[attr-defined]
    rest = encoded[el][ec:].decode("utf-8", "replace").strip().lstrip(",").strip()
    return rest[1:].strip() if rest.startswith("#") else ""


class Bindings(ast.NodeVisitor):
    """Counts every binding of a name at module scope (nested scopes excepted, but
    `global NAME` inside a function counts as a module-scope binding)."""

    def __init__(self) -> None:
        self.count: Dict[str, int] = {}
        self.depth = 0

    def bind(self, name: str) -> None:
        self.count[name] = self.count.get(name, 0) + 1

    def visit_Name(self, node: ast.Name) -> None:
        if self.depth == 0 and isinstance(node.ctx, (ast.Store, ast.Del)):
            self.bind(node.id)

    def visit_Global(self, node: ast.Global) -> None:
        for name in node.names:
            self.bind(name)

    def scoped(self, node: ast.AST, name: Optional[str]) -> None:
        if name is not None and self.depth == 0:
            self.bind(name)
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self.scoped(node, node.name)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self.scoped(node, node.name)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.scoped(node, node.name)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self.scoped(node, None)

    def visit_ListComp(self, node: ast.ListComp) -> None:
        self.scoped(node, None)

    def visit_SetComp(self, node: ast.SetComp) -> None:
        self.scoped(node, None)

    def visit_DictComp(self, node: ast.DictComp) -> None:
        self.scoped(node, None)

    def visit_GeneratorExp(self, node: ast.GeneratorExp) -> None:
        self.scoped(node, None)

    def visit_alias(self, node: ast.alias) -> None:
        if self.depth == 0 and node.name != "*":
            self.bind(node.asname or node.name.split(".")[0])


def assignment(stmt: ast.stmt) -> Optional[Tuple[str, ast.AST]]:
    """(name, value) of a simple top-level `NAME = value` or `NAME: T = value`."""
    if (
        isinstance(stmt, ast.Assign)
        and len(stmt.targets) == 1
        and isinstance(stmt.targets[0], ast.Name)
    ):
        return stmt.targets[0].id, stmt.value
    if (
        isinstance(stmt, ast.AnnAssign)
        and isinstance(stmt.target, ast.Name)
        and stmt.value is not None
    ):
        return stmt.target.id, stmt.value
    return None


def imported_constants(tree: ast.Module, folder: Optional[str]) -> Dict[str, Any]:
    """Constants imported by `from MODULE import NAME` from a MODULE.py in `folder`."""
    out: Dict[str, Any] = {}
    if not folder:
        return out
    for stmt in tree.body:
        if not isinstance(stmt, ast.ImportFrom) or stmt.level or not stmt.module:
            continue
        file = os.path.join(folder, *stmt.module.split(".")) + ".py"
        try:
            with open(file, encoding="utf-8-sig") as f:
                found = discover(f.read(), None)
        except (OSError, UnicodeDecodeError):
            continue
        values = {c["name"]: c["value"] for c in found["constants"]}
        for alias in stmt.names:
            if alias.name in values:
                out[alias.asname or alias.name] = values[alias.name]
    return out


def entry(
    name: str, node: ast.AST, value: Any, derived: bool, encoded: List[bytes]
) -> Dict[str, Any]:
    text = span_text(encoded, node)
    kind = (
        "str"
        if isinstance(value, str)
        else "int"
        if isinstance(value, int)
        else "float"
    )
    return {
        "name": name,
        "line": node.lineno,  # type: ignore[attr-defined]
        "text": text,
        "value": value,
        "type": kind,
        "derived": derived,
        "powerForm": bool(re.fullmatch(r"\d+\s*\*\*\s*\d+", text)),
        "comment": trailing_comment(encoded, node),
        "node": node,
    }


def scan(source: str, folder: Optional[str]) -> Dict[str, Any]:
    """Constants with their ast nodes (for rewriting); see `discover` for the JSON form."""
    text = source[1:] if source.startswith(BOM) else source
    try:
        tree = ast.parse(text)
    except SyntaxError as e:
        return {
            "constants": [],
            "imported": {},
            "skipped": [],
            "errors": [f"the script does not parse: {e}"],
            "tree": None,
        }
    counter = Bindings()
    counter.visit(tree)
    imported = imported_constants(tree, folder)
    env: Dict[str, Any] = dict(imported)
    encoded = [line.encode("utf-8") for line in split_lines(text)]
    constants: List[Dict[str, Any]] = []
    skipped: List[Dict[str, Any]] = []
    for stmt in tree.body:
        found = assignment(stmt)
        if found is None:
            continue
        name, node = found
        times = counter.count.get(name, 0)
        if times != 1:
            reason = f"{name} is assigned {times} times at top level; refusing to guess which"
            skipped.append({"name": name, "line": stmt.lineno, "reason": reason})
            continue
        ev = Evaluator(env)
        try:
            value = ev.value(node)
        except (ValueError, TypeError, ZeroDivisionError, OverflowError) as e:
            skipped.append(
                {"name": name, "line": stmt.lineno, "reason": f"{name}: {e}"}
            )
            continue
        env[name] = value
        if isinstance(value, (tuple, list)):
            elts = node.elts if isinstance(node, (ast.Tuple, ast.List)) else []
            for i, elt in enumerate(elts):
                sub = Evaluator(env)
                try:
                    item = sub.value(elt)
                except (ValueError, TypeError, ZeroDivisionError, OverflowError):
                    continue
                if not isinstance(item, (tuple, list)):
                    element = entry(f"{name}[{i}]", elt, item, sub.derived, encoded)
                    # `ADAM_BETAS = (0.8, 0.95)  # betas`: the elements share its comment.
                    if not element["comment"]:
                        element["comment"] = trailing_comment(encoded, node)
                    constants.append(element)
            constants.append(
                {**entry(name, node, value, ev.derived, encoded), "type": "sequence"}
            )
            continue
        constants.append(entry(name, node, value, ev.derived, encoded))
    return {
        "constants": constants,
        "imported": imported,
        "skipped": skipped,
        "errors": [],
        "tree": tree,
    }


def discover(source: str, folder: Optional[str]) -> Dict[str, Any]:
    """The script's constants as JSON: scalars (and tuple elements) only; sequences are
    reachable through their elements."""
    found = scan(source, folder)
    constants = [
        {k: v for k, v in c.items() if k != "node"}
        for c in found["constants"]
        if c["type"] != "sequence"
    ]
    imported = [
        {"name": k, "value": v}
        for k, v in found["imported"].items()
        if not isinstance(v, (tuple, list))
    ]
    return {
        "constants": constants,
        "imported": imported,
        "skipped": found["skipped"],
        "errors": found["errors"],
    }


def plan(
    encoded: List[bytes], node: ast.AST, old: Any, new: Any, name: str
) -> List[Tuple[ast.AST, str]]:
    """(node, replacement) pairs. Tuples and lists are rewritten element by element, so a
    multi-line tuple keeps its layout and comments."""
    old_text = span_text(encoded, node)
    if isinstance(old, str):
        if not isinstance(new, str):
            raise ValueError(f"{name} is a string in the script; got {new!r}")
        quoted = (
            repr(new)
            if old_text.lstrip().startswith("'")
            else json.dumps(new, ensure_ascii=False)
        )
        return [(node, quoted)]
    if isinstance(old, (tuple, list)):
        if not isinstance(new, list) or len(new) != len(old):
            raise ValueError(
                f"{name} is a {len(old)}-element {type(old).__name__}; got {new!r}"
            )
        if not isinstance(node, (ast.Tuple, ast.List)):
            raise ValueError(f"{name} is not written as a literal {type(old).__name__}")
        out: List[Tuple[ast.AST, str]] = []
        for i, (elt, was, value) in enumerate(zip(node.elts, old, new)):
            out.extend(plan(encoded, elt, was, value, f"{name}[{i}]"))
        return out
    if isinstance(new, bool) or not isinstance(new, Num) or not math.isfinite(new):
        raise ValueError(f"{name} is a number in the script; got {new!r}")
    pow_form = re.fullmatch(r"(\d+)(\s*\*\*\s*)(\d+)", old_text)
    if pow_form and isinstance(old, int) and float(new).is_integer() and new > 0:
        base = int(pow_form.group(1))
        k = round(math.log(new, base)) if base > 1 else -1
        if k >= 0 and base**k == int(new):
            return [
                (node, f"{base}{pow_form.group(2)}{k}")
            ]  # keep Karpathy's 2**17 style
    if isinstance(old, int) and float(new).is_integer():
        return [(node, str(int(new)))]
    return [(node, repr(float(new)))]


def resolve_names(
    values: Dict[str, Any], known: Dict[str, Dict[str, Any]]
) -> Dict[str, Any]:
    """ADAM_BETA1/2 (the built-in search space's names) set the elements of ADAM_BETAS."""
    out: Dict[str, Any] = {}
    for name, value in values.items():
        m = re.fullmatch(r"ADAM_BETA([12])", name)
        if m and name not in known and f"ADAM_BETAS[{int(m.group(1)) - 1}]" in known:
            out[f"ADAM_BETAS[{int(m.group(1)) - 1}]"] = value
        else:
            out[name] = value
    return out


def unknown(name: str, found: Dict[str, Any]) -> str:
    for s in found["skipped"]:
        if s["name"] == name:
            return str(s["reason"])
    names = [c["name"] for c in found["constants"] if c["type"] != "sequence"]
    listed = ", ".join(names[:40]) + (", ..." if len(names) > 40 else "")
    return f"the script has no top-level constant {name} (its constants: {listed or 'none'})"


def rewrite(
    source: str,
    values: Dict[str, Any],
    optional: Optional[Dict[str, Any]] = None,
    folder: Optional[str] = None,
) -> Dict[str, Any]:
    """Set `values` (each must exist) and `optional` (only those the script defines)."""
    found = scan(source, folder)
    if found["errors"]:
        return {
            "source": source,
            "changes": [],
            "errors": found["errors"],
            "constants": [],
        }
    known = {c["name"]: c for c in found["constants"]}
    errors: List[str] = []
    wanted = {**{k: v for k, v in (optional or {}).items() if k in known}, **values}
    merged = resolve_names(wanted, known)
    for name in merged:
        if any(other.startswith(f"{name}[") for other in merged):
            errors.append(f"{name} is set both whole and by element")
    bom = source.startswith(BOM)
    text = source[1:] if bom else source
    encoded = [line.encode("utf-8") for line in split_lines(text)]
    edits: List[Tuple[int, int, int, int, str]] = []
    changes: List[Dict[str, Any]] = []
    for name, value in merged.items():
        const = known.get(name)
        if const is None:
            errors.append(unknown(name, found))
            continue
        try:
            pairs = plan(encoded, const["node"], const["value"], value, name)
        except ValueError as e:
            errors.append(f"{name}: {e}")
            continue
        for target, new_text in pairs:
            sl, sc = target.lineno - 1, target.col_offset  # type: ignore[attr-defined]
            el = (target.end_lineno or target.lineno) - 1  # type: ignore[attr-defined]
            edits.append((sl, sc, el, target.end_col_offset or 0, new_text))  # type: ignore[attr-defined]
        changes.append({"name": name, "line": const["line"], "old": const["text"]})
    if errors:
        return {"source": source, "changes": [], "errors": errors, "constants": []}
    for sl, sc, el, ec, new_text in sorted(edits, reverse=True):
        encoded[sl : el + 1] = [
            encoded[sl][:sc] + new_text.encode("utf-8") + encoded[el][ec:]
        ]
    out = (BOM if bom else "") + b"".join(encoded).decode("utf-8")
    check = discover(out, folder)  # still valid, and the values are what was asked
    if check["errors"]:
        return {
            "source": source,
            "changes": [],
            "errors": check["errors"],
            "constants": [],
        }
    back = {c["name"]: c for c in check["constants"]}
    for change in changes:
        change["new"] = back[change["name"]]["text"] if change["name"] in back else "?"
    for name, value in merged.items():
        if isinstance(value, list):
            got_items = [
                back.get(f"{name}[{i}]", {}).get("value") for i in range(len(value))
            ]
            same = all(same_value(g, w) for g, w in zip(got_items, value))
            if not same:
                errors.append(f"{name}: rewrote to {got_items!r}, expected {value!r}")
        elif name not in back or not same_value(back[name]["value"], value):
            errors.append(
                f"{name}: rewrote to {back.get(name, {}).get('value')!r}, expected {value!r}"
            )
    return {
        "source": out,
        "changes": changes,
        "errors": errors,
        "constants": check["constants"],
    }


def same_value(got: Any, want: Any) -> bool:
    if isinstance(got, Num) and isinstance(want, Num):
        return bool(got == want or math.isclose(got, want))
    return bool(got == want)


def main() -> int:
    request = json.load(sys.stdin)
    folder = request.get("folder")
    if request.get("mode") == "discover":
        result = discover(request["source"], folder)
    else:
        result = rewrite(
            request["source"], request["values"], request.get("optional"), folder
        )
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
