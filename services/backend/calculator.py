"""A small, safe arithmetic evaluator (no eval): + - * / and parentheses.

`find_expression(text)` pulls the first arithmetic expression out of free
text ("What is 2 + 3?" -> "2 + 3"); `evaluate(expr)` returns its value as a
Fraction (exact) and raises CalcError on malformed input or division by zero.
"""

import re
from fractions import Fraction

MAX_EXPRESSION_LEN = 200
MAX_DEPTH = 32

_TOKEN = re.compile(r"\s*(?:(\d+(?:\.\d+)?|\.\d+)|(.))")
_CANDIDATE = re.compile(r"[\d.\s+\-*/()]+")


class CalcError(ValueError):
    pass


def _tokenize(expr):
    tokens = []
    pos = 0
    expr = expr.strip()
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if not m:
            break
        number, op = m.group(1), m.group(2)
        if number is not None:
            tokens.append(("num", Fraction(number)))
        elif op in "+-*/()":
            tokens.append(("op", op))
        elif op.strip():
            raise CalcError(f"unexpected character {op!r}")
        pos = m.end()
    return tokens


class _Parser:
    def __init__(self, tokens):
        self.tokens = tokens
        self.i = 0
        self.binary_ops = 0

    def peek(self):
        return self.tokens[self.i] if self.i < len(self.tokens) else (None, None)

    def take(self):
        tok = self.peek()
        self.i += 1
        return tok

    def expr(self, depth):
        if depth > MAX_DEPTH:
            raise CalcError("expression nested too deeply")
        value = self.term(depth)
        while self.peek() in (("op", "+"), ("op", "-")):
            _, op = self.take()
            rhs = self.term(depth)
            self.binary_ops += 1
            value = value + rhs if op == "+" else value - rhs
        return value

    def term(self, depth):
        value = self.factor(depth)
        while self.peek() in (("op", "*"), ("op", "/")):
            _, op = self.take()
            rhs = self.factor(depth)
            self.binary_ops += 1
            if op == "*":
                value = value * rhs
            else:
                if rhs == 0:
                    raise CalcError("division by zero")
                value = value / rhs
        return value

    def factor(self, depth):
        kind, val = self.take()
        if kind == "num":
            return val
        if (kind, val) == ("op", "-"):
            return -self.factor(depth + 1)
        if (kind, val) == ("op", "+"):
            return self.factor(depth + 1)
        if (kind, val) == ("op", "("):
            inner = self.expr(depth + 1)
            if self.take() != ("op", ")"):
                raise CalcError("missing closing parenthesis")
            return inner
        raise CalcError("malformed expression")


def evaluate(expr: str) -> Fraction:
    if len(expr) > MAX_EXPRESSION_LEN:
        raise CalcError("expression too long")
    tokens = _tokenize(expr)
    if not tokens:
        raise CalcError("empty expression")
    parser = _Parser(tokens)
    value = parser.expr(0)
    if parser.i != len(tokens):
        raise CalcError("unexpected trailing input")
    return value


def _is_arithmetic(expr: str) -> bool:
    """A candidate counts when it parses (or fails only by division by zero)
    and has at least one binary operator."""
    try:
        tokens = _tokenize(expr)
        parser = _Parser(tokens)
        parser.expr(0)
        return parser.i == len(tokens) and parser.binary_ops > 0
    except CalcError as exc:
        return str(exc) == "division by zero"
    except (ValueError, ZeroDivisionError):
        return False


def find_expression(text: str):
    """Return the longest arithmetic expression in `text`, or None."""
    best = None
    for m in _CANDIDATE.finditer(text):
        cand = m.group(0).strip()
        # trim trailing sentence punctuation / dangling operators
        while cand and cand[-1] in ".+-*/(":
            cand = cand[:-1].rstrip()
        while cand and cand[0] in ".*/)":
            cand = cand[1:].lstrip()
        if not cand or not any(c.isdigit() for c in cand):
            continue
        if len(cand) > MAX_EXPRESSION_LEN:
            continue
        if _is_arithmetic(cand) and (best is None or len(cand) > len(best)):
            best = cand
    return best


def to_json_number(value: Fraction):
    """Exact integers stay integers; everything else becomes a float."""
    if value.denominator == 1:
        return int(value)
    return float(value)


def format_number(value: Fraction) -> str:
    num = to_json_number(value)
    if isinstance(num, int):
        return str(num)
    return repr(round(num, 12))
