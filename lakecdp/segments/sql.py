"""SQL segments: a boolean SQL expression over the profile view, for analysts.

    sql: customer.city = 'New York' AND orders >= 2 AND monetary >= 300 AND orders_7d = 0

A bare name is a column of profile_features or profile_scores; `customer.NAME` is a CRM column a
rule may read (conf/base/customers.yaml). The expression is parsed here, not handed to Spark's SQL
parser: only a boolean expression is accepted (no statement, subquery, UDF or DDL can be spelled),
every column must be known, every function must be on the allow-list, and types are checked when
the segment is loaded. The tree is then run by both executors, as every rule is: `column()` builds
the Spark Column (batch), `evaluate()` runs it in Python (the online state), both with SQL's
three-valued logic, so a null compares to nothing and a segment holds only when the whole
expression is true.

Grammar (keywords in any case):
    expr       := and (OR and)*
    and        := not (AND not)*
    not        := NOT not | comparison
    comparison := sum [ (= | == | != | <> | < | <= | > | >=) sum
                      | IS [NOT] NULL | [NOT] IN (literal, ...) | [NOT] BETWEEN sum AND sum | [NOT] LIKE 'pattern' ]
    sum        := product ((+ | -) product)*
    product    := unary ((* | /) unary)*
    unary      := - unary | primary
    primary    := number | 'text' | TRUE | FALSE | NULL | DATE 'YYYY-MM-DD' | TIMESTAMP 'ISO-8601'
                | name | customer.name | function(expr, ...) | (expr)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, NoReturn

from pyspark.sql import Column, functions as F

# function -> (fewest, most arguments); `least`/`greatest` skip nulls as Spark's do.
FUNCTIONS = {"coalesce": (1, 16), "lower": (1, 1), "upper": (1, 1), "abs": (1, 1), "least": (2, 16), "greatest": (2, 16), "length": (1, 1)}
# Words that start a statement or a subquery: named in the error so the writer knows why.
_STATEMENT_WORDS = {
    "select",
    "from",
    "where",
    "exists",
    "with",
    "insert",
    "update",
    "delete",
    "merge",
    "drop",
    "create",
    "alter",
    "truncate",
    "grant",
    "union",
    "join",
}
_TOKEN = re.compile(
    r"\s*(?:(?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)|(?P<text>'(?:[^']|'')*')|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op><=|>=|<>|!=|==|[=<>+\-*/(),.])|(?P<bad>\S))"
)
NUMBER, TEXT, BOOLEAN, DATE, TIMESTAMP, NULL = "number", "string", "boolean", "date", "timestamp", "null"
# Spark types of the columns -> the kinds the checker compares.
_KINDS = {
    "string": TEXT,
    "int": NUMBER,
    "integer": NUMBER,
    "bigint": NUMBER,
    "long": NUMBER,
    "double": NUMBER,
    "float": NUMBER,
    "boolean": BOOLEAN,
    "date": DATE,
    "timestamp": TIMESTAMP,
}


class SqlError(ValueError):
    """An expression that is not an allowed boolean SQL expression over the profile view."""


@dataclass(frozen=True)
class Node:
    op: str  # literal | column | and | or | not | compare | null | in | between | like | arith | neg | call
    args: tuple[Any, ...]
    kind: str  # the value's kind: number, string, boolean, date, timestamp or null


@dataclass(frozen=True)
class SqlRule:
    """A segment rule written in SQL: its text, its checked tree and the columns it reads."""

    text: str
    tree: Node
    profile_columns: tuple[str, ...]  # of profile_features / profile_scores
    customer_columns: tuple[tuple[str, str], ...]  # (CRM column, Spark type)


def parse_sql(text: str, profile_columns: Mapping[str, str], customer_columns: Mapping[str, str]) -> SqlRule:
    """Parse and check `text` (see the module doc); column maps are name -> Spark type."""
    parser = _Parser(text, profile_columns, customer_columns)
    tree = parser.expression()
    left_over = parser.peek()
    if left_over is not None:
        parser.fail(f"unexpected {left_over[1]!r} after a complete expression")
    if tree.kind not in (BOOLEAN, NULL):
        raise SqlError(f"the expression gives a {tree.kind}, not true/false. Fix: compare it, e.g. orders >= 2")
    return SqlRule(text, tree, tuple(sorted(parser.profile_seen)), tuple(sorted(parser.customer_seen.items())))


class _Parser:
    def __init__(self, text: str, profile_columns: Mapping[str, str], customer_columns: Mapping[str, str]) -> None:
        self.text = text
        self.profile_columns, self.customer_columns = profile_columns, customer_columns
        self.profile_seen: set[str] = set()
        self.customer_seen: dict[str, str] = {}
        self.tokens: list[tuple[str, str, int]] = []
        position = 0
        while position < len(text):
            match = _TOKEN.match(text, position)
            if match is None or match.end() == position:
                break  # trailing spaces
            kind = match.lastgroup
            value = match.group(kind) if kind else ""
            if kind == "bad":
                raise SqlError(f"unexpected character {value!r} at position {match.start(kind) + 1}")
            if kind is not None:
                self.tokens.append((kind, value, match.start(kind) + 1))
            position = match.end()
        self.at = 0

    # -- tokens ------------------------------------------------------------------------------------

    def peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def fail(self, message: str) -> NoReturn:
        token = self.peek()
        where = f" at position {token[2]}" if token else " at the end"
        raise SqlError(f"{message}{where}")

    def word(self, *words: str) -> bool:
        """Consume the next token when it is one of these keywords."""
        token = self.peek()
        if token is not None and token[0] == "name" and token[1].lower() in words:
            self.at += 1
            return True
        return False

    def symbol(self, *symbols: str) -> str | None:
        token = self.peek()
        if token is not None and token[0] == "op" and token[1] in symbols:
            self.at += 1
            return token[1]
        return None

    def expect(self, symbol: str) -> None:
        if self.symbol(symbol) is None:
            self.fail(f"expected {symbol!r}")

    # -- grammar -----------------------------------------------------------------------------------

    def expression(self) -> Node:
        node = self.conjunction()
        while self.word("or"):
            node = _logic("or", node, self.conjunction())
        return node

    def conjunction(self) -> Node:
        node = self.negation()
        while self.word("and"):
            node = _logic("and", node, self.negation())
        return node

    def negation(self) -> Node:
        if self.word("not"):
            inner = self.negation()
            _need(inner, BOOLEAN, "NOT")
            return Node("not", (inner,), BOOLEAN)
        return self.comparison()

    def comparison(self) -> Node:
        left = self.sum()
        operator = self.symbol("=", "==", "!=", "<>", "<", "<=", ">", ">=")
        if operator is not None:
            right = self.sum()
            operator = {"==": "=", "<>": "!="}.get(operator, operator)
            left, right = _comparable(left, right, operator)
            return Node("compare", (operator, left, right), BOOLEAN)
        if self.word("is"):
            negated = self.word("not")
            if not self.word("null"):
                self.fail("expected NULL after IS")
            return Node("null", (left, negated), BOOLEAN)
        negated = self.word("not")
        if self.word("in"):
            self.expect("(")
            values = [self.sum()]
            while self.symbol(","):
                values.append(self.sum())
            self.expect(")")
            checked = tuple(_comparable(left, value, "in")[1] for value in values)
            if any(v.op != "literal" for v in checked):
                raise SqlError("IN takes a list of literal values, e.g. loyalty_tier IN ('gold', 'platinum')")
            return _maybe_not(Node("in", (left, checked), BOOLEAN), negated)
        if self.word("between"):
            low = self.sum()
            if not self.word("and"):
                self.fail("expected AND in BETWEEN")
            high = self.sum()
            _, low = _comparable(left, low, "between")
            _, high = _comparable(left, high, "between")
            return _maybe_not(Node("between", (left, low, high), BOOLEAN), negated)
        if self.word("like"):
            pattern = self.sum()
            if pattern.op != "literal" or pattern.kind != TEXT or left.kind not in (TEXT, NULL):
                raise SqlError("LIKE compares a text column with a quoted pattern, e.g. customer.city LIKE 'New %'")
            return _maybe_not(Node("like", (left, pattern.args[0]), BOOLEAN), negated)
        if negated:
            self.fail("expected IN, BETWEEN or LIKE after NOT")
        return left

    def sum(self) -> Node:
        node = self.product()
        while (operator := self.symbol("+", "-")) is not None:
            node = _arith(operator, node, self.product())
        return node

    def product(self) -> Node:
        node = self.unary()
        while (operator := self.symbol("*", "/")) is not None:
            node = _arith(operator, node, self.unary())
        return node

    def unary(self) -> Node:
        if self.symbol("-"):
            inner = self.unary()
            _need(inner, NUMBER, "-")
            return Node("neg", (inner,), NUMBER)
        return self.primary()

    def primary(self) -> Node:
        token = self.peek()
        if token is None:
            self.fail("the expression ends too early")
        kind, value, _ = token
        if kind == "number":
            self.at += 1
            return Node("literal", (float(value) if any(c in value for c in ".eE") else int(value),), NUMBER)
        if kind == "text":
            self.at += 1
            return Node("literal", (value[1:-1].replace("''", "'"),), TEXT)
        if self.symbol("("):
            inner = self.expression()
            self.expect(")")
            return inner
        if kind != "name":
            self.fail(f"unexpected {value!r}")
        lowered = value.lower()
        if lowered in _STATEMENT_WORDS:
            self.fail(f"{value.upper()} is not allowed: a SQL segment is one boolean expression (no statement, subquery or join)")
        self.at += 1
        if lowered in ("true", "false"):
            return Node("literal", (lowered == "true",), BOOLEAN)
        if lowered == "null":
            return Node("literal", (None,), NULL)
        following = self.peek()
        if lowered in ("date", "timestamp") and following is not None and following[0] == "text":
            return _typed_literal(lowered, self.primary().args[0])
        if self.symbol("("):
            return self.call(lowered, value)
        if lowered == "customer" and self.symbol("."):
            attribute = self.peek()
            if attribute is None or attribute[0] != "name":
                self.fail("expected an attribute name after customer.")
            self.at += 1
            name = attribute[1].lower()
            if name not in self.customer_columns:
                raise SqlError(
                    f"unknown customer attribute {name!r} at position {attribute[2]}. Fix: declare it (pii: false) in "
                    f"conf/base/customers.yaml, or use one of {', '.join(self.customer_columns)}"
                )
            self.customer_seen[name] = self.customer_columns[name]
            return Node("column", ("customer", name), _kind(self.customer_columns[name]))
        if following is not None and following[1] == ".":
            self.fail(f"{value}.: only customer.<attribute> names a column of another table")
        if lowered not in self.profile_columns:
            raise SqlError(
                f"unknown column {value!r} at position {token[2]}. Fix: use a profile column ({', '.join(self.profile_columns)}) "
                "or customer.<attribute>"
            )
        self.profile_seen.add(lowered)
        return Node("column", ("profile", lowered), _kind(self.profile_columns[lowered]))

    def call(self, name: str, written: str) -> Node:
        if name not in FUNCTIONS:
            self.fail(f"function {written}() is not allowed (no UDFs). Fix: use one of {', '.join(f'{f}()' for f in FUNCTIONS)}")
        arguments = [self.expression()] if self.symbol(")") is None else []
        if arguments:
            while self.symbol(","):
                arguments.append(self.expression())
            self.expect(")")
        fewest, most = FUNCTIONS[name]
        if not fewest <= len(arguments) <= most:
            raise SqlError(f"{name}() takes {fewest}{'' if fewest == most else f' to {most}'} arguments, got {len(arguments)}")
        kinds = {a.kind for a in arguments} - {NULL}
        if name in ("lower", "upper", "length"):
            _need(arguments[0], TEXT, f"{name}()")
            return Node("call", (name, tuple(arguments)), NUMBER if name == "length" else TEXT)
        if name == "abs":
            _need(arguments[0], NUMBER, "abs()")
            return Node("call", (name, tuple(arguments)), NUMBER)
        if len(kinds) > 1:
            raise SqlError(f"{name}() mixes {' and '.join(sorted(kinds))} arguments")
        return Node("call", (name, tuple(arguments)), kinds.pop() if kinds else NULL)


def _kind(spark_type: str) -> str:
    return _KINDS.get(spark_type.lower(), TEXT)


def _need(node: Node, kind: str, where: str) -> None:
    if node.kind not in (kind, NULL):
        raise SqlError(f"{where} needs a {kind}, got a {node.kind}")


def _logic(op: str, left: Node, right: Node) -> Node:
    _need(left, BOOLEAN, op.upper())
    _need(right, BOOLEAN, op.upper())
    return Node(op, (left, right), BOOLEAN)


def _maybe_not(node: Node, negated: bool) -> Node:
    return Node("not", (node,), BOOLEAN) if negated else node


def _arith(op: str, left: Node, right: Node) -> Node:
    _need(left, NUMBER, op)
    _need(right, NUMBER, op)
    return Node("arith", (op, left, right), NUMBER)


def _typed_literal(kind: str, text: str) -> Node:
    try:
        if kind == "date":
            return Node("literal", (date.fromisoformat(text),), DATE)
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise SqlError(f"{kind.upper()} {text!r} is not an ISO-8601 {kind}") from None
    return Node("literal", ((at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC),), TIMESTAMP)


def _comparable(left: Node, right: Node, where: str) -> tuple[Node, Node]:
    """Both sides of a comparison, a quoted date or instant beside a date or timestamp column read as one."""
    for this, other in ((left, right), (right, left)):
        if other.op == "literal" and other.kind == TEXT and this.kind in (DATE, TIMESTAMP):
            typed = _typed_literal(this.kind, other.args[0])
            return (left, typed) if other is right else (typed, right)
    if NULL not in (left.kind, right.kind) and left.kind != right.kind:
        raise SqlError(f"{where} compares a {left.kind} with a {right.kind}")
    return left, right


# -- the batch executor: Spark Columns -------------------------------------------------------------

_SPARK_COMPARE: dict[str, Callable[[Column, Column], Column]] = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def column(node: Node, customer: str = "customer") -> Column:
    """The tree as a Spark Column over the per-customer row (profile columns, and `customer` the CRM struct)."""
    op, args = node.op, node.args
    if op == "literal":
        return F.lit(args[0])
    if op == "column":
        return F.col(args[1]) if args[0] == "profile" else F.col(customer)[args[1]]
    if op in ("and", "or"):
        left, right = column(args[0], customer), column(args[1], customer)
        return left & right if op == "and" else left | right
    if op == "not":
        return ~column(args[0], customer)
    if op == "compare":
        return _SPARK_COMPARE[args[0]](column(args[1], customer), column(args[2], customer))
    if op == "null":
        value = column(args[0], customer)
        return value.isNotNull() if args[1] else value.isNull()
    if op == "in":
        value = column(args[0], customer)
        return value.isin([v.args[0] for v in args[1]])
    if op == "between":
        value = column(args[0], customer)
        return (value >= column(args[1], customer)) & (value <= column(args[2], customer))
    if op == "like":
        return column(args[0], customer).like(args[1])
    if op == "neg":
        return -column(args[0], customer)
    if op == "arith":
        left, right = column(args[1], customer).cast("double"), column(args[2], customer).cast("double")
        return {"+": left + right, "-": left - right, "*": left * right, "/": F.try_divide(left, right)}[args[0]]
    if op == "call":
        name, arguments = args
        values = [column(a, customer) for a in arguments]
        if name == "coalesce":
            return F.coalesce(*values)
        if name in ("least", "greatest"):
            return (F.least if name == "least" else F.greatest)(*values)
        return {"lower": F.lower, "upper": F.upper, "abs": F.abs, "length": F.char_length}[name](values[0])
    raise TypeError(f"unknown SQL node {op}")


# -- the incremental executor: Python with SQL's three-valued logic --------------------------------


def evaluate(node: Node, profile: Mapping[str, Any], customer: Mapping[str, Any]) -> Any:
    """The tree's value for one customer: True, False, a value, or None (SQL's null/unknown)."""
    op, args = node.op, node.args
    if op == "literal":
        return args[0]
    if op == "column":
        return (profile if args[0] == "profile" else customer).get(args[1])
    if op == "and":
        left, right = evaluate(args[0], profile, customer), evaluate(args[1], profile, customer)
        return False if left is False or right is False else (None if left is None or right is None else True)
    if op == "or":
        left, right = evaluate(args[0], profile, customer), evaluate(args[1], profile, customer)
        return True if left is True or right is True else (None if left is None or right is None else False)
    if op == "not":
        value = evaluate(args[0], profile, customer)
        return None if value is None else not value
    if op == "compare":
        return _compare_values(args[0], evaluate(args[1], profile, customer), evaluate(args[2], profile, customer))
    if op == "null":
        value = evaluate(args[0], profile, customer)
        return value is not None if args[1] else value is None
    if op == "in":
        value = evaluate(args[0], profile, customer)
        if value is None:
            return None
        options = [v.args[0] for v in args[1]]
        return True if any(_compare_values("=", value, o) for o in options) else (None if None in options else False)
    if op == "between":
        value = evaluate(args[0], profile, customer)
        low = _compare_values(">=", value, evaluate(args[1], profile, customer))
        high = _compare_values("<=", value, evaluate(args[2], profile, customer))
        return False if low is False or high is False else (None if low is None or high is None else True)
    if op == "like":
        value = evaluate(args[0], profile, customer)
        return None if value is None else _like(args[1]).fullmatch(value) is not None
    if op == "neg":
        value = evaluate(args[0], profile, customer)
        return None if value is None else -value
    if op == "arith":
        left, right = evaluate(args[1], profile, customer), evaluate(args[2], profile, customer)
        if left is None or right is None:
            return None
        left, right = float(left), float(right)
        if args[0] == "/":
            return None if right == 0 else left / right
        return {"+": left + right, "-": left - right, "*": left * right}[args[0]]
    if op == "call":
        name, arguments = args
        values = [evaluate(a, profile, customer) for a in arguments]
        present = [v for v in values if v is not None]
        if name == "coalesce":
            return present[0] if present else None
        if name in ("least", "greatest"):
            return (min if name == "least" else max)(present) if present else None
        if values[0] is None:
            return None
        return _PYTHON_FUNCTIONS[name](values[0])
    raise TypeError(f"unknown SQL node {op}")


_PYTHON_FUNCTIONS: dict[str, Callable[[Any], Any]] = {"lower": str.lower, "upper": str.upper, "abs": abs, "length": len}


def _compare_values(op: str, left: Any, right: Any) -> bool | None:
    if left is None or right is None:
        return None
    if isinstance(left, datetime) != isinstance(right, datetime):
        return None  # a date beside an instant: the checker keeps these apart
    return {
        "=": left == right,
        "!=": left != right,
        "<": left < right,
        "<=": left <= right,
        ">": left > right,
        ">=": left >= right,
    }[op]


def _like(pattern: str) -> re.Pattern[str]:
    """Spark's LIKE: % any run, _ one character, \\ escapes the next; the whole text must match."""
    out, escaped = [], False
    for char in pattern:
        if escaped:
            out.append(re.escape(char))
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "%":
            out.append(".*")
        elif char == "_":
            out.append(".")
        else:
            out.append(re.escape(char))
    return re.compile("".join(out), re.DOTALL)
