"""Rewrite named top-level constants of a Karpathy-style train.py, touching nothing else.

Reads {"source": str, "values": {NAME: number | string | [..]}, "optional": {...}} as
JSON on stdin (optional names are set only where the script defines them) and
writes {"source": str, "changes": [...], "errors": [...]} as JSON on stdout.

Why Python's ast rather than a regex: ast gives the exact source span of each value
expression (multi-line tuples, annotations, trailing comments, `2**17` all included),
so only those characters are replaced and every other byte of the file stays as it
was; and the result is parsed again to prove it is still valid Python that assigns
exactly the requested values. Needs only the standard library (Python >= 3.8).
"""

from __future__ import annotations

import ast
import json
import math
import re
import sys
from typing import Any, Dict, List, Optional, Tuple

Num = (int, float)


def literal(node: ast.AST) -> Any:
    """The value of a constant expression: literals, tuples/lists, unary minus, arithmetic."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str)):
        if isinstance(node.value, bool):
            raise ValueError("booleans are not supported")
        return node.value
    if isinstance(node, (ast.Tuple, ast.List)):
        items = [literal(e) for e in node.elts]
        return tuple(items) if isinstance(node, ast.Tuple) else items
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = literal(node.operand)
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.BinOp):
        a, b = literal(node.left), literal(node.right)
        if not (isinstance(a, Num) and isinstance(b, Num)):
            raise ValueError("arithmetic on non-numbers")
        ops = {ast.Pow: lambda: a**b, ast.Mult: lambda: a * b, ast.Add: lambda: a + b}
        ops.update(
            {
                ast.Sub: lambda: a - b,
                ast.Div: lambda: a / b,
                ast.FloorDiv: lambda: a // b,
            }
        )
        for op, fn in ops.items():
            if isinstance(node.op, op):
                return fn()
    raise ValueError(f"not a literal constant ({type(node).__name__})")


def span_text(encoded: List[bytes], node: ast.AST) -> str:
    sl, sc = node.lineno - 1, node.col_offset  # type: ignore[attr-defined]
    el, ec = (node.end_lineno or node.lineno) - 1, node.end_col_offset or 0  # type: ignore[attr-defined]
    joined = b"".join(encoded[sl : el + 1])
    return joined[sc : len(joined) - len(encoded[el]) + ec].decode("utf-8")


def plan(
    encoded: List[bytes], node: ast.AST, new: Any, name: str
) -> List[Tuple[ast.AST, str]]:
    """(node, replacement) pairs. Tuples and lists are rewritten element by element, so a
    multi-line tuple keeps its layout and comments."""
    old = literal(node)
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
        assert isinstance(node, (ast.Tuple, ast.List))
        out: List[Tuple[ast.AST, str]] = []
        for i, (elt, value) in enumerate(zip(node.elts, new)):
            out.extend(plan(encoded, elt, value, f"{name}[{i}]"))
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


def top_level(tree: ast.Module) -> Dict[str, List[ast.AST]]:
    found: Dict[str, List[ast.AST]] = {}
    for stmt in tree.body:
        if (
            isinstance(stmt, ast.Assign)
            and len(stmt.targets) == 1
            and isinstance(stmt.targets[0], ast.Name)
        ):
            found.setdefault(stmt.targets[0].id, []).append(stmt.value)
        elif (
            isinstance(stmt, ast.AnnAssign)
            and isinstance(stmt.target, ast.Name)
            and stmt.value is not None
        ):
            found.setdefault(stmt.target.id, []).append(stmt.value)
    return found


def rewrite(
    source: str, values: Dict[str, Any], optional: Optional[Dict[str, Any]] = None
) -> Dict[str, Any]:
    """Set `values` (each must exist) and `optional` (only those the script defines)."""
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        return {
            "source": source,
            "changes": [],
            "errors": [f"the script does not parse: {e}"],
        }
    consts = top_level(tree)
    errors: List[str] = []
    values = {**{k: v for k, v in (optional or {}).items() if k in consts}, **values}
    # ADAM_BETA1/2 (the search space's names) set the elements of a tuple ADAM_BETAS.
    merged: Dict[str, Any] = {}
    for name, value in values.items():
        m = re.fullmatch(r"ADAM_BETA([12])", name)
        if m and name not in consts and "ADAM_BETAS" in consts:
            old_node = consts["ADAM_BETAS"][0]
            try:
                current = list(merged.get("ADAM_BETAS") or literal(old_node))
            except ValueError as e:
                errors.append(f"ADAM_BETAS: {e}")
                continue
            if len(current) != 2:
                errors.append("ADAM_BETAS is not a pair")
                continue
            current[int(m.group(1)) - 1] = value
            merged["ADAM_BETAS"] = current
        else:
            merged[name] = value
    # Split only where ast counts lines (str.splitlines also splits on \f, \x1c, ...).
    lines = re.findall(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$", source)
    encoded = [line.encode("utf-8") for line in lines]
    edits: List[Tuple[int, int, int, int, str]] = []
    changes: List[Dict[str, Any]] = []
    for name, value in merged.items():
        nodes = consts.get(name)
        if not nodes:
            errors.append(f"the script has no top-level constant {name}")
            continue
        if len(nodes) > 1:
            errors.append(
                f"{name} is assigned {len(nodes)} times at top level; refusing to guess which"
            )
            continue
        node = nodes[0]
        try:
            pairs = plan(encoded, node, value, name)
        except ValueError as e:
            errors.append(f"{name}: {e}")
            continue
        for target, new_text in pairs:
            sl, sc = target.lineno - 1, target.col_offset  # type: ignore[attr-defined]
            el = (target.end_lineno or target.lineno) - 1  # type: ignore[attr-defined]
            ec = target.end_col_offset or 0  # type: ignore[attr-defined]
            edits.append((sl, sc, el, ec, new_text))
        old_text = span_text(encoded, node)
        changes.append({"name": name, "line": node.lineno, "old": old_text})  # type: ignore[attr-defined]
    if errors:
        return {"source": source, "changes": [], "errors": errors}
    for sl, sc, el, ec, new_text in sorted(edits, reverse=True):
        head = encoded[sl][:sc]
        tail = encoded[el][ec:]
        encoded[sl : el + 1] = [head + new_text.encode("utf-8") + tail]
    out = b"".join(encoded).decode("utf-8")
    check = top_level(ast.parse(out))  # still valid, and the values are what was asked
    new_lines = re.findall(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$", out)
    for change in changes:
        node = check[change["name"]][0]
        change["new"] = span_text([x.encode("utf-8") for x in new_lines], node)
    for name, value in merged.items():
        got = literal(check[name][0])
        want = tuple(value) if isinstance(got, tuple) else value
        if got != want and not (
            isinstance(got, Num) and isinstance(want, Num) and math.isclose(got, want)
        ):
            errors.append(f"{name}: rewrote to {got!r}, expected {value!r}")
    return {"source": out, "changes": changes, "errors": errors}


def main() -> int:
    request = json.load(sys.stdin)
    result = rewrite(request["source"], request["values"], request.get("optional"))
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
