"""Calculator plugin for openai-tool-proxy: models guess at arithmetic, this computes it exactly.

The expression is parsed with `ast` and only whitelisted nodes are walked, over `Fraction`s;
Python never evaluates any of it, so a hostile expression can be refused but never run.
"""

from __future__ import annotations

import ast
import math
from decimal import Context, Decimal
from fractions import Fraction

from proxy import tool

MAX_LENGTH = 1000
"""Longest expression accepted, in characters."""
MAX_EXPONENT = 10_000
"""Largest |exponent| of `**`."""
MAX_BITS = 100_000
"""Largest numerator or denominator of any value, in bits (about 30,000 digits): bounds time."""
MAX_DEPTH = 500
"""Deepest nesting evaluated, well inside Python's recursion limit."""
MAX_PRINTED_DIGITS = 4000
"""Longer exact results are approximated (and Python refuses str() of ints over 4300 digits)."""
APPROXIMATION_DIGITS = 10
"""Decimals shown when approximating a repeating fraction (significant digits below 1)."""

_MAX_DIGITS = int(MAX_BITS * math.log10(2))
_ALLOWED = "numbers, + - * / // % ** (integer powers), unary + and -, and parentheses"
_NODES = (ast.Expression, ast.Constant, ast.UnaryOp, ast.UAdd, ast.USub, ast.BinOp)
_OPERATORS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow)
_REFUSED: dict[type[ast.AST], str] = {
    ast.Name: "names",
    ast.Call: "function calls",
    ast.Attribute: "attribute access",
    ast.Subscript: "indexing",
    ast.Compare: "comparisons",
    ast.BoolOp: "'and' / 'or'",
    ast.Not: "'not'",
    ast.IfExp: "conditional expressions",
    ast.Lambda: "lambdas",
    ast.NamedExpr: "assignments (:=)",
    ast.Tuple: "commas (tuples)",
    ast.List: "lists",
    ast.Set: "sets",
    ast.Dict: "dicts",
    ast.JoinedStr: "f-strings",
    ast.BitXor: "'^' (write powers with **)",
    ast.BitAnd: "'&'",
    ast.BitOr: "'|'",
    ast.LShift: "'<<'",
    ast.RShift: "'>>'",
    ast.Invert: "'~'",
    ast.MatMult: "'@'",
}


@tool
def calculate(expression: str) -> str:
    """Evaluate an arithmetic expression exactly.

    Use this for any arithmetic instead of computing it yourself. Numbers are exact fractions,
    so 0.1 + 0.2 is exactly 0.3; a result that is not a finite decimal comes as a fraction with
    an approximation, e.g. "1/3 (≈ 0.3333333333)". Supports integers, decimals (1.5),
    scientific notation (1e3), + - * / // (floor division) % (modulo) ** (integer powers only,
    no roots), unary minus and parentheses. No variables, functions or constants like pi.

    Args:
        expression: The expression in Python syntax, e.g. "(1.5 + 2) * 3 ** 2 / 7".
    """
    return format_number(evaluate(expression))


def evaluate(expression: str) -> Fraction:
    """The exact value of `expression`; `ValueError` with the reason when refused."""
    if len(expression) > MAX_LENGTH:
        raise ValueError(f"expression too long: {len(expression)} characters, at most {MAX_LENGTH}")
    source = " ".join(expression.split())  # indentation and newlines are syntax errors in eval
    if not source:
        raise ValueError("empty expression")
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as exc:
        where = f" at column {exc.offset}" if exc.offset else ""
        raise ValueError(f"invalid expression: {exc.msg}{where}") from None
    for node in ast.walk(tree):  # check everything before computing anything
        if not isinstance(node, _NODES + _OPERATORS) or (
            isinstance(node, ast.Constant) and type(node.value) not in (int, float)
        ):
            raise ValueError(f"not allowed: {_describe(node)}. Use only {_ALLOWED}.")
    return _evaluate(tree.body, source, 0)


