"""Many rows in one statement, without SQLAlchemy's per-row work.

An import of a local authority's files writes hundreds of thousands of rows. SQLAlchemy's
``conn.execute(insert(table), rows)`` spends more time preparing each row's parameters than
the database spends storing it. Here the rows become plain tuples, converted by the very bind
processors SQLAlchemy would use for each column on this dialect (so JSON, dates and booleans
are stored exactly as through SQLAlchemy), and go to the driver's ``executemany`` through
``exec_driver_sql`` (still inside the caller's transaction).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, Select, Table, func, insert, select

_Processor = Callable[[Any], Any] | None
_processors: dict[tuple[str, str, str], _Processor] = {}


def _processor(conn: Connection, table: Table, column: str) -> _Processor:
    dialect = conn.dialect
    key = (dialect.name, table.name, column)
    if key not in _processors:
        type_ = table.c[column].type
        _processors[key] = type_.dialect_impl(dialect).bind_processor(dialect)
    return _processors[key]


def _placeholders(conn: Connection, n: int) -> str:
    style = conn.dialect.paramstyle
    if style == "qmark":
        return ", ".join("?" * n)
    if style in ("format", "pyformat"):
        return ", ".join(["%s"] * n)
    if style == "numeric":
        return ", ".join(f":{i}" for i in range(1, n + 1))
    raise NotImplementedError(f"parameter style {style!r}")


def _remembering(proc: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``proc`` converting each distinct value once: an import's rows repeat the same timestamp,
    the same few dates and flags, and many empty lists (phones, e-mails)."""
    seen: dict[Any, Any] = {}

    def convert(value: Any) -> Any:
        cls = value.__class__
        if cls is list:
            if not all(v.__class__ is str for v in value):
                return proc(value)
            key: Any = (list, *value)
        elif cls in (str, int, bool, float, date, datetime) or value is None:
            key = (cls, value)  # the class too: 1, 1.0 and True are equal keys but not equal JSON
        else:
            return proc(value)
        try:
            return seen[key]
        except KeyError:
            out = seen[key] = proc(value)
            return out

    return convert


def _column(values: list[Any], proc: _Processor) -> list[Any]:
    """One column's values converted by ``proc``, each distinct value once (at C speed when
    the values can be hashed: the same timestamp, the same few dates and flags)."""
    if proc is None:
        return values
    try:
        distinct: set[Any] | None = set(values)
    except TypeError:  # lists or dicts (JSON)
        distinct = None
    if distinct is None or len(set(map(type, values)) & {bool, int, float}) > 1:  # 1, 1.0, True: one set key
        convert = _remembering(proc)  # one by one, repeats remembered
        return [convert(v) for v in values]
    converted = {v: proc(v) for v in distinct}
    return list(map(converted.__getitem__, values))


def _tuples(conn: Connection, table: Table, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]
            ) -> list[tuple[Any, ...]]:
    """The rows as tuples in ``columns`` order, converted column by column."""
    procs = [_processor(conn, table, c) for c in columns]
    values = [_column(list(map(itemgetter(c), rows)), p) for c, p in zip(columns, procs, strict=True)]
    return list(zip(*values, strict=True))


def _quoted(conn: Connection, name: str) -> str:
    return str(conn.dialect.identifier_preparer.quote(name))


