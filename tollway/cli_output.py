"""What an admin command prints: the server's answer as JSON (for scripts; the default when stdout is not
a terminal) or as a table (for a person; the default on a terminal), chosen by `--output json|table`.

Both views come from one plain-data form of the answer, so they carry the same fields: proto field
names, enums by name, timestamps in RFC 3339, 64-bit counts as JSON numbers (protobuf's JSON mapping
makes them strings), fields left at their empty default omitted. A component may adapt that form before
it is printed (the quota report writes "unlimited" for a window without a limit).

The table: the answer's one list of records (plans, invoices, windows...) as rows, one column per field
any row has (nested records flattened as `a.b`, lists of values joined, lists of records as compact
JSON); the other fields as `field: value` lines above it. An answer without such a list is one
`FIELD VALUE` row per field."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from google.protobuf.message import Message

Data = dict[str, Any]
Adapt = Callable[[Data], Data]

OUTPUT_OPTION = "--output"
OUTPUT_ENV = "TOLLWAY_OUTPUT"


class OutputFormat(StrEnum):
    json = "json"
    table = "table"


# --------------------------------------------------------------------------------------------------
# The option: every admin command declares `output: Output = None`; `emit` reads the choice
# --------------------------------------------------------------------------------------------------

_chosen: ContextVar[OutputFormat | None] = ContextVar("tollway_output", default=None)


def _remember(value: OutputFormat | None) -> OutputFormat | None:
    _chosen.set(value)
    return value


Output = Annotated[
    OutputFormat | None,
    typer.Option(
        OUTPUT_OPTION,
        envvar=OUTPUT_ENV,
        case_sensitive=False,
        callback=_remember,
        show_default=False,
        help="json or table; default: table on a terminal, json when piped.",
        rich_help_panel="Output",
    ),
]


def chosen_format() -> OutputFormat:
    chosen = _chosen.get()
    if chosen is not None:
        return chosen
    return OutputFormat.table if sys.stdout.isatty() else OutputFormat.json


# --------------------------------------------------------------------------------------------------
# The data both views print
# --------------------------------------------------------------------------------------------------

_INT64_TYPES = frozenset({3, 4, 6, 16, 18})  # FieldDescriptor.TYPE_INT64, UINT64, FIXED64, SFIXED64, SINT64


def _numbers(message: Message, data: Data) -> Data:
    """Turns protobuf-JSON's 64-bit integer strings back into numbers, recursively."""
    for field in message.DESCRIPTOR.fields:
        name = field.name
        if name not in data:
            continue
        value = getattr(message, name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            if value_field.message_type is not None:
                data[name] = {key: _numbers(value[key], data[name][key]) for key in data[name]}
            elif value_field.type in _INT64_TYPES:
                data[name] = {key: int(item) for key, item in data[name].items()}
        elif field.message_type is not None:
            if field.message_type.full_name.startswith("google.protobuf."):
                continue  # Timestamp, Duration, wrappers keep their JSON form
            if isinstance(data[name], list):
                data[name] = [_numbers(item, entry) for item, entry in zip(value, data[name], strict=True)]
            else:
                data[name] = _numbers(value, data[name])
        elif field.type in _INT64_TYPES:
            data[name] = (
                [int(item) for item in data[name]] if isinstance(data[name], list) else int(data[name])
            )
    return data


def message_data(message: Message) -> Data:
    """The answer as plain data: proto field names, empty fields omitted (but an answer's own lists,
    which are printed empty: `{"plans": []}`), counts as numbers."""
    from google.protobuf.json_format import MessageToDict

    data = MessageToDict(message, preserving_proto_field_name=True)
    for field in message.DESCRIPTOR.fields:
        if (
            field.is_repeated
            and field.message_type is not None
            and not field.message_type.GetOptions().map_entry
        ):
            data.setdefault(field.name, [])
    return _numbers(message, data)


# --------------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        if all(not isinstance(item, Mapping | list) for item in value):
            return ", ".join(_cell(item) for item in value)
        return json.dumps(value, separators=(",", ":"))
    if isinstance(value, Mapping):
        return json.dumps(value, separators=(",", ":"))
    return str(value).replace("\n", "\\n")


def flatten(record: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested records as dotted keys; lists stay values."""
    flat: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _rows_key(data: Data) -> str | None:
    """The answer's one list of records, if it has exactly one."""
    lists = [
        key
        for key, value in data.items()
        if isinstance(value, list) and value and isinstance(value[0], Mapping)
    ]
    return lists[0] if len(lists) == 1 else None


def _grid(header: list[str], rows: Iterable[list[str]]) -> list[str]:
    body = [row for row in rows]
    widths = [
        max(len(header[i]), *(len(row[i]) for row in body)) if body else len(header[i])
        for i in range(len(header))
    ]
    lines = ["  ".join(text.ljust(width) for text, width in zip(header, widths, strict=True)).rstrip()]
    lines += [
        "  ".join(text.ljust(width) for text, width in zip(row, widths, strict=True)).rstrip() for row in body
    ]
    return lines


def render_table(data: Data) -> str:
    rows_key = _rows_key(data)
    if rows_key is None:
        flat = flatten(data)
        if not flat:
            return "(nothing)"
        return "\n".join(_grid(["FIELD", "VALUE"], ([key, _cell(value)] for key, value in flat.items())))
    lines = [
        f"{key}: {_cell(value)}"
        for key, value in flatten({k: v for k, v in data.items() if k != rows_key}).items()
    ]
    records = [flatten(record) for record in data[rows_key]]
    columns: list[str] = []
    for record in records:
        columns.extend(key for key in record if key not in columns)
    if lines:
        lines.append("")
    lines.append(f"{rows_key}:")
    lines += _grid(
        [column.upper() for column in columns], ([_cell(r.get(c, "")) for c in columns] for r in records)
    )
    return "\n".join(lines)


def table_fields(text: str) -> set[str]:
    """The field names a rendered table shows (for tests: the same as the JSON's flattened fields)."""
    lines = text.splitlines()
    fields: set[str] = set()
    if lines and lines[0].split() == ["FIELD", "VALUE"]:
        return {line.split()[0] for line in lines[1:] if line.strip()}
    for index, line in enumerate(lines):
        if line.endswith(":") and " " not in line:
            rows_key = line[:-1]
            fields |= {f"{rows_key}[].{column.lower()}" for column in lines[index + 1].split()}
            break
        if ": " in line:
            fields.add(line.split(": ", 1)[0])
    return fields


def data_fields(data: Data) -> set[str]:
    """The same view of the JSON: flattened top-level fields, and the rows' flattened fields."""
    rows_key = _rows_key(data)
    if rows_key is None:
        return set(flatten(data))
    fields = set(flatten({k: v for k, v in data.items() if k != rows_key}))
    for record in data[rows_key]:
        fields |= {f"{rows_key}[].{key}" for key in flatten(record)}
    return fields


# --------------------------------------------------------------------------------------------------
# Printing
# --------------------------------------------------------------------------------------------------


def emit_data(data: Data, output: OutputFormat | None = None) -> None:
    if (output or chosen_format()) is OutputFormat.table:
        typer.echo(render_table(data))
    else:
        typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


def emit(message: Message, adapt: Adapt | None = None, output: OutputFormat | None = None) -> None:
    """A response on stdout in the chosen format (see the module docstring)."""
    data = message_data(message)
    emit_data(adapt(data) if adapt is not None else data, output)