def _describe(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return f"the name {node.id!r} (write its numeric value instead)"
    if isinstance(node, ast.Constant):
        kind = type(node.value)
        if kind is complex:
            return "complex numbers"
        return "strings" if kind in (str, bytes) else repr(node.value)
    return _REFUSED.get(type(node), f"{type(node).__name__} expressions")


def _evaluate(node: ast.expr, source: str, depth: int) -> Fraction:
    if depth > MAX_DEPTH:
        raise ValueError(f"expression nested too deeply (more than {MAX_DEPTH} levels)")
    match node:
        case ast.Constant(value=int() as value):
            return Fraction(value)
        case ast.Constant():
            return _decimal_literal(ast.get_source_segment(source, node) or "")
        case ast.UnaryOp(op=ast.USub(), operand=operand):
            return -_evaluate(operand, source, depth + 1)
        case ast.UnaryOp(op=ast.UAdd(), operand=operand):
            return _evaluate(operand, source, depth + 1)
        case ast.BinOp(left=left, op=op, right=right):
            a = _evaluate(left, source, depth + 1)
            b = _evaluate(right, source, depth + 1)
            return _bounded(_apply(op, a, b))
    raise ValueError(f"not allowed: {_describe(node)}")  # unreachable after the whitelist


def _decimal_literal(text: str) -> Fraction:
    """A float literal as written: the parsed float has already lost 0.1's exactness."""
    literal = Decimal(text)  # accepts 1.5, 1e3, .5, 1_000.5 exactly
    exponent = literal.as_tuple().exponent
    if not isinstance(exponent, int) or abs(exponent) > _MAX_DIGITS:
        raise ValueError(f"the number {text} is out of range (at most about {_MAX_DIGITS} digits)")
    return _bounded(Fraction(literal))


def _apply(op: ast.operator, a: Fraction, b: Fraction) -> Fraction:
    if isinstance(op, ast.Div | ast.FloorDiv | ast.Mod) and b == 0:
        raise ValueError("division by zero")
    match op:
        case ast.Add():
            return a + b
        case ast.Sub():
            return a - b
        case ast.Mult():
            return a * b
        case ast.Div():
            return a / b
        case ast.FloorDiv():
            return Fraction(a // b)
        case ast.Mod():
            return a % b
        case ast.Pow():
            return _power(a, b)
    raise ValueError(f"not allowed: {_describe(op)}")  # unreachable after the whitelist


def _power(base: Fraction, exponent: Fraction) -> Fraction:
    """`base ** exponent`, checked first: 9 ** 9 ** 9 must be refused, not computed."""
    if exponent.denominator != 1:
        raise ValueError(f"exponent {exponent} is not an integer: only integer powers (no roots)")
    n = exponent.numerator
    if abs(n) > MAX_EXPONENT:
        raise ValueError(f"exponent {n} is too large: at most {MAX_EXPONENT} in absolute value")
    if base == 0 and n < 0:
        raise ValueError("division by zero")
    if _bits(base) * abs(n) > MAX_BITS:
        raise ValueError(f"result of ** is too large (more than about {_MAX_DIGITS} digits)")
    return base**n


def _bits(value: Fraction) -> int:
    return max(value.numerator.bit_length(), value.denominator.bit_length())


def _bounded(value: Fraction) -> Fraction:
    """`value`, unless it is so big (or so precise) that going on would take too long."""
    if _bits(value) > MAX_BITS:
        raise ValueError(f"a value in the calculation exceeds about {_MAX_DIGITS} digits")
    return value


def format_number(value: Fraction) -> str:
    """An integer or finite decimal exactly; otherwise the fraction and an approximation.

    E.g. "3", "0.3", "1/3 (≈ 0.3333333333)"; too many digits give only "≈ 1.23E+5000 (...)".
    """
    places = _decimal_places(value.denominator)
    if places is not None and _digits(value.numerator) + places <= MAX_PRINTED_DIGITS:
        scaled = str(abs(value.numerator) * 10**places // value.denominator)
        scaled = scaled.rjust(places + 1, "0")
        text = f"{scaled[:-places]}.{scaled[-places:]}" if places else scaled
        return f"-{text}" if value < 0 else text
    approximation = _approximate(value)
    if (
        places is None
        and _digits(value.numerator) + _digits(value.denominator) <= MAX_PRINTED_DIGITS
    ):
        return f"{value} (≈ {approximation})"
    return f"≈ {approximation} (the exact value has too many digits to print)"


def _decimal_places(denominator: int) -> int | None:
    """Decimal places 1/denominator needs, or None if it repeats (a prime other than 2 or 5)."""
    twos = (denominator & -denominator).bit_length() - 1
    rest = denominator >> twos
    fives = int(rest.bit_length() / math.log2(5))  # the only candidate: 5**k has this bit length
    return max(twos, fives) if 5**fives == rest else None


def _digits(n: int) -> int:
    """An upper bound of the decimal digits of `n`, without the slow int-to-str."""
    return int(abs(n).bit_length() * math.log10(2)) + 1


def _approximate(value: Fraction) -> str:
    """Whole digits and `APPROXIMATION_DIGITS` decimals, or that many significant digits."""
    numerator, denominator = Decimal(value.numerator), Decimal(value.denominator)
    rough = Context(prec=APPROXIMATION_DIGITS).divide(numerator, denominator)
    whole_digits = max(rough.adjusted() + 1, 0)
    if 0 < whole_digits <= MAX_PRINTED_DIGITS - APPROXIMATION_DIGITS:
        return str(Context(prec=whole_digits + APPROXIMATION_DIGITS).divide(numerator, denominator))
    return str(rough)
