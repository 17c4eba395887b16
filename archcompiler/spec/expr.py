"""Parameter expressions: `$k`, `$(2*k)`, `$(k + l // 2)`, `$(2 if i == 0 else 1)`.

A tiny recursive-descent parser over integers/floats, names, + - * / // %, comparisons
(== != < <= > >=), `and`/`or`/`not`, `A if C else B`, min() and max(), with
parentheses. Nothing is ever passed to Python's eval: the AST below is evaluated by
`Expr.evaluate` and rendered to source by `Expr.render` (used by the code generator).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import close_matches

MAX_EXPR_CHARS = 200
MAX_MAGNITUDE = 10**12  # any intermediate value beyond this is refused

_TOKEN = re.compile(r"\s*(?:(\d+\.\d*|\.\d+|\d+)|([A-Za-z_][A-Za-z0-9_]*)|(//|==|!=|<=|>=|[-+*/%()<>,]))")
_KEYWORDS = {"and", "or", "not", "if", "else"}
_FUNCTIONS = {"min": min, "max": max}
_COMPARE = {"==": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
            "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}


class ExprError(ValueError):
    pass


@dataclass(frozen=True)
class Expr:
    """A parsed parameter expression (immutable AST node)."""

    kind: str  # "num" | "name" | "neg" | "not" | "if" | "call" | binary operator
    value: object = None  # number, name, function name, or the condition of an "if"
    left: "Expr | None" = None
    right: "Expr | None" = None
    text: str = ""
    args: tuple = ()  # arguments of a "call"

    @classmethod
    def __get_pydantic_core_schema__(cls, source, handler):
        from pydantic_core import core_schema

        return core_schema.is_instance_schema(cls)

    @classmethod
    def __get_pydantic_json_schema__(cls, schema, handler):
        return {"type": "string", "pattern": r"^\$", "description": "$name or $(expression)"}

    def names(self) -> set[str]:
        if self.kind == "name":
            return {self.value}
        out: set[str] = set()
        for child in (self.left, self.right, self.value if self.kind == "if" else None,
                      *self.args):
            if child is not None:
                out |= child.names()
        return out

    def evaluate(self, env: dict):
        if self.kind == "num":
            return self.value
        if self.kind == "name":
            if self.value not in env:
                raise ExprError(unknown_name_message(self.value, env))
            return env[self.value]
        if self.kind == "neg":
            return _check(-_number(self.left.evaluate(env)))
        if self.kind == "not":
            return not _boolean(self.left.evaluate(env), "not")
        if self.kind == "if":
            cond = _boolean(self.value.evaluate(env), "if")
            return (self.left if cond else self.right).evaluate(env)
        if self.kind == "call":
            return _check(_FUNCTIONS[self.value](*(_number(a.evaluate(env)) for a in self.args)))
        if self.kind in ("and", "or"):
            a = _boolean(self.left.evaluate(env), self.kind)
            if a == (self.kind == "or"):  # short-circuit, as Python
                return a
            return _boolean(self.right.evaluate(env), self.kind)
        if self.kind in _COMPARE:
            return _COMPARE[self.kind](_number(self.left.evaluate(env)),
                                       _number(self.right.evaluate(env)))
        a = _number(self.left.evaluate(env))
        b = _number(self.right.evaluate(env))
        if self.kind in ("/", "//", "%") and b == 0:
            raise ExprError(f"division by zero in {self.text!r}")
        if self.kind == "+":
            r = a + b
        elif self.kind == "-":
            r = a - b
        elif self.kind == "*":
            r = a * b
        elif self.kind == "/":
            r = a / b
        elif self.kind == "//":
            r = a // b
        else:
            r = a % b
        return _check(r)

    def render(self, rename=lambda n: n) -> str:
        """Python source for this expression (names mapped through `rename`)."""
        if self.kind == "num":
            return repr(self.value)
        if self.kind == "name":
            return rename(self.value)
        if self.kind == "neg":
            return f"(-{self.left.render(rename)})"
        if self.kind == "not":
            return f"(not {self.left.render(rename)})"
        if self.kind == "if":
            return (f"({self.left.render(rename)} if {self.value.render(rename)} "
                    f"else {self.right.render(rename)})")
        if self.kind == "call":
            return f"{self.value}({', '.join(a.render(rename) for a in self.args)})"
        return f"({self.left.render(rename)} {self.kind} {self.right.render(rename)})"

    def __str__(self) -> str:
        return self.text


def unknown_name_message(name: str, env) -> str:
    """`unknown parameter 'pool_outs'; did you mean 'pool_out'? (in scope: ...)`"""
    names = sorted(k for k in env if isinstance(k, str) and not k.startswith("_"))
    msg = f"unknown parameter {name!r}"
    close = close_matches(name, names, n=1, cutoff=0.6)
    if close:
        msg += f"; did you mean {close[0]!r}?"
    if names:
        shown = names if len(names) <= 16 else names[:16] + [f"... {len(names) - 16} more"]
        msg += f" (parameters in scope: {', '.join(shown)})"
    else:
        msg += " (no parameters are in scope here: declare it under 'params')"
    return msg


def _number(v):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ExprError(f"arithmetic on a non-number ({v!r})")
    return v


def _boolean(v, what: str):
    if not isinstance(v, bool):
        raise ExprError(f"'{what}' needs true or false (a comparison), got {v!r}")
    return v


def _check(v):
    if abs(v) > MAX_MAGNITUDE:
        raise ExprError(f"value {v} is out of range (|x| <= {MAX_MAGNITUDE})")
    return v


def parse_expr(text: str) -> Expr:
    """Parse `$name` or `$(expression)`."""
    if len(text) > MAX_EXPR_CHARS:
        raise ExprError(f"expression longer than {MAX_EXPR_CHARS} characters")
    if not text.startswith("$"):
        raise ExprError(f"expected a $parameter or $(expression), got {text!r}")
    body = text[1:]
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", body):
        return Expr("name", body, text=text)
    if not (body.startswith("(") and body.endswith(")")):
        raise ExprError(
            f"{text!r}: write $name for a parameter, or $( ... ) around arithmetic, e.g. $(2*k)"
        )
    tokens = _tokenize(body, text)
    parser = _Parser(tokens, text)
    expr = parser.expression(0)
    if parser.pos != len(tokens):
        raise ExprError(f"{text!r}: unexpected {tokens[parser.pos][1]!r}")
    return expr


def _tokenize(body: str, text: str) -> list[tuple[str, object]]:
    tokens, pos = [], 0
    while pos < len(body):
        if body[pos:].strip() == "":
            break
        m = _TOKEN.match(body, pos)
        if not m:
            raise ExprError(f"{text!r}: unexpected character {body[pos:].lstrip()[0]!r}")
        num, name, op = m.groups()
        if num is not None:
            tokens.append(("num", float(num) if "." in num else int(num)))
        elif name is not None:
            tokens.append(("op", name) if name in _KEYWORDS else ("name", name))
        else:
            tokens.append(("op", op))
        pos = m.end()
    return tokens


class _Parser:
    MAX_DEPTH = 32

    def __init__(self, tokens, text):
        self.tokens, self.text, self.pos = tokens, text, 0

    def peek(self):
        return self.tokens[self.pos] if self.pos < len(self.tokens) else (None, None)

    def expression(self, depth):
        if depth > self.MAX_DEPTH:
            raise ExprError(f"{self.text!r}: nested too deeply")
        then = self.disjunction(depth)
        if self.peek() != ("op", "if"):
            return then
        self.pos += 1
        cond = self.disjunction(depth + 1)
        if self.peek() != ("op", "else"):
            raise ExprError(f"{self.text!r}: 'A if CONDITION else B' needs its 'else'")
        self.pos += 1
        return Expr("if", cond, left=then, right=self.expression(depth + 1), text=self.text)

    def _binary(self, ops, sub, depth):
        left = sub(depth)
        while self.peek()[0] == "op" and self.peek()[1] in ops:
            op = self.tokens[self.pos][1]
            self.pos += 1
            left = Expr(op, left=left, right=sub(depth), text=self.text)
        return left

    def disjunction(self, depth):
        return self._binary(("or",), self.conjunction, depth)

    def conjunction(self, depth):
        return self._binary(("and",), self.inversion, depth)

    def inversion(self, depth):
        if self.peek() == ("op", "not"):
            self.pos += 1
            return Expr("not", left=self.inversion(depth + 1), text=self.text)
        left = self.arith(depth)
        if self.peek()[0] == "op" and self.peek()[1] in _COMPARE:
            op = self.tokens[self.pos][1]
            self.pos += 1
            left = Expr(op, left=left, right=self.arith(depth), text=self.text)
        return left

    def arith(self, depth):
        if depth > self.MAX_DEPTH:
            raise ExprError(f"{self.text!r}: nested too deeply")
        left = self.term(depth)
        while self.peek() in (("op", "+"), ("op", "-")):
            op = self.tokens[self.pos][1]
            self.pos += 1
            left = Expr(op, left=left, right=self.term(depth), text=self.text)
        return left

    def term(self, depth):
        left = self.unary(depth)
        while self.peek()[0] == "op" and self.peek()[1] in ("*", "/", "//", "%"):
            op = self.tokens[self.pos][1]
            self.pos += 1
            left = Expr(op, left=left, right=self.unary(depth), text=self.text)
        return left

    def unary(self, depth):
        kind, value = self.peek()
        if (kind, value) == ("op", "-"):
            self.pos += 1
            return Expr("neg", left=self.unary(depth + 1), text=self.text)
        if (kind, value) == ("op", "("):
            self.pos += 1
            inner = self.expression(depth + 1)
            if self.peek() != ("op", ")"):
                raise ExprError(f"{self.text!r}: missing ')'")
            self.pos += 1
            return inner
        if kind == "name" and self.pos + 1 < len(self.tokens) and self.tokens[self.pos + 1] == ("op", "("):
            if value not in _FUNCTIONS:
                raise ExprError(f"{self.text!r}: unknown function {value!r} (functions: "
                                f"{', '.join(sorted(_FUNCTIONS))})")
            self.pos += 2
            args = [self.expression(depth + 1)]
            while self.peek() == ("op", ","):
                self.pos += 1
                args.append(self.expression(depth + 1))
            if self.peek() != ("op", ")"):
                raise ExprError(f"{self.text!r}: missing ')' after the arguments of {value}()")
            self.pos += 1
            return Expr("call", value, text=self.text, args=tuple(args))
        if kind in ("num", "name"):
            self.pos += 1
            return Expr(kind, value, text=self.text)
        raise ExprError(f"{self.text!r}: expected a number or a name"
                        + (f", got {value!r}" if value else " at the end"))