def insert_rows(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """``INSERT`` every row (all with the same keys; columns left out take their default)."""
    if not rows:
        return
    columns = list(rows[0])
    defaults = {c.name: c.default.arg for c in table.c  # type: ignore[attr-defined]
                if c.name not in columns and c.default is not None and c.default.is_scalar}
    if defaults:  # Python-side scalar defaults (e.g. withdrawn=False): what SQLAlchemy's insert would add
        rows = [{**defaults, **row} for row in rows]
        columns += list(defaults)
    sql = (f"INSERT INTO {_quoted(conn, table.name)} ({', '.join(_quoted(conn, c) for c in columns)}) "
           f"VALUES ({_placeholders(conn, len(columns))})")
    conn.exec_driver_sql(sql, _tuples(conn, table, columns, rows))


def update_rows(conn: Connection, table: Table, keys: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> None:
    """``UPDATE`` each row found by ``keys`` to the row's other values (all rows with the same keys)."""
    if not rows:
        return
    values = [c for c in rows[0] if c not in keys]
    marks = _placeholders(conn, len(values) + len(keys)).split(", ")
    sets = ", ".join(f"{_quoted(conn, c)} = {m}" for c, m in zip(values, marks, strict=False))
    where = " AND ".join(f"{_quoted(conn, c)} = {m}" for c, m in zip(keys, marks[len(values):], strict=True))
    sql = f"UPDATE {_quoted(conn, table.name)} SET {sets} WHERE {where}"
    conn.exec_driver_sql(sql, _tuples(conn, table, [*values, *keys], rows))


def splice_texts(conn: Connection, table: Table, keys: Sequence[str], column: str,
                 rows: Sequence[tuple[Any, ...]], blank: str, sets: Mapping[str, Any],
                 length: Callable[[tuple[Any, ...]], int] | None = None) -> int:
    """In the database, for each row ``(*key values, index, text)``: put ``text`` into ``column``
    of the row found by ``keys``, from character ``index`` (0-based) on, where the characters there
    are all ``blank`` now; set the columns of ``sets`` (the same values for every row) too.

    The texts are never read into Python: a day's register changes two characters of each of
    100,000 strips. Returns the number of rows changed, or -1 if the driver does not say (each
    row not changed was not found, or held something else there: the caller reads those).

    ``length`` gives the number of characters the stored text of a row has (a strip: one per
    session of its year, as every strip is written). On SQLite a stored text of that many
    *bytes* is then ASCII, and is cut by byte offsets, which SQLite finds at once: ``substr`` on
    a text walks it character by character (UTF-8), and three such walks over a 730-character
    strip were a third of the time of a day's ``UPDATE``. Any other stored text (a strip holding
    the symbol of a multi-character code) is cut by characters, in the same statement. Without
    ``length``, on another database, or for a ``blank`` or ``text`` that is not ASCII, every
    text is cut by characters."""
    if not rows:
        return 0
    k = len(keys)
    fixed = tuple(proc(v) if (proc := _processor(conn, table, c)) is not None else v for c, v in sets.items())
    if length is not None and _bytes_are_characters(conn) and blank.isascii() and \
            all(row[k + 1].isascii() for row in rows):
        sql = _ascii_splice(conn, table, keys, column, list(sets))
        params = [(length(row), row[k], row[k + 1], row[k] + len(row[k + 1]) + 1, *fixed, *row[:k],
                   row[k] + 1, len(row[k + 1]), blank * len(row[k + 1])) for row in rows]
    else:
        quoted = _quoted(conn, column)
        # placeholders in the order they appear: the splice's three, the sets, the keys, the check's three
        marks = iter(_placeholders(conn, 6 + len(sets) + k).split(", "))
        at, text, after = next(marks), next(marks), next(marks)
        assign = [f"{quoted} = substr({quoted}, 1, CAST({at} AS INTEGER)) || CAST({text} AS TEXT) || "
                  f"substr({quoted}, CAST({after} AS INTEGER))",
                  *(f"{_quoted(conn, c)} = {next(marks)}" for c in sets)]
        where = [f"{_quoted(conn, c)} = {next(marks)}" for c in keys]
        start, size, blanks = next(marks), next(marks), next(marks)
        where.append(f"substr({quoted}, CAST({start} AS INTEGER), CAST({size} AS INTEGER)) = CAST({blanks} AS TEXT)")
        sql = f"UPDATE {_quoted(conn, table.name)} SET {', '.join(assign)} WHERE {' AND '.join(where)}"
        params = [(row[k], row[k + 1], row[k] + len(row[k + 1]) + 1, *fixed, *row[:k],
                   row[k] + 1, len(row[k + 1]), blank * len(row[k + 1])) for row in rows]
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.executemany(sql, params)
        return int(cursor.rowcount)
    finally:
        cursor.close()


def _bytes_are_characters(conn: Connection) -> bool:
    """SQLite storing its texts as UTF-8 (its default; a ``BLOB`` cast of a text is then its
    UTF-8 bytes, and an ASCII text has as many bytes as characters)."""
    if conn.dialect.name != "sqlite":
        return False
    return str(conn.exec_driver_sql("PRAGMA encoding").scalar()).upper() == "UTF-8"


def _ascii_splice(conn: Connection, table: Table, keys: Sequence[str], column: str, sets: Sequence[str]) -> str:
    """SQLite's ``UPDATE`` for ``splice_texts`` with lengths: numbered parameters, ``?1`` the
    length, ``?2``-``?4`` the splice (index, text, index after), then the sets, the keys and the
    check's three (first character, count, blanks). A stored text whose bytes number ``?1`` is
    cut by byte offsets (a ``BLOB`` cast), any other by characters."""
    quoted = _quoted(conn, column)
    n = 5
    set_marks = []
    for _ in sets:
        set_marks.append(f"?{n}")
        n += 1
    key_marks = []
    for _ in keys:
        key_marks.append(f"?{n}")
        n += 1
    start, size, blanks = f"?{n}", f"?{n + 1}", f"?{n + 2}"
    raw = f"CAST({quoted} AS BLOB)"
    ascii_ = f"length({raw}) = ?1"
    spliced = (f"CASE WHEN {ascii_} THEN CAST(substr({raw}, 1, ?2) || CAST(?3 AS BLOB) || substr({raw}, ?4) AS TEXT) "
               f"ELSE substr({quoted}, 1, ?2) || CAST(?3 AS TEXT) || substr({quoted}, ?4) END")
    assign = [f"{quoted} = {spliced}", *(f"{_quoted(conn, c)} = {m}" for c, m in zip(sets, set_marks, strict=True))]
    where = [f"{_quoted(conn, c)} = {m}" for c, m in zip(keys, key_marks, strict=True)]
    where.append(f"CASE WHEN {ascii_} THEN substr({raw}, {start}, {size}) = CAST({blanks} AS BLOB) "
                 f"ELSE substr({quoted}, {start}, {size}) = CAST({blanks} AS TEXT) END")
    return f"UPDATE {_quoted(conn, table.name)} SET {', '.join(assign)} WHERE {' AND '.join(where)}"


def insert_with_ids(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> list[int]:
    """``INSERT`` every row and return the new primary keys, in the rows' order.

    SQLite: the transaction holds the database's only write lock, so the next keys are known
    (one above the largest) and are written with the rows. Other databases number rows from a
    sequence that other sessions share: there SQLAlchemy's ``INSERT ... RETURNING`` does it.
    """
    if not rows:
        return []
    pk = table.primary_key.columns.values()[0]
    if conn.dialect.name != "sqlite":
        result = conn.execute(insert(table).returning(pk, sort_by_parameter_order=True), list(rows))
        return [int(i) for i in result.scalars().all()]
    first = int(conn.execute(select(func.max(pk))).scalar() or 0) + 1
    ids = list(range(first, first + len(rows)))
    insert_rows(conn, table, [{pk.name: i, **row} for i, row in zip(ids, rows, strict=True)])
    return ids


def rows_in(conn: Connection, table: Table, columns: Sequence[str], key: str, values: Sequence[Any],
            **equal: Any) -> list[tuple[Any, ...]]:
    """``SELECT columns FROM table WHERE key IN values`` (and each ``equal`` column equal to its
    value), straight to the driver: the rows as the driver gives them (plain numbers and texts;
    use it for such columns only). Run per chunk of an import, where building the ``IN`` list
    through SQLAlchemy's expanding parameters costs a third more than the query itself."""
    if not values:
        return []
    marks = _placeholders(conn, len(equal) + len(values)).split(", ")
    conditions = [f"{_quoted(conn, c)} = {m}" for c, m in zip(equal, marks, strict=False)]
    conditions.append(f"{_quoted(conn, key)} IN ({', '.join(marks[len(equal):])})")
    sql = (f"SELECT {', '.join(_quoted(conn, c) for c in columns)} FROM {_quoted(conn, table.name)} "
           f"WHERE {' AND '.join(conditions)}")
    return driver_rows(conn, sql, (*equal.values(), *values))


def select_rows(conn: Connection, query: Select[Any]) -> list[tuple[Any, ...]]:
    """The rows of a query as plain tuples, straight from the driver's cursor, each column's values
    made what SQLAlchemy makes them (a date from SQLite's text, a boolean from its integer), each
    distinct value once (``_column``, as for the rows written): for 100,000 rows a third of the
    time of SQLAlchemy's result rows. Read by position (the query's columns in order)."""
    compiled = query.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    params = compiled.construct_params()
    args: Any = [params[k] for k in compiled.positiontup] if compiled.positiontup is not None else params
    rows = driver_rows(conn, str(compiled), args)
    dialect = conn.dialect
    procs = [c.type.dialect_impl(dialect).result_processor(dialect, None) for c in query.selected_columns]
    if not rows or not any(procs):
        return rows
    columns = [_column(list(values), proc) for values, proc in zip(zip(*rows, strict=True), procs, strict=True)]
    return list(zip(*columns, strict=True))


def driver_rows(conn: Connection, sql: str, params: Sequence[Any] | Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """The rows of one query as the driver's cursor gives them (tuples of plain values), in the
    connection's transaction: SQLAlchemy's result rows cost more to make than the query takes
    when there are 100,000 of them."""
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(sql, params if isinstance(params, Mapping) else tuple(params))
        rows = cursor.fetchall()
        return rows if not rows or rows[0].__class__ is tuple else [tuple(r) for r in rows]
    finally:
        cursor.close()
