"""Bulk inserts in one transaction, in chunks, into ids reserved ahead."""

import itertools
import json
import operator
import time
from collections.abc import Callable, Iterable, Iterator

import sqlalchemy as sa

CHUNK = 10_000


def in_chunks(rows: Iterable, size: int = CHUNK) -> Iterator[list]:
    chunk = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class Writer:
    """Bulk inserts in one transaction: COPY on PostgreSQL, executemany elsewhere."""

    def __init__(self, connection: sa.Connection, report: Callable[[str], None]):
        self.connection, self.report = connection, report
        self.postgresql = connection.dialect.name == "postgresql"
        self.counts: dict[str, int] = {}

    def insert(self, table: sa.Table, rows: Iterable[dict]) -> None:
        started = time.perf_counter()
        count = (self._copy if self.postgresql else self._executemany)(table, rows)
        self.counts[table.name] = self.counts.get(table.name, 0) + count
        self.report(f"  {table.name:<18} {count:>10,} rows  {time.perf_counter() - started:6.1f} s")

    def _executemany(self, table: sa.Table, rows: Iterable[dict]) -> int:
        """The driver's executemany with values converted by each column type's own bind processor.

        The same values Core's insert() would bind, at a third of its per-row cost.
        """
        rows = iter(rows)
        first = next(rows, None)
        if first is None:
            return 0
        columns, dialect = list(first), self.connection.dialect
        processors = [table.c[c].type.dialect_impl(dialect).bind_processor(dialect) for c in columns]
        # A timestamp's conversion is the dearest; rows of one batch or session share theirs.
        processors = [_remembered(p) if p and isinstance(table.c[c].type, sa.DateTime | sa.types.TypeDecorator)
                      else p for c, p in zip(columns, processors, strict=True)]
        convert = [(c, p) for c, p in zip(columns, processors, strict=True)]
        statement = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        cursor = self.connection.connection.driver_connection.cursor()
        count = 0
        for chunk in in_chunks(itertools.chain([first], rows)):
            cursor.executemany(statement, [tuple(p(row[c]) if p else row[c] for c, p in convert) for row in chunk])
            count += len(chunk)
        return count

    def _copy(self, table: sa.Table, rows: Iterable[dict]) -> int:
        rows = iter(rows)
        first = next(rows, None)
        if first is None:
            return 0
        columns = list(first)
        json_columns = {c for c in columns if isinstance(table.c[c].type, sa.JSON)}
        cursor = self.connection.connection.driver_connection.cursor()
        count = 0
        values_of = operator.itemgetter(*columns)
        with cursor.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy:
            write_row = copy.write_row
            if json_columns:
                for values in itertools.chain([first], rows):
                    write_row([json.dumps(values[c]) if c in json_columns and values[c] is not None
                               else values[c] for c in columns])
                    count += 1
            else:
                for values in itertools.chain([first], rows):
                    write_row(values_of(values))
                    count += 1
        return count


def _remembered(process: Callable) -> Callable:
    """`process` answering a value seen lately from memory (at most 50,000 kept)."""
    memory: dict = {}

    def bound(value):
        found = memory.get(value, memory)
        if found is memory:
            if len(memory) >= 50_000:
                memory.clear()
            found = memory[value] = process(value)
        return found

    return bound


def reserve_ids(connection: sa.Connection, counts: dict) -> dict:
    """The first id of each table's new rows; on PostgreSQL the sequence is moved past them."""
    ids = {}
    for table, n in counts.items():
        highest = connection.scalar(sa.select(sa.func.coalesce(sa.func.max(table.c.id), 0)))
        first = highest + 1
        if connection.dialect.name == "postgresql":
            sequence = connection.scalar(sa.text("SELECT pg_get_serial_sequence(:t, 'id')"), {"t": table.name})
            first = max(first, connection.scalar(sa.text("SELECT nextval(:s)"), {"s": sequence}))
            connection.execute(sa.text("SELECT setval(:s, :v)"), {"s": sequence, "v": first + max(n, 1) - 1})
        ids[table.name] = first
    return ids


def set_aside_indexes(connection: sa.Connection, tables: list[str]) -> list[tuple[str, str]]:
    """PostgreSQL: drop the secondary indexes, unique constraints and foreign keys of `tables` before a
    bulk load, and answer the statements that put each back exactly as it was (its own definition).

    Loading into a table without them and building them afterwards is several times faster than
    maintaining every index and checking every foreign key row by row; put back, each unique index
    and foreign key is checked over the whole table, so the data are held to the same rules.
    Primary keys stay (other tables' foreign keys rest on them), and so does any unique
    constraint a foreign key rests on.
    """
    oids = [connection.scalar(sa.text("SELECT to_regclass(:t)::oid"), {"t": t}) for t in tables]
    oids = [o for o in oids if o is not None]
    if not oids:
        return []
    foreign = connection.execute(sa.text(
        "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE contype = 'f' AND conrelid = ANY(:o) ORDER BY conrelid, conname"), {"o": oids}).all()
    unique = connection.execute(sa.text(
        "SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid) FROM pg_constraint c "
        "WHERE c.contype = 'u' AND c.conrelid = ANY(:o) AND NOT EXISTS (SELECT 1 FROM pg_constraint f "
        "WHERE f.contype = 'f' AND f.conindid = c.conindid) ORDER BY c.conrelid, c.conname"), {"o": oids}).all()
    indexes = connection.execute(sa.text(
        "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i "
        "WHERE i.indrelid = ANY(:o) AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid) "
        "ORDER BY i.indrelid, i.indexrelid"), {"o": oids}).all()
    restore = []
    for table, name, _ in foreign:
        connection.exec_driver_sql(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    for table, name, definition in unique:
        connection.exec_driver_sql(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
        restore.append((name, f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}'))
    for name, definition in indexes:
        connection.exec_driver_sql(f"DROP INDEX {name}")
        restore.append((name, definition))
    restore += [(name, f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
                for table, name, definition in foreign]
    return restore


def put_back(connection: sa.Connection, restore: list[tuple[str, str]]) -> None:
    for _, statement in restore:
        connection.exec_driver_sql(statement)


def index_definitions(connection: sa.Connection) -> set[tuple]:
    """Every index and constraint of the public schema with its definition (to check that put_back restored them)."""
    rows = connection.execute(sa.text(
        "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE connamespace = 'public'::regnamespace "
        "UNION ALL SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'")).all()
    return {tuple(row) for row in rows}
